"""scale: ``W0 + λ dW``. λ = 1 reproduces the tuned model (the sanity control);
λ > 1 is ExPO-style extrapolation from the base, λ < 1 shrinks the update."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rankedit.edits.registry import Cli, EditParams, EditResult, MatrixInputs, register


class ScaleParams(EditParams):
    factor: Annotated[float, Cli(required=True)] = Field(1.0, description="λ in W0 + λ dW")


@register("scale", ScaleParams, help="""Scale the whole update: W0 + λ·dW (λ = --factor; 1 reproduces TUNED).""",
          card_text="scales the whole update (W_base + λ dW)", describe=lambda p: f"{p.factor} × ΔW")
def scale(x: MatrixInputs, p: ScaleParams) -> EditResult:
    return EditResult(delta=x.dw * p.factor, rescale=p.factor)
