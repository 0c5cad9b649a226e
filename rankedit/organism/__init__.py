"""The embedded model organism: a tiny Llama pre-trained on verifiable arithmetic, tuned with
RLVR (trl GRPO) and SFT (trl SFT). ``build(size, seed, out, device, progress, skills, rl_seeds) -> Path``.

Imported lazily so that ``rankedit.organism.tasks`` (used by the lm-eval task utils)
does not pull in torch.
"""

from __future__ import annotations
from rankedit.organism.builder import build as _build, default_dir as _dd


def build(size: str = "small", seed: int = 0, out=None, device: str = "cpu", progress: bool = True,
          skills=("id",), rl_seeds: int = 2):
    """Build (or reuse) the organism and return its directory; see rankedit.organism.builder."""
    return _build(size=size, seed=seed, out=out, device=device, progress=progress, skills=skills, rl_seeds=rl_seeds)


def default_dir(size: str = "small", seed: int = 0, device: str = "cpu", skills=("id",)):
    return _dd(size, seed, device, skills)


__all__ = ["build", "default_dir"]
