"""Pretraining the base: next-token loss on answer tokens over a deterministic stream of problems.

A short plain PyTorch loop (AdamW, warmup then cosine decay to ``min_lr_ratio``):
the base is annealed before it is stopped, so later gains from RL or SFT are not
merely the effect of a lower learning rate. Problems are generated on the fly
from the seed (never a test prompt), so the data are identical on every build.
"""

from __future__ import annotations

import random
from typing import Callable

import torch
from transformers import get_cosine_schedule_with_warmup

from rankedit.organism import tasks
from rankedit.organism.model import new_model
from rankedit.organism.tokenizer import VOCAB

BOS_ID, EOS_ID, PAD_ID = VOCAB["<s>"], VOCAB["</s>"], VOCAB["<pad>"]


def encode_pair(prompt: str, target: str) -> tuple[list[int], int]:
    """Token ids of prompt+target and the prompt length (prompts start with <s>, targets end with </s>)."""
    p = [BOS_ID] + [VOCAB[c] for c in prompt[len(tasks.BOS):]]
    t = [VOCAB[c] for c in target[: -len(tasks.EOS)]] + [EOS_ID]
    return p + t, len(p)


def batch_tensors(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask, and labels that score only target tokens."""
    enc = [encode_pair(p, t) for p, t in pairs]
    width = max(len(ids) for ids, _ in enc)
    ids = torch.full((len(enc), width), PAD_ID)
    labels = torch.full((len(enc), width), -100)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, (seq, plen) in enumerate(enc):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, plen : len(seq)] = torch.tensor(seq[plen:])
    return ids, mask, labels


def pretrain(r: dict, seed: int, on_step: Callable[[int, int, float], None] | None = None):
    """Train a fresh model per recipe r; returns (model, losses)."""
    cfg = r["pretrain"]
    device = r.get("device", "cpu")
    model = new_model(r, seed).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.99), weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, cfg["warmup"], cfg["steps"])
    floor = cfg["min_lr_ratio"]
    # cosine to zero rescaled onto [floor, 1]: the annealed end keeps a small, non-zero rate
    for g in opt.param_groups:
        g["initial_lr"] = cfg["lr"]
    sched.lr_lambdas = [lambda s, f=sched.lr_lambdas[0]: f(s) if s < cfg["warmup"] else floor + (1 - floor) * f(s)]
    rng = random.Random(seed)
    held_out = tasks.held_out_prompts()
    losses = []
    for step in range(cfg["steps"]):
        pairs = []
        while len(pairs) < cfg["batch"]:
            p, t = tasks.pretrain_example(rng, cfg["p_worked"], cfg["p_control"], cfg["p_long"], cfg.get("p_careless", 0.0),
                                          cfg.get("p_sum", 0.0), cfg.get("p_spaced", 0.0),
                                          cfg.get("p_padded", 0.0), cfg.get("p_restated", 0.0),
                                          cfg.get("p_restated_add", 0.0))
            if p not in held_out:
                pairs.append((p, t))
        ids, mask, labels = (t.to(device) for t in batch_tensors(pairs))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step:
            on_step(step + 1, cfg["steps"], losses[-1])
    model.eval()
    return model.cpu(), losses
