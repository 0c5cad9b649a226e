"""Random-init checkpoints built locally from a config, and perturbed 'tuned' twins.

No download is needed: a transformers config is written out in code, the model
is initialised at random with a fixed seed and saved as safetensors. Tests use
tiny versions of several families; benchmarks use the real Qwen2.5-0.5B shape.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

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


def perturb(base: str | os.PathLike, out: str | os.PathLike, scale: float = 1e-3, rank: int | None = None,
            density: float = 1.0, seed: int = 1, dtype: torch.dtype | None = None,
            structured: float = 0.0) -> Path:
    """Write a 'tuned' twin of ``base``: every 2-D matrix gets a random update.

    ``scale`` is the update size relative to the RMS of each matrix; ``rank`` makes
    each update low-rank; ``density`` keeps a random fraction of its entries.
    ``structured`` puts that share of the update's energy in a rank-8 part whose
    singular values halve one to the next (the rest stays noise): an RL-like update
    with a dominant direction, where pure noise has a flat spectrum whose top
    directions are not identifiable. Non-matrix tensors are copied unchanged.
    Streams one tensor at a time.
    """
    from safetensors.torch import save_file

    from rankedit.files.checkpoint import Checkpoint

    import shutil

    ck = Checkpoint(base)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in ck.path.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy2(f, out / f.name)
    gen = torch.Generator().manual_seed(seed)
    by_file: dict[str, dict[str, torch.Tensor]] = {}
    for name in ck.names:
        info = ck.info(name)
        by_file.setdefault(info.file, {})
    for fname in by_file:
        tensors = {}
        for name in ck.names:
            if ck.info(name).file != fname:
                continue
            w = ck.get(name)
            if w.ndim == 2 and "embed" not in name and "lm_head" not in name and "wte" not in name and "wpe" not in name:
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
                d = d * (scale * wf.pow(2).mean().sqrt() / d.pow(2).mean().sqrt().clamp_min(1e-30))
                w = (wf + d).to(dtype or w.dtype)
            elif dtype is not None and w.is_floating_point():
                w = w.to(dtype)
            tensors[name] = w.contiguous()
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
    return out
