"""rank-k (AlphaRL) and its control random-rank-k.

rank-k keeps the top-k singular directions of dW: ``W0 + c · U_k S_k V_kᵀ``, with
``c = ‖dW‖_F / ‖U_k S_k V_kᵀ‖_F`` by default (AlphaRL's norm rescale, so the edit
moves the weights as far as the full update did), or ``c = 1`` (``scale="none"``),
or a given number. The top-k triplets come from a seeded randomized SVD for big
matrices (``rankedit.core.linalg.top_k_svd``), never a full decomposition of them.

random-rank-k is the control: k random orthonormal directions on each side,
carrying the same singular values and the same rescale, hence exactly the same
norm as the rank-k edit; only the directions differ.
"""

from __future__ import annotations

from typing import Literal, Union

import torch
from pydantic import Field, StrictInt

from rankedit.edits.registry import EditParams, EditResult, MatrixInputs, generator, register
from rankedit.core.svd import edit_svd, svd_facts
from rankedit.core.guarded_svd import Accuracy
from rankedit.core.linalg import numerical_rank

Scale = Union[Literal["norm", "none"], float]


class RankKParams(EditParams):
    k: StrictInt = Field(1, ge=1, description="number of singular directions of dW kept")
    scale: Scale = Field("norm", description="norm (AlphaRL: rescale to ‖dW‖_F), none (c = 1) or a number c")


def rescale_factor(dw: torch.Tensor, s_kept: torch.Tensor, scale: Scale) -> float:
    """The factor c in front of the kept part."""
    if scale == "none":
        return 1.0
    if scale == "norm":
        # float64 sums: a float32 norm of a 13.7M-entry matrix was off by 5e-4, an error of the edit itself
        kept = float(torch.linalg.vector_norm(s_kept, dtype=torch.float64))
        return float(torch.linalg.vector_norm(dw, dtype=torch.float64)) / kept if kept > 0 else 1.0
    return float(scale)


def rank_k_factors(dw: torch.Tensor, k: int, scale: Scale = "norm", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(B, A, rank_kept)`` with ``B @ A = c · U_k S_k V_kᵀ``: B is (m, k), A is (k, n)."""
    return rank_k_parts(dw, k, scale, seed)[:3]


def rank_k_parts(dw: torch.Tensor, k: int, scale: Scale = "norm", seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, int, Accuracy]:
    """``rank_k_factors`` and the ``Accuracy`` of the SVD behind them.

    The singular values are split evenly (sqrt on each side) so that B and A are
    also a well-conditioned LoRA pair.
    """
    svd, acc = edit_svd(dw, k, seed)
    c = rescale_factor(dw, svd.S, scale)
    root = (svd.S * abs(c)).sqrt()
    sign = -1.0 if c < 0 else 1.0
    B = svd.U * (root * sign)
    A = (svd.V * root).T
    return B, A, numerical_rank(svd.S, tuple(dw.shape), dw.dtype), acc


@register("rank-k", RankKParams, "keep the top-k singular directions of dW (AlphaRL rank-1 for k=1)")
def rank_k(x: MatrixInputs, p: RankKParams) -> EditResult:
    B, A, kept, acc = rank_k_parts(x.dw, p.k, p.scale, x.seed)
    return EditResult(delta=B @ A, rank_kept=kept, **svd_facts(acc))


def random_orthonormal(n: int, k: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    # Fix QR's sign ambiguity so the result depends only on the seed.
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
    return q.to(dtype)


@register("random-rank-k", RankKParams, "control for rank-k: k random orthonormal directions with the same norm")
def random_rank_k(x: MatrixInputs, p: RankKParams) -> EditResult:
    dw = x.dw
    svd, acc = edit_svd(dw, p.k, x.seed)
    c = rescale_factor(dw, svd.S, p.scale)
    gen = generator(x.seed)
    m, n = dw.shape
    U = random_orthonormal(m, p.k, gen, dw.dtype).to(dw.device)
    V = random_orthonormal(n, p.k, gen, dw.dtype).to(dw.device)
    return EditResult(delta=(U * (svd.S * c)) @ V.T, rank_kept=numerical_rank(svd.S, (m, n), dw.dtype),
                      **svd_facts(acc))
