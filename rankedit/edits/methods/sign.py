"""sign: the 1-bit delta (BitDelta without its distillation step), and its control random-sign.

``W0 + γ ⊙ S`` with ``S = sign(dW) ∈ {-1, +1}`` (an entry where dW is exactly 0 gets +1: one
bit stores two values) and γ one scale per matrix, or one per row (``per: row``).

The scale (``scale``):

- ``mean`` (BitDelta's initial scale): ``γ = mean |dW|`` over the matrix (or the row). It is
  also the least-squares fit: for a ±1 matrix S, ``argmin_γ ‖dW - γS‖_F = <dW, S> / ‖S‖_F²
  = Σ|dW| / mn``, the same number (and per row, the row's mean |dW|). There is no separate
  "least-squares" option because it would give the very same bytes.
- ``norm``: ``γ = ‖dW‖_F / √(mn)`` (per row: the row's RMS), so the edit moves as far as the
  update, as rank-k's norm rescale does; recorded as the rescale ``norm / mean`` of the
  least-squares part.

random-sign is the control: seeded random ±1 signs with the very same scales.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rankedit.edits.registry import Control, EditParams, EditResult, MatrixInputs, generator, register
from rankedit.edits.storage import MatrixSize, Storage, signs


class SignParams(EditParams):
    per: Literal["matrix", "row"] = Field("matrix", description="one scale per matrix, or one per row (output unit)")
    scale: Literal["mean", "norm"] = Field(
        "mean", description="mean: mean |dW|, also the least-squares fit; norm: ‖dW‖_F/√(mn), the update's norm")


def sign_matrix(dw: torch.Tensor) -> torch.Tensor:
    """±1 signs of dW, +1 where dW is 0."""
    return torch.where(dw < 0, -1.0, 1.0).to(dw.dtype)


def sign_scales(dw: torch.Tensor, p: SignParams) -> tuple[torch.Tensor, float]:
    """The scale(s) γ, shaped to broadcast over dW, and the rescale they apply to the least-squares
    part (1 for ``mean``; float64 sums, as rank-k's norms)."""
    dims = (1,) if p.per == "row" else (0, 1)
    a = dw.abs().double()
    mean = a.mean(dim=dims, keepdim=True)
    if p.scale == "mean":
        return mean.to(dw.dtype), 1.0
    rms = a.square().mean(dim=dims, keepdim=True).sqrt()
    fit = float((mean * mean).sum().sqrt())
    return rms.to(dw.dtype), float((rms * rms).sum().sqrt()) / fit if fit > 0 else 1.0


def sign_cost(p: SignParams, size: MatrixSize) -> Storage:
    """One bit per entry plus the scales (one, or one per row)."""
    return signs(size, size.shape[0] if p.per == "row" else 1)


def _describe(p: SignParams) -> str:
    return f"sign(ΔW) × {'mean |ΔW|' if p.scale == 'mean' else 'RMS of ΔW'} per {p.per}"


@register("sign", SignParams, help="""1-bit delta: sign(dW) times one scale per matrix or per row (BitDelta).

    New matrix: W0 + γ·sign(dW). --scale mean: γ = mean |dW| (also the
    least-squares γ); norm: γ = ‖dW‖_F/√(mn), the update's norm. --per row: one γ
    per output row. BitDelta without the distillation of the scales.""",
          card_text="keeps only the sign of each entry of the update, times one scale per matrix (or per row)",
          describe=_describe, control=Control("random-sign"), storage=sign_cost, artifact="sign")
def sign(x: MatrixInputs, p: SignParams) -> EditResult:
    dw = x.dw
    gamma, c = sign_scales(dw, p)
    return EditResult(delta=gamma * sign_matrix(dw), rescale=c, parts={"scales": gamma})


@register("random-sign", SignParams, help="""Control for sign: random signs with the same scales.

    New matrix: W0 + γ·R, R seeded random ±1, γ exactly sign's.""",
          card_text="control: random signs in place of the update's, with the same scales",
          describe=lambda p: _describe(p).replace("sign(ΔW)", "random signs") + " (control)", storage=sign_cost,
          artifact="sign")
def random_sign(x: MatrixInputs, p: SignParams) -> EditResult:
    dw = x.dw
    gamma, c = sign_scales(dw, p)
    coin = torch.rand(dw.shape, generator=generator(x.seed)) < 0.5
    return EditResult(delta=gamma * torch.where(coin, -1.0, 1.0).to(dw.dtype).to(dw.device), rescale=c,
                      parts={"scales": gamma})
