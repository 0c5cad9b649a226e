"""rank-auto: rank-k with the rank chosen per matrix, and its control random-rank-auto.

The rank k_i of each matrix is either

- by energy (``energy`` τ): the smallest k with ``‖dW_k‖_F² / ‖dW‖_F² ≥ τ``
  (``‖dW_k‖_F² = Σ_{j≤k} s_j²``; AlphaRL's "how many directions hold the update"), or
- by a parameter ratio (``param_ratio`` r, ReproAlphaRL's ``--param_ratio``): the largest
  k with ``k (m + n) ≤ r · m n``, at least 1: each matrix gets a share of the budget in
  proportion to its size, so the model's LoRA factors hold about r of its matrices'
  entries (a little more where the floor of 1 direction binds).

mergekit runs an edit one matrix at a time, so a rank can depend only on the matrix in
hand: a model-wide budget spent greedily where ``s_j² / (m + n)`` is largest needs every
spectrum first and is not offered. The edit is then exactly ``rank-k`` with k = k_i
(same rescale); random-rank-auto is ``random-rank-k`` with the same k_i. On matrices
up to 256 on the short side that is rank-k's own SVD. Above, the energy rule's one
float64 Gram eigendecomposition, which gives every singular value to choose k, also
gives the exact top-k triplets (``energy_top``), where rank-k would decompose again
with its guarded SVD (the same edit within that SVD's 1e-3).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from pydantic import Field, model_validator

from rankedit.core.guarded_svd import Accuracy
from rankedit.core.linalg import SVD, gram64, gram_eigh, gram_triplets, norm64, numerical_rank, triplets_from_eigh
from rankedit.core.svd import EXACT_MAX_DIM, edit_svd, exact_accuracy
from rankedit.edits.methods.rank_k import RankKParams, Scale, random_directions, rank_k, rank_k_edit
from rankedit.edits.registry import Control, EditResult, MatrixInputs, SvdParams, register
from rankedit.edits.storage import MatrixSize, Storage, low_rank


class RankAutoParams(SvdParams):
    energy: Optional[float] = Field(None, gt=0, le=1, description="τ: the smallest k keeping ‖dW_k‖²/‖dW‖² ≥ τ")
    param_ratio: Optional[float] = Field(
        None, gt=0, le=1, description="r: the largest k with k(m + n) ≤ r·m·n (at least 1), per matrix")
    scale: Scale = Field("norm", description="norm (AlphaRL: rescale to ‖dW‖_F), none (c = 1) or a number c")

    @model_validator(mode="after")
    def _one_rule(self):
        if (self.energy is None) == (self.param_ratio is None):
            raise ValueError("give exactly one of --energy and --param-ratio")
        return self


def ratio_rank(shape: tuple[int, int], ratio: float) -> int:
    """The largest k with k(m + n) ≤ ratio·m·n, between 1 and the short side."""
    m, n = shape
    return max(1, min(min(m, n), int(ratio * m * n // (m + n))))


def energy_rank(dw: torch.Tensor, tau: float, seed: int = 0) -> int:
    """The smallest k with Σ_{j≤k} s_j² ≥ τ ‖dW‖_F² (float64 sums).

    Choosing k needs singular values only, every one up to k: a small matrix gets its
    exact SVD; a large one the values of one float64 Gram eigendecomposition (no
    vectors). The former rule, doubling k with a top-k SVD each time, sent every k
    whose boundary fell into a noise-like bulk to the guard's exact fallback, once per
    doubling: over 5 minutes on a 0.5B pair (BENCHMARKS.md)."""
    short = min(dw.shape)
    if short > EXACT_MAX_DIM:
        return energy_top(dw, tau, vectors=False)[0]
    s = edit_svd(dw, short, seed)[0].S.double()  # an exact SVD: every value, as rank-k's own
    return _rank_for(s, tau, dw)


def _rank_for(s: torch.Tensor, tau: float, dw: torch.Tensor) -> int:
    """``energy_rank``'s k from all of dW's singular values ``s`` (descending)."""
    total = norm64(dw) ** 2
    if total == 0:
        return 1
    if tau >= 1.0:  # all of it: the update's rank (summed in float, Σ s_j² may meet ‖dW‖² a few values early)
        return max(1, numerical_rank(s, tuple(dw.shape), dw.dtype))
    hit = (torch.cumsum(s * s, 0) >= tau * total).nonzero()
    return int(hit[0]) + 1 if hit.numel() else min(dw.shape)  # none: rounding kept Σ s_j² a hair below ‖dW‖²


def energy_top(dw: torch.Tensor, tau: float, vectors: bool) -> tuple[int, SVD | torch.Tensor, Accuracy]:
    """For a large matrix: ``energy_rank``'s k and, from the same float64 Gram eigendecomposition,
    the exact top-k triplets (``vectors``) or values, with their accuracy. One decomposition
    where choosing k, then decomposing again at that k, took two (and a k in a noise-like
    bulk sent the second to the guard's exact fallback anyway)."""
    if not vectors:
        s = gram_triplets(dw, 0)[0]  # values only
        k = _rank_for(s, tau, dw)
        return k, s[:k].to(dw.dtype), exact_accuracy(s, k)
    a, gram = gram64(dw)
    s, vecs = gram_eigh(gram)
    k = _rank_for(s, tau, dw)
    top = triplets_from_eigh(a, s, vecs, k)
    return k, SVD(top.U.to(dw.dtype), top.S.to(dw.dtype), top.V.to(dw.dtype)), exact_accuracy(s, k)


def _large(x: MatrixInputs, p: "RankAutoParams") -> bool:
    """Whether the energy rule takes ``energy_top`` (small matrices keep rank-k's own exact SVD)."""
    return p.energy is not None and min(x.w0.shape) > EXACT_MAX_DIM


def _energy_ahead(vectors: bool):
    """``Edit.ahead``: the energy rule's decomposition of a large matrix, beside the merge (dW is a fresh
    difference, so it has the same bits there). None for a matrix the rule does not take ``energy_top`` for
    (``_large``): a GQA model's 256 x 1536 k/v is scheduled ahead by its long side, and its edit is rank-k's."""
    def work(p: "RankAutoParams"):
        return (lambda x: energy_top(x.dw, p.energy, vectors) if _large(x, p) else None) if p.energy is not None else None

    return work


def chosen_rank(x: MatrixInputs, p: RankAutoParams) -> int:
    if p.param_ratio is not None:
        return ratio_rank(tuple(x.dw.shape), p.param_ratio)
    return energy_rank(x.dw, p.energy, x.seed)


def auto_cost(p: RankAutoParams, size: MatrixSize) -> Storage:
    """LoRA factors of the rank the build chose (``size.rank``); a parameter ratio's rank is known in advance."""
    k = size.rank if size.rank is not None else ratio_rank(size.shape, p.param_ratio) if p.param_ratio else None
    if k is None:
        raise ValueError("an energy threshold's rank is what each matrix needs: give the rank the build stored")
    return low_rank(size, k)


def _describe(p: RankAutoParams) -> str:
    rule = f"{p.energy:g} of ‖ΔW‖²" if p.energy is not None else f"{p.param_ratio:g} of the entries in factors"
    how = {"norm": ", rescaled to ‖ΔW‖", "none": ""}.get(str(p.scale), f", ×{p.scale}")
    return f"top-k singular directions per matrix, k for {rule}{how}"


def _as_rank_k(p: RankAutoParams, k: int) -> RankKParams:
    return RankKParams(k=k, scale=p.scale, rest=p.rest, seed=p.seed, exact_svd=p.exact_svd)


@register("rank-auto", RankAutoParams, help="""Rank-k with the rank chosen per matrix, by an energy threshold or a parameter ratio.

    --energy τ: the smallest k with ‖dW_k‖²/‖dW‖² ≥ τ; --param-ratio r: the largest
    k with k(m+n) ≤ r·m·n (each matrix's budget share in proportion to its size).
    Then rank-k with that k (same --scale; above 256 on the short side the exact
    decomposition that chose k, where rank-k takes its guarded SVD: within 1e-3).""",
          card_text="keeps the top singular directions of each matrix's update, as many per matrix as an "
                    "energy threshold or a parameter ratio asks",
          describe=_describe, control=Control("random-rank-auto"), storage=auto_cost, svd_rank=lambda p: None,
          artifact="lora", ahead=_energy_ahead(vectors=True))
def rank_auto(x: MatrixInputs, p: RankAutoParams) -> EditResult:
    if _large(x, p):
        k, top, acc = x.ahead if x.ahead is not None else energy_top(x.dw, p.energy, vectors=True)
        return replace(rank_k_edit(x.dw, k, p.scale, x.seed, top=(top, acc)), stored_rank=k)
    k = chosen_rank(x, p)
    return replace(rank_k(x, _as_rank_k(p, k)), stored_rank=k)


@register("random-rank-auto", RankAutoParams, help="""Control for rank-auto: the same ranks, random directions.

    random-rank-k with each matrix's k chosen as rank-auto chooses it.""",
          card_text="control: as many random orthonormal directions per matrix as rank-auto keeps, same norm",
          describe=lambda p: _describe(p).replace("top-k singular", "random") + " (control)",
          storage=auto_cost, svd_rank=lambda p: None, artifact="lora", ahead=_energy_ahead(vectors=False))
def random_rank_auto(x: MatrixInputs, p: RankAutoParams) -> EditResult:
    if _large(x, p):
        k, values, acc = x.ahead if x.ahead is not None else energy_top(x.dw, p.energy, vectors=False)
        return replace(random_directions(x, k, p.scale, top=(values, acc)), stored_rank=k)
    k = chosen_rank(x, p)
    return replace(random_directions(x, k, p.scale, exact=p.exact_svd), stored_rank=k)
