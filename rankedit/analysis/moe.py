"""The science of a mixture-of-experts update (docs/science.md, "Mixture-of-experts updates").

From analyze's per-matrix rows (pure: rows in, numbers out), per layer l and expert e with
matrices m (gate, up, down, or a fused gate_up):

- update share ``s_e = Σ_m ‖ΔW[l,e,m]‖² / Σ_e' Σ_m ‖ΔW[l,e',m]‖²``;
- the top-n share: the sum of the n largest s_e (a uniform update gives n/E), for n = 1 and
  n = the config's experts per token;
- bf16 sparsity: the share of the expert's entries whose bf16 value did not change;
- rank-1 energy: ``Σ_m σ1(ΔW_m)² / Σ_m ‖ΔW_m‖²``;

and each router's relative update norm ‖ΔR‖/‖R0‖. The routing flip rate needs the models
themselves (``rankedit.analysis.routing``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Optional

from rankedit.core.modules import EXPERT, ROUTER

_TOP_K_KEYS = ("num_experts_per_tok", "moe_k", "top_k", "num_experts_per_token")


def experts_per_token(config: Optional[Mapping]) -> int:
    for cfg in (config or {}, (config or {}).get("text_config") or {}):
        for key in _TOP_K_KEYS:
            v = cfg.get(key) if isinstance(cfg, Mapping) else None
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return 0


def shares(norms: Mapping[int, float]) -> dict[int, float]:
    """expert -> s_e from expert -> Σ_m ‖ΔW‖² of one layer (all zero when the layer did not change)."""
    total = sum(norms.values())
    return {e: (v / total if total > 0 else 0.0) for e, v in sorted(norms.items())}


def top_share(s: Mapping[int, float], n: int) -> float:
    """The sum of the n largest shares."""
    return sum(sorted(s.values(), reverse=True)[:n])


def moe_summary(rows: list[dict], config: Optional[Mapping] = None) -> Optional[dict]:
    """Per layer and expert: share, bf16 sparsity, rank-1 energy; top-n shares; router relative norms.
    None when no row is an expert's."""
    experts = [r for r in rows if r.get("kind") == EXPERT and r.get("expert") is not None]
    if not experts:
        return None
    k = experts_per_token(config)
    ns = sorted({1, k} - {0})
    per: dict = defaultdict(lambda: defaultdict(list))
    for r in experts:
        per[r["layer"]][r["expert"]].append(r)
    layers = {}
    for layer in sorted(per, key=lambda v: (v is None, v)):
        by_e = per[layer]
        norm2 = {e: sum(r["update_norm_sq"] for r in rs) for e, rs in by_e.items()}
        s = shares(norm2)
        table = {}
        for e, rs in sorted(by_e.items()):
            numel = sum(r["shape"][0] * r["shape"][1] for r in rs)
            sparsity = [(r.get("sparsity_bf16"), r["shape"][0] * r["shape"][1]) for r in rs]
            r1 = [(r.get("rank1_energy"), r["update_norm_sq"]) for r in rs]
            table[str(e)] = {
                "share": s[e], "update_norm_sq": norm2[e],
                "sparsity_bf16": (sum(v * n for v, n in sparsity) / numel
                                  if numel and all(v is not None for v, _ in sparsity) else None),
                "rank1_energy": (sum(v * w for v, w in r1) / norm2[e]
                                 if norm2[e] > 0 and all(v is not None for v, _ in r1) else None),
            }
        layers[str(layer)] = {"experts": table, "top_share": {str(n): top_share(s, n) for n in ns}}
    routers = {str(r["layer"]): r.get("rel_update_norm") for r in rows if r.get("kind") == ROUTER}
    mean_top = {str(n): sum(v["top_share"][str(n)] for v in layers.values()) / len(layers) for n in ns}
    return {"experts_per_token": k or None, "layers": layers, "top_share_mean": mean_top,
            "router_rel_update_norm": routers}
