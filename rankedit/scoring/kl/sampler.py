"""KL travelled from the base (RL's Razor), estimated from a model's own samples: the model I/O.

``kl(model, base, prompts, samples=n)`` loads both checkpoints with
``AutoModelForCausalLM`` (``trust_remote_code`` off; float32 on the CPU unless
told otherwise), draws ``samples`` completions per prompt from the model by
ancestral sampling at temperature 1, with no top-k, top-p or repetition penalty
(so the samples come from π itself, not a sharpened π), seeded and cut at
``max_tokens``; then scores both models on the same tokens by teacher forcing,
one forward pass per model per batch. The arithmetic (both estimators, the
intervals) is ``rankedit.scoring.kl.estimate``.

Prompts of the same token length are batched together, so no prompt is padded.
Prompts are tokenised with the model's tokenizer and its own special tokens
(``add_special_tokens=True``: a BOS where the tokenizer adds one).

Results are cached under ``cache_root()/kl/<key>.json``; the key hashes both
models' files (``rankedit.scoring.cache_keys.model_fingerprint``), the prompts
and every setting that changes the samples (samples, max_tokens, seed,
batch size, dtype, device type) or the intervals (n_boot).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rankedit.core.cache_dir import cache_root
from rankedit.core.errors import RankeditError
from rankedit.core.option_rules import check_value, default
from rankedit.scoring.score_options import KLOptions
from rankedit.files.atomic import atomic_dir, atomic_write_text
from rankedit.files.outdir import check_out
from rankedit.files.checkpoint import Checkpoint, check_compatible
from rankedit.files.validate import check_inputs, check_scorable, quiet_transformers
from rankedit.scoring.kl import estimate as kl_math
from rankedit.scoring.cache_keys import kl_cache_key, model_fingerprint
from rankedit.scoring.cpu_threads import cpu_threads_for
from rankedit.scoring.kl.prompts import read_prompts, take, task_prompts

KL_JSON = "kl.json"
SAMPLING = ("ancestral samples from the model at temperature 1, no top-k, top-p or repetition penalty: "
            "the model's own distribution")


def load_model(path: Path, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise RankeditError(f"unknown dtype {dtype!r} (e.g. float32, bfloat16, float16)")
    with quiet_transformers():  # no load report or bars: the command prints its own lines
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=False)
    return model.to(device).eval()


@functools.lru_cache(maxsize=1)
def base_model(path: str, device: str, dtype: str):
    """The base, loaded once for several models measured against it in one process (a plan's KL stage);
    ``base_model.cache_clear()`` lets it go."""
    return load_model(Path(path), device, dtype)


def eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the generation config's, the model config's and the tokenizer's."""
    ids: set[int] = set()
    for v in (getattr(model.generation_config, "eos_token_id", None), model.config.eos_token_id,
              tokenizer.eos_token_id):
        ids |= set(v) if isinstance(v, (list, tuple)) else ({v} if v is not None else set())
    return sorted(ids)


def sample(model, prompt_ids, max_tokens: int, eos: Sequence[int], generator):
    """(B, T<=max_tokens) completions drawn from the model's own next-token distribution, with a KV cache.

    Rows that ended keep receiving an EOS (masked later); sampling stops when all rows ended."""
    import torch

    eos_t = torch.as_tensor(list(eos) or [-1], device=prompt_ids.device)
    out = model(input_ids=prompt_ids, use_cache=True)
    done = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
    tokens = []
    for _ in range(max_tokens):
        probs = torch.softmax(out.logits[:, -1].double(), -1)
        nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        if eos:
            nxt = torch.where(done, eos_t[0], nxt)
        tokens.append(nxt)
        done |= torch.isin(nxt, eos_t)
        if bool(done.all()) or len(tokens) == max_tokens:
            break
        out = model(input_ids=nxt[:, None], past_key_values=out.past_key_values, use_cache=True)
    return torch.stack(tokens, 1)


def completion_logits(model, prompt_ids, tokens):
    """Teacher forcing: the (B, T, V) logits at the positions that predict ``tokens`` after the prompt."""
    import torch

    full = torch.cat([prompt_ids, tokens], 1)
    p = prompt_ids.shape[1]
    return model(input_ids=full[:, :-1]).logits[:, p - 1:]


def batches(lengths: Sequence[int], samples: int, batch_size: int) -> list[list[int]]:
    """Rows (prompt index, one per sample) in batches of prompts of one token length: no padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        for _ in range(samples):
            if out and len(out[-1]) < batch_size and lengths[out[-1][0]] == lengths[i]:
                out[-1].append(i)
            else:
                out.append([i])
    return out


def estimate(model_path: Path, base_path: Path, prompts: list[str], samples: int, max_tokens: int, seed: int,
             batch_size: int, device: str, dtype: str, n_boot: int) -> dict:
    """Sample, teacher-force both models and summarise (no cache)."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    ids = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
    if not all(ids):
        raise RankeditError("a prompt tokenises to no tokens")
    model, base = load_model(model_path, device, dtype), base_model(str(base_path), device, dtype)
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(map(len, ids))
    if limit and longest + max_tokens > limit:
        raise RankeditError(f"a prompt of {longest} tokens plus max_tokens={max_tokens} exceeds the model's "
                            f"{limit} positions; lower max_tokens or shorten the prompts")
    eos = eos_ids(model, tok)
    gen = torch.Generator(device=device).manual_seed(seed)
    parts, owner = [], []
    with torch.no_grad():
        for rows in batches([len(x) for x in ids], samples, batch_size):
            prompt_ids = torch.tensor([ids[i] for i in rows], device=device)
            tokens = sample(model, prompt_ids, max_tokens, eos, gen)
            parts.append(kl_math.sample_terms(completion_logits(model, prompt_ids, tokens),
                                              completion_logits(base, prompt_ids, tokens), tokens, eos))
            owner += rows
    return kl_math.summarize(kl_math.join(parts), np.asarray(owner), len(prompts), n_boot=n_boot, seed=seed)


def kl(model: str | os.PathLike, base: str | os.PathLike, prompts: Sequence[str] | str | os.PathLike | None = None,
       *, task: str | None = None, include_paths: Sequence[str | os.PathLike] = (), limit: int | None = None,
       samples: int = default(KLOptions, "samples"), max_tokens: int = 256, seed: int = default(KLOptions, "seed"),
       batch_size: int = default(KLOptions, "batch_size"), device: str = "cpu",
       dtype: str = default(KLOptions, "dtype"), n_boot: int = 2000, use_cache: bool = True, out: str | os.PathLike | None = None,
       overwrite: bool = False) -> dict:
    """KL travelled from ``base`` by ``model`` on prompts, from ``samples`` of the model's own completions each.

    ``prompts``: a list of strings, or a file (``rankedit.scoring.kl.prompts``); or
    ``task``: an lm-eval task whose documents give them. ``limit`` keeps the first
    that many prompts. Returns a dict (what ``out``/kl.json holds): per token and
    per sequence, the Monte Carlo (``mc``) and Rao-Blackwellised (``rb``) means with
    their bootstrap intervals over prompts, mean length, truncation rate, settings.
    """
    if (prompts is None) == (task is None):
        raise RankeditError("give the prompts (a list or a file) or an lm-eval task, not both or neither")
    for name, v in (("samples", samples), ("max_tokens", max_tokens), ("batch_size", batch_size), ("n_boot", n_boot),
                    ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise RankeditError(f"{name} must be an integer, got {v!r}")
    for name, v in (("samples", samples), ("batch_size", batch_size), ("seed", seed)):  # the spec's bounds
        check_value(KLOptions, name, v, name)
    if max_tokens < 1 or n_boot < 100:
        raise RankeditError(f"max_tokens must be at least 1 and n_boot at least 100, got {max_tokens} and {n_boot}")
    if task is not None:
        prompts = task_prompts(task, include_paths, limit)
    elif isinstance(prompts, (str, os.PathLike)):
        prompts = read_prompts(prompts)
    prompts = take(prompts, limit)
    ck, cb = Checkpoint(model), Checkpoint(base)
    if out is not None:
        check_out(out, "kl", [ck.path, cb.path], overwrite)  # before the sampling, not after it
    check_compatible([cb, ck], ["base", "model"])
    check_inputs([cb])
    check_scorable(ck)  # finite, complete, with a tokenizer: never sample from broken weights
    settings = {"samples": samples, "max_tokens": max_tokens, "seed": seed, "batch_size": batch_size,
                "dtype": dtype, "device": device.split(":")[0], "n_boot": n_boot, "temperature": 1.0,
                "top_p": 1.0, "top_k": None}
    sha = {"model": model_fingerprint(ck), "base": model_fingerprint(cb)}
    key = kl_cache_key(sha["model"], sha["base"], prompts, settings)
    cached = cache_root() / "kl" / f"{key}.json"
    if use_cache and cached.is_file():
        result, hit = json.loads(cached.read_text()), True
    else:
        with cpu_threads_for(ck.path, device):  # a tiny model on the CPU: one thread, as lm-eval's scoring
            result = estimate(ck.path, cb.path, prompts, samples, max_tokens, seed, batch_size, device, dtype, n_boot)
        hit = False
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cached, json.dumps(result, indent=1) + "\n", register_file=False)
    doc = {"model": str(ck.path), "base": str(cb.path), "sha256": sha, "settings": settings, "sampling": SAMPLING,
           **result, "cache_key": key, "cached": hit}
    if out is not None:
        with atomic_dir(out, kind="kl", inputs=[ck.path, cb.path], overwrite=overwrite) as tmp:
            (tmp / KL_JSON).write_text(json.dumps(doc, indent=2) + "\n")
    return doc
