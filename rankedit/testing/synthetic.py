"""Random-init checkpoints built locally from a config, and perturbed 'tuned' twins.

No download is needed: a transformers config is written out in code, the model
is initialised at random with a fixed seed and saved as safetensors. Tests use
tiny versions of several families; benchmarks use the real Qwen2.5-0.5B shape.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import shutil
from rankedit.files.checkpoint import Checkpoint

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=128)

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gpt2")

# Qwen2.5-0.5B's published config (architecture only; weights are random here).
QWEN25_05B = dict(
    hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
    vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
)


def make_config(family: str, **overrides):
    import transformers as tf

    if family == "gpt2":
        kw = dict(n_embd=TINY["hidden_size"], n_layer=TINY["num_hidden_layers"], n_head=TINY["num_attention_heads"],
                  vocab_size=TINY["vocab_size"], n_positions=128, bos_token_id=0, eos_token_id=0)
        kw.update(overrides)
        return tf.GPT2Config(**kw)
    cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config,
           "qwen3": tf.Qwen3Config, "gemma": tf.GemmaConfig}[family]
    kw = dict(TINY, max_position_embeddings=128)
    if family in ("gemma", "qwen3"):
        kw["head_dim"] = TINY["hidden_size"] // TINY["num_attention_heads"]
    kw.update(overrides)
    return cls(**kw)


def build_random(out: str | os.PathLike, family: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32,
                 **overrides) -> Path:
    """Save a random-init causal LM of the given family to ``out``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = make_config(family, **overrides)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    out = Path(out)
    model.save_pretrained(out)
    return out


def decay_spectrum(path: str | os.PathLike, alpha: float, seed: int = 0) -> Path:
    """Rewrite every attention/MLP matrix of the checkpoint at ``path`` in place (same RMS, dtype
    and names) as U diag(s) Vᵀ with s_i ∝ i^-alpha and random orthonormal U, V.

    Why: a random init has a flat spectrum, so no top-k subspace of W0 is identifiable
    and an edit built on one (off-principal) goes to the exact decomposition of every
    matrix; trained weights decay, as a power law to a first approximation. One tensor
    at a time."""
    gen = torch.Generator().manual_seed(seed)

    def reshaped(w: torch.Tensor) -> torch.Tensor:
        m, n = w.shape
        r = min(m, n)
        U, _ = torch.linalg.qr(torch.randn(m, r, generator=gen))
        V, _ = torch.linalg.qr(torch.randn(n, r, generator=gen))
        new = (U * torch.arange(1, r + 1, dtype=torch.float32) ** -alpha) @ V.T
        return (new * (w.float().pow(2).mean().sqrt() / new.pow(2).mean().sqrt())).to(w.dtype)

    return _rewrite(Checkpoint(path), Path(path), reshaped)


def _is_matrix(name: str, w: torch.Tensor) -> bool:
    """An attention/MLP matrix (what edits and updates touch), not an embedding or the head."""
    return w.ndim == 2 and not any(t in name for t in ("embed", "lm_head", "wte", "wpe"))


def _rewrite(ck, out: Path, matrix: Callable[[torch.Tensor], torch.Tensor],
             other: Callable[[torch.Tensor], torch.Tensor] = lambda w: w) -> Path:
    """Write each weight file of ``ck`` into ``out`` with ``matrix`` applied to its attention/MLP
    matrices and ``other`` to the rest, one file at a time, in the checkpoint's own name order
    (the order random draws are made in)."""
    from safetensors.torch import save_file

    for fname in dict.fromkeys(ck.info(n).file for n in ck.names):
        tensors = {name: (matrix(w) if _is_matrix(name, w) else other(w)).contiguous()
                   for name in ck.names if ck.info(name).file == fname for w in [ck.get(name)]}
        tmp = out / (fname + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        tmp.replace(out / fname)
    return out


def perturb(base: str | os.PathLike, out: str | os.PathLike, scale: float = 1e-3, rank: int | None = None,
            density: float = 1.0, seed: int = 1, dtype: torch.dtype | None = None,
            structured: float = 0.0, spike: float = 0.0) -> Path:
    """Write a 'tuned' twin of ``base``: every 2-D matrix gets a random update.

    ``scale`` is the update size relative to the RMS of each matrix; ``rank`` makes
    each update low-rank; ``density`` keeps a random fraction of its entries.
    ``structured`` puts that share of the update's energy in a rank-8 part whose
    singular values halve one to the next (the rest stays noise): an RL-like update
    with a dominant direction, where pure noise has a flat spectrum whose top
    directions are not identifiable. ``spike`` puts that share of the update's norm in one random
    rank-1 direction (a weak top direction) over the rest: with ``density`` 0.1 and a bf16 ``dtype``,
    sparse changes that storage quantizes to a few ulps (bf16 RL updates: full rank, sparse,
    noise-like in energy, a top direction carrying little of the norm). Non-matrix tensors are
    copied unchanged.
    Streams one tensor at a time.
    """
    ck = Checkpoint(base)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in ck.path.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy2(f, out / f.name)
    gen = torch.Generator().manual_seed(seed)

    def updated(w: torch.Tensor) -> torch.Tensor:
        wf = w.float()
        m, n = wf.shape
        if rank is None:
            d = torch.randn(m, n, generator=gen)
        else:
            d = torch.randn(m, rank, generator=gen) @ torch.randn(rank, n, generator=gen)
        if density < 1.0:
            d = d * (torch.rand(m, n, generator=gen) < density)
        if structured:
            low = (torch.randn(m, 8, generator=gen) * 0.5 ** torch.arange(8.0)) @ torch.randn(8, n, generator=gen)
            d = (structured ** 0.5 * low / low.norm() + (1 - structured) ** 0.5 * d / d.norm())
        if spike:
            one = torch.outer(torch.randn(m, generator=gen), torch.randn(n, generator=gen))
            d = spike * one / one.norm() + (1 - spike ** 2) ** 0.5 * d / d.norm()
        d = d * (scale * wf.pow(2).mean().sqrt() / d.pow(2).mean().sqrt().clamp_min(1e-30))
        return (wf + d).to(dtype or w.dtype)

    return _rewrite(ck, out, updated, lambda w: w.to(dtype) if dtype is not None and w.is_floating_point() else w)
