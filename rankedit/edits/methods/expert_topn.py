"""expert-topn: keep the update of the n experts of each layer that RL changed most; random-expert-topn,
its control, keeps n experts drawn at random (docs/science.md, "Mixture-of-experts updates").

Which experts is decided across matrices before any is edited (``Edit.across``): per layer,
``s_e = Σ_m ‖ΔW[l,e,m]‖²`` over the expert's matrices (gate, up, down, or a fused gate_up); the n
largest are kept (ties: the lower index). Every other matrix (the other experts, attention,
routers, shared experts, mixers) stays at the base, bit for bit; a kept expert's matrices are the
tuned ones, bit for bit.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping

from pydantic import Field, StrictInt

from rankedit.core.modules import EXPERT
from rankedit.edits.registry import Control, EditParams, EditResult, MatrixInputs, MatrixPlace, generator, register


class ExpertTopNParams(EditParams):
    n: StrictInt = Field(2, ge=1, description="experts kept in each MoE layer")


def keep_tuned(x: MatrixInputs, keep: bool) -> EditResult:
    """The tuned matrix (bit for bit) where ``keep``, else the base's."""
    if keep:
        return EditResult(delta=x.dw, weight=x.w1, density=1.0)
    return EditResult(delta=x.w0.new_zeros(x.w0.shape), density=0.0)


def layer_norms(table: Mapping[str, tuple[MatrixPlace, float]]) -> dict:
    """layer -> expert -> Σ_m ‖ΔW‖² (routed experts only)."""
    out: dict = defaultdict(lambda: defaultdict(float))
    for place, norm2 in table.values():
        if place.kind == EXPERT and place.expert is not None:
            out[place.layer][place.expert] += norm2
    return out


def top_experts(norms: Mapping[int, float], n: int) -> set[int]:
    """The n experts with the largest update (ties: the lower index first)."""
    return set(sorted(norms, key=lambda e: (-norms[e], e))[:n])


def random_experts(experts: list[int], n: int, seed: int, layer) -> set[int]:
    """n experts drawn at random from ``experts``, a fixed draw per (seed, layer)."""
    import torch

    g = generator(seed * 1_000_003 + (layer if isinstance(layer, int) else 0) + 1)
    order = torch.randperm(len(experts), generator=g).tolist()
    return {sorted(experts)[i] for i in order[:n]}


def _chosen(p: ExpertTopNParams, table, pick) -> dict[str, bool]:
    chosen = {layer: pick(norms, layer) for layer, norms in layer_norms(table).items()}
    return {key: place.kind == EXPERT and place.expert in chosen.get(place.layer, ())
            for key, place in ((k, v[0]) for k, v in table.items())}


def _top(p: ExpertTopNParams, table) -> dict[str, bool]:
    return _chosen(p, table, lambda norms, layer: top_experts(norms, p.n))


def _random(p: ExpertTopNParams, table) -> dict[str, bool]:
    return _chosen(p, table, lambda norms, layer: random_experts(list(norms), p.n, p.seed, layer))


@register("expert-topn", ExpertTopNParams, help="""Keep the update of the n experts RL changed most in each MoE layer.

    Per layer, s_e = Σ_m ‖ΔW[l,e,m]‖² over the expert's matrices; the n experts with the
    largest s_e keep their tuned matrices, bit for bit; every other matrix (other experts,
    attention, routers, shared experts, mixers) stays at the base.""",
          describe=lambda p: f"ΔW of the top-{p.n} experts by update norm in each layer",
          control=Control("random-expert-topn"), across=_top, needs=EXPERT)
def expert_topn(x: MatrixInputs, p: ExpertTopNParams) -> EditResult:
    return keep_tuned(x, bool(x.across))


@register("random-expert-topn", ExpertTopNParams, help="""Control for expert-topn: n experts per layer drawn at random.

    The same edit with the experts chosen by a fixed draw (--seed) instead of by update norm.""",
          describe=lambda p: f"ΔW of {p.n} random experts in each layer (control, seed {p.seed})", across=_random, needs=EXPERT)
def random_expert_topn(x: MatrixInputs, p: ExpertTopNParams) -> EditResult:
    return keep_tuned(x, bool(x.across))
