"""experts-only: keep the routed experts' update alone (docs/science.md, "Mixture-of-experts updates")."""

from __future__ import annotations

from rankedit.core.modules import EXPERT
from rankedit.edits.methods.expert_topn import keep_tuned
from rankedit.edits.registry import EditParams, EditResult, MatrixInputs, register


@register("experts-only", EditParams, help="""Keep only the routed experts' update: what the experts compute.

    Every routed expert's matrices keep their tuned values, bit for bit; routers, shared
    experts, attention and mixers stay at the base. Compare with router-only.""",
          describe=lambda p: "ΔW of the routed experts only", needs=EXPERT)
def experts_only(x: MatrixInputs, p: EditParams) -> EditResult:
    return keep_tuned(x, x.place is not None and x.place.kind == EXPERT)
