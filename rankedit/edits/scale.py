"""scale: ``W0 + λ dW``. λ = 1 reproduces the tuned model (the sanity control);
λ > 1 is ExPO-style extrapolation from the base, λ < 1 shrinks the update."""

from __future__ import annotations

from pydantic import Field

from rankedit.edits.registry import EditParams, EditResult, MatrixInputs, register


class ScaleParams(EditParams):
    factor: float = Field(1.0, description="λ in W0 + λ dW")


@register("scale", ScaleParams, "scale the whole update: W0 + λ dW")
def scale(x: MatrixInputs, p: ScaleParams) -> EditResult:
    return EditResult(delta=x.dw * p.factor)
