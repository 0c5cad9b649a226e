"""A planted pair: a tiny Llama whose RL "gain" is carried by a known rank pattern, and the task that shows it.

The task is a two-way multiple choice (lm-eval ``multiple_choice``, scored by
log-likelihood): problem p is one token, the answer "a" or "b". The model is built by
hand so that its answer is the sign of one number per problem:

- attention writes nothing (``o_proj`` = 0), so each position sees only its own token;
- a problem of block i (i < r) with sign σ embeds as ``g·e_0 + σ·e_{1+i}``; the MLP's gate reads
  e_0 (a constant), its up projection reads e_{1+i} into unit i: the MLP's activation is
  ``c·σ·e_i`` for a fixed c > 0;
- ``down_proj`` maps unit i to ``w_i·e_{r+1+i}``, and lm_head's row "a" is the sum of those
  output directions (row "b" is zero): logit(a) − logit(b) has the sign of ``σ·w_i``.

The base has ``w_i = −β`` (every answer wrong: the gold answer is "a" when σ = +1), the
tuned twin ``w_i = s_i − β`` with ``s_i > β`` (every answer right). The update ΔW of
``down_proj`` is therefore ``Σ s_i e_{r+1+i} e_iᵀ``: r orthogonal rank-1 components with
singular values s_1 > ... > s_r, component i fixing block i alone; every other matrix is
unchanged. Keeping the top k directions (with or without a positive rescale) fixes exactly
the first k blocks, so rank-k's retention is k/r exactly, and a magnitude mask keeping the
k largest entries of ΔW does the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rankedit.testing.char_tokenizer import char_tokenizer

TASK = "rankedit_planted"
# one token per problem; no digits (lm-eval reads a digit-only context as a choice index), no "a" or "b"
SYMBOLS = [chr(c) for c in range(ord("A"), ord("Z") + 1)] + [chr(c) for c in range(ord("c"), ord("z") + 1)]

_YAML = f"""# The planted pair's task (rankedit.testing.planted): one token in, "a" or "b" out, by log-likelihood.
task: {TASK}
custom_dataset: !function utils.load
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{q}}}}"
doc_to_choice: ["a", "b"]
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_UTILS = '''"""Loader of the planted task: the JSONL next to this file (no download)."""

from pathlib import Path

import datasets


def load(**kwargs):
    return {"test": datasets.Dataset.from_json(str(Path(__file__).parent / "planted.jsonl"))}
'''


def problems(r: int, block: int) -> list[dict]:
    """Block i holds ``block`` problems, signs alternating: (token, block, sign, gold index)."""
    if r * block > len(SYMBOLS):
        raise ValueError(f"at most {len(SYMBOLS)} problems, asked for {r * block}")
    out = []
    for i in range(r):
        for j in range(block):
            sign = 1 if j % 2 == 0 else -1
            out.append({"q": SYMBOLS[len(out)], "block": i, "sign": sign, "gold": 0 if sign > 0 else 1})
    return out


def write_task(folder: str | Path, r: int = 4, block: int = 8) -> Path:
    """The lm-eval task folder (YAML, loader, data) of ``problems(r, block)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TASK}.yaml").write_text(_YAML)
    (folder / "utils.py").write_text(_UTILS)
    rows = [{"q": p["q"], "gold": p["gold"]} for p in problems(r, block)]
    (folder / "planted.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    return folder


def _tokenizer():
    return char_tokenizer(SYMBOLS, words=("a", "b"))


def _model(vocab: dict, weights: list[float], r: int, block: int, g: float, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(vocab), max_position_embeddings=32,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.zero_()
        emb[:, 0] = g  # every token: the constant the gate reads
        for p in problems(r, block):
            emb[vocab[p["q"]], 1 + p["block"]] = p["sign"]
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()  # attention writes nothing: each position sees its own token
        mlp = layer.mlp
        for w in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight):
            w.zero_()
        for i in range(r):
            mlp.gate_proj.weight[i, 0] = 1.0
            mlp.up_proj.weight[i, 1 + i] = 1.0
            mlp.down_proj.weight[r + 1 + i, i] = weights[i]
        model.lm_head.weight.zero_()
        model.lm_head.weight[vocab["a"], r + 1: 2 * r + 1] = 1.0
    return model


def build_pair(root: str | Path, singular_values=(8.0, 4.0, 2.0, 1.0), block: int = 8, beta: float = 0.5,
               g: float = 4.0, seed: int = 0) -> tuple[Path, Path, Path]:
    """(base, tuned, task folder) under ``root``: ΔW of down_proj has the given singular values."""
    r = len(singular_values)
    if 2 * r + 1 > 16 or r > 8 or min(singular_values) <= beta:
        raise ValueError("at most 7 components, each singular value above beta")
    root = Path(root)
    tok, vocab = _tokenizer()
    out = []
    for name, w in (("base", [-beta] * r), ("tuned", [s - beta for s in singular_values])):
        model = _model(vocab, w, r, block, g, seed)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out.append(root / name)
    return out[0], out[1], write_task(root / "task", r, block)
