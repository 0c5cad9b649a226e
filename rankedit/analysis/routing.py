"""How much the routing of a mixture-of-experts model changes between base and tuned, on a prompt set.

Each model runs the prompts (transformers' own class, remote code off); at every router the hidden
states entering it are caught (a forward pre-hook) and its top-k experts per token are taken from
the router's logits ``h Rᵀ (+ bias)`` with that model's own R. The flip rate of a layer is the share
of (token, slot) top-k choices that differ: per token, the number of experts in the base's top-k
that are not in the tuned top-k, over k (docs/science.md, "Mixture-of-experts updates").
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from rankedit.core.modules import ROUTER, classify, loaded_names
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.validate import quiet_transformers


def flip_rate(top0: torch.Tensor, top1: torch.Tensor) -> float:
    """Share of (token, slot) choices of ``top0`` ([tokens, k] expert indices) absent from ``top1``'s row."""
    if top0.numel() == 0:
        return 0.0
    same = (top0.unsqueeze(-1) == top1.unsqueeze(-2)).any(-1)  # [tokens, k]: this choice is also made in tuned
    return float(1.0 - same.float().mean())


def _router_modules(model, ck) -> dict[int, tuple[str, str]]:
    """layer -> (module name in the loaded model, weight tensor name on disk) of each router."""
    mods = dict(model.named_modules())
    out = {}
    for name in ck.names:
        info = classify(name, ck.info(name).shape, ck.model_type, ck.config)
        if info.kind != ROUTER or info.layer is None:
            continue
        module = next((c for c in _names(name.removesuffix(".weight")) if c in mods), None)
        if module is not None:
            out[info.layer] = (module, name)
    return out


def _names(module: str) -> list[str]:
    # Granite's router.layer: the router module itself may hold the weight
    return loaded_names(module) + ([module.removesuffix(".layer")] if module.endswith(".layer") else [])


def choices(path, prompts: Sequence[Sequence[int]], k: int) -> dict[int, torch.Tensor]:
    """layer -> [tokens, k] top-k experts chosen by ``path``'s routers on the token-id prompts."""
    from transformers import AutoModelForCausalLM

    ck = Checkpoint(path)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(str(path), trust_remote_code=False, dtype=torch.float32).eval()
    routers = _router_modules(model, ck)
    caught: dict[int, list[torch.Tensor]] = {layer: [] for layer in routers}
    hooks = []
    mods = dict(model.named_modules())
    for layer, (module, _) in routers.items():
        hooks.append(mods[module].register_forward_pre_hook(
            lambda m, args, layer=layer: caught[layer].append(args[0].detach().reshape(-1, args[0].shape[-1]))))
    try:
        with torch.no_grad():
            for ids in prompts:
                model(torch.tensor([list(ids)]))
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for layer, (_, name) in routers.items():
        w = ck.get(name).float()
        bias_name = name.removesuffix("weight") + "bias"
        h = torch.cat(caught[layer]) if caught[layer] else torch.zeros(0, w.shape[1])
        logits = h @ w.T + (ck.get(bias_name).float() if bias_name in ck.names else 0)
        out[layer] = logits.topk(min(k, w.shape[0]), dim=-1).indices
    return out


def routing_flips(base, tuned, prompts: Sequence[Sequence[int]], k: int) -> dict:
    """{"flip_rate": {layer: rate}, "mean": mean rate, "tokens": count} of base vs tuned routing."""
    b, t = choices(Path(base), prompts, k), choices(Path(tuned), prompts, k)
    rates = {str(layer): flip_rate(b[layer], t[layer]) for layer in sorted(b) if layer in t}
    tokens = int(next(iter(b.values())).shape[0]) if b else 0
    return {"flip_rate": rates, "mean": sum(rates.values()) / len(rates) if rates else None, "tokens": tokens, "k": k}
