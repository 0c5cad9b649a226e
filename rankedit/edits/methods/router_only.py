"""router-only: keep the routers' update alone (docs/science.md, "Mixture-of-experts updates")."""

from __future__ import annotations

from rankedit.core.modules import ROUTER
from rankedit.edits.methods.expert_topn import keep_tuned
from rankedit.edits.registry import EditParams, EditResult, MatrixInputs, register


@register("router-only", EditParams, help="""Keep only the routers' update: which experts a token goes to.

    Every MoE router (the E × d gate of a layer) keeps its tuned matrix, bit for bit; every
    other matrix stays at the base. Compare with experts-only, which keeps the rest of the
    experts' side.""",
          describe=lambda p: "ΔW of the MoE routers only", needs=ROUTER)
def router_only(x: MatrixInputs, p: EditParams) -> EditResult:
    return keep_tuned(x, x.place is not None and x.place.kind == ROUTER)
