"""Scoring profiles: greedy (the default) or n sampled generations per problem (pure).

A sampled profile sends lm-eval ``repeats: n`` on every task, generation kwargs
``do_sample=True, temperature, top_p`` (merged over each task's YAML), and its
seed to every seed argument of ``simple_evaluate`` (python, numpy, torch: the
hf backend samples with torch's global generator; few-shot order). From the
logged samples, ``rankedit.scoring.sampled`` computes avg@n, pass@k and maj@k.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Mapping

from rankedit.core.errors import RankeditError


@dataclass(frozen=True)
class Sampling:
    """n samples per problem at ``temperature`` / ``top_p``, seeded."""

    samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.samples, int) or self.samples < 1:
            raise RankeditError(f"--samples must be an integer of at least 1, got {self.samples!r}")
        if not self.temperature > 0:
            raise RankeditError(f"--temperature must be above 0 for sampling (greedy is the default profile), "
                                f"got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise RankeditError(f"--top-p must be in (0, 1], got {self.top_p!r}")

    def gen_kwargs(self) -> dict:
        return {"do_sample": True, "temperature": float(self.temperature), "top_p": float(self.top_p)}

    def seeds(self) -> dict:
        """simple_evaluate's seed arguments."""
        return {"random_seed": self.seed, "numpy_random_seed": self.seed, "torch_random_seed": self.seed,
                "fewshot_random_seed": self.seed}

    def describe(self) -> str:
        return f"avg@{self.samples}, temperature {self.temperature:g}, top_p {self.top_p:g}, seed {self.seed}"

    def as_dict(self) -> dict:
        return asdict(self)


def resolve(profiles: Mapping[str, Sampling], profile: str | None = None, *, samples: int | None = None,
            temperature: float | None = None, top_p: float | None = None, seed: int | None = None) -> Sampling | None:
    """The sampling of a named profile of the suite (``"greedy"`` or None: none) with explicit values over it.

    Any explicit sampling value turns sampling on; unset values then default to the
    model's own distribution (temperature 1, top_p 1) and seed 0."""
    base = None
    if profile not in (None, "greedy"):
        if profile not in profiles:
            known = ", ".join(["greedy", *sorted(profiles)])
            raise RankeditError(f"unknown scoring profile {profile!r} for this suite; known: {known}")
        base = profiles[profile]
    given = {k: v for k, v in (("samples", samples), ("temperature", temperature), ("top_p", top_p),
                               ("seed", seed)) if v is not None}
    if base is None and not given:
        return None
    return replace(base or Sampling(), **given)
