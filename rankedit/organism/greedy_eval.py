"""Fast batched greedy evaluation, scored exactly like the lm-eval organism tasks.

Left-padded batches through ``model.generate`` (greedy, KV cache), answer =
last integer of the completion, exact string match with the reference.
"""

from __future__ import annotations

import torch

from rankedit.organism.tasks import reward
from rankedit.organism.tokenizer import build_tokenizer


@torch.no_grad()
def greedy_completions(model, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 500) -> list[str]:
    tok = build_tokenizer()
    model.eval()
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i : i + batch_size], return_tensors="pt", padding=True).to(model.device)
        gen = model.generate(
            **enc, do_sample=False, max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        out += tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=False)
    return out


def accuracy(model, rows: list[dict], **kw) -> float:
    """Greedy exact-match accuracy (0-1) on rows of {"prompt", "answer"}."""
    comps = greedy_completions(model, [r["prompt"] for r in rows], **kw)
    return sum(reward(c, r["answer"]) for c, r in zip(comps, rows)) / max(len(rows), 1)
