"""mask: keep the update only on a chosen set of entries, ``W0 + M ⊙ dW``.

Mask sources (docs/science.md, "Edits"):

- ``bf16``: entries whose bf16 values differ between W0 and W1 (the update
  mask the sparsity papers count);
- ``magnitude``: the top-p fraction of entries by ``|dW|`` (p = density,
  default 0.1), a precision-free alternative;
- ``principal``: the top-α fraction of entries by ``|W0_k|``, W0_k the rank-k
  reconstruction of W0 (α = density, default 0.5);
- ``low``: the bottom-α fraction of entries by ``|W0|`` (α default 0.5);
- ``from``: another run's bf16 update mask from the same base (a transplant);
- ``random``: a seeded random mask, the control; its density defaults to the
  bf16 mask's density of the same matrix, so it controls that mask.

The masks themselves are ``rankedit.core.masks``, the analysis' own: fractions
are hit exactly (ties go to the lowest flat indices), so a mask of density p
keeps round(p · numel) entries, and the ``principal`` mask is the M_p that
``overlap_principal`` scores (same exact decomposition of W0, same cut).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import torch
from pydantic import Field, StrictInt

from rankedit.core.masks import bf16_update_mask, fraction, low_mask, principal_mask_of, top_fraction_mask
from rankedit.core.svd import exact_accuracy, svd_facts
from rankedit.edits.registry import Cli, Control, EditParams, EditResult, MatrixInputs, generator, register
from rankedit.edits.storage import MatrixSize, Storage, sparse

SOURCES = ("bf16", "magnitude", "principal", "low", "from", "random")
DEFAULT_DENSITY = {"magnitude": 0.1, "principal": 0.5, "low": 0.5}


class MaskParams(EditParams):
    source: Literal["bf16", "magnitude", "principal", "low", "from", "random"] = Field(
        "bf16", description="where the mask comes from"
    )
    density: Optional[float] = Field(
        None, gt=0, le=1,
        description="fraction kept: p for magnitude (0.1), α for principal/low (0.5), random (bf16 mask's density)",
    )
    k: StrictInt = Field(16, ge=1, description="rank of W0's reconstruction for the principal mask")
    mask_from: Annotated[Optional[str], Cli(flag="--from", metavar="OTHER_TUNED")] = Field(
        None, description="another tuned checkpoint of the same base, for --source from")


def _describe(p: MaskParams) -> str:
    d = p.density
    return {
        "bf16": "entries whose bf16 value changed",
        "magnitude": f"largest {d or 0.1:.0%} of |ΔW|",
        "principal": f"top {d or 0.5:.0%} entries of W0's rank-{p.k or 16} part",
        "low": f"bottom {d or 0.5:.0%} entries of |W0|",
        "from": "entries the other run changed (transplant)",
        "random": f"random entries, {'density ' + format(d, '.0%') if d else 'same density as bf16 mask'} (control)",
    }[p.source]


def sparse_cost(p: MaskParams, size: MatrixSize) -> Storage:
    """The kept values and their positions (``storage.sparse``). The density is what the build kept
    (its manifest); without it, the parameters' or the source's default fraction."""
    d = size.density if size.density is not None else p.density if p.density is not None else DEFAULT_DENSITY.get(p.source)
    if d is None:
        raise ValueError(f"the density of mask source {p.source!r} is what the update did: give the kept density")
    return sparse(size, d)


def principal_mask(w0: torch.Tensor, alpha: float, k: int) -> tuple[torch.Tensor, dict]:
    """The mask, and the facts of W0's (exact) top-k decomposition: error 0, and whether s_k - s_k+1 is clear."""
    k = min(k, min(w0.shape))  # as before: a k beyond the short side keeps every direction
    mask, s = principal_mask_of(w0, alpha, k)
    return mask, svd_facts(exact_accuracy(s, k))


def random_mask(shape: tuple[int, ...], density: float, seed: int, device=None) -> torch.Tensor:
    scores = torch.rand(shape, generator=generator(seed))
    return top_fraction_mask(scores, density).to(device)


def make_mask(x: MatrixInputs, p: MaskParams) -> torch.Tensor:
    return make_mask_with_facts(x, p)[0]


def make_mask_with_facts(x: MatrixInputs, p: MaskParams) -> tuple[torch.Tensor, dict]:
    """The mask and, for the principal source, the accuracy facts of its SVD."""
    if p.source == "principal":
        return principal_mask(x.w0, p.density or DEFAULT_DENSITY["principal"], p.k)
    return _plain_mask(x, p), {}


def _plain_mask(x: MatrixInputs, p: MaskParams) -> torch.Tensor:
    w0, w1 = x.w0, x.w1
    if p.source == "bf16":
        return bf16_update_mask(w0, w1)
    if p.source == "magnitude":
        return top_fraction_mask((w1 - w0).abs(), p.density or DEFAULT_DENSITY["magnitude"])
    if p.source == "low":
        return low_mask(w0, p.density or DEFAULT_DENSITY["low"])
    if p.source == "from":
        if x.other is None:
            raise ValueError("mask source 'from' needs another tuned matrix")
        return bf16_update_mask(w0, x.other)
    if p.source == "random":
        density = p.density if p.density is not None else int(bf16_update_mask(w0, w1).sum()) / w0.numel()
        return random_mask(tuple(w0.shape), density, x.seed, w0.device)
    raise ValueError(f"unknown mask source {p.source!r}")


@register("mask", MaskParams, help="""Keep dW only on a mask of entries: W0 + M ⊙ dW.

    --source bf16: entries whose bf16 values changed; magnitude: top-p of |dW|
    (p = --density, default 0.1); principal: top-α of |W0_k| (rank --k
    reconstruction, α = --density, default 0.5); low: bottom-α of |W0|; from:
    another run's bf16 update mask (--from OTHER_TUNED, same base); random: a
    seeded random mask, by default with the bf16 mask's density per matrix.""",
          card_text="keeps the update on a subset of entries (W_base + M ⊙ dW)", describe=_describe,
          # a random mask of the same density controls every other mask (by default the bf16 mask's density)
          control=lambda p: None if p.source == "random" else Control(
              "mask", {"source": "random", "density": p.density or DEFAULT_DENSITY.get(p.source)}),
          storage=sparse_cost, artifact="sparse",
          svd_rank=lambda p: p.k if p.source == "principal" else None)
def mask(x: MatrixInputs, p: MaskParams) -> EditResult:
    m, facts = make_mask_with_facts(x, p)
    return EditResult(delta=x.dw * m, density=fraction(m), parts={"kept": m}, **facts)
