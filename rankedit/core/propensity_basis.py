"""An update written in the base matrix's own singular basis: propensity (the diagonal) and lability (the rest).

With W0 = U0 S0 V0ᵀ (thin SVD, r = min(m, n)) and C = U0ᵀ dW V0, the diagonal
c_i = u_iᵀ dW v_i changes W0's singular values with its vectors fixed
(propensity); everything else of dW rotates the vectors or adds directions W0
does not have (lability). For a rectangular W0 the thin basis spans only an
r-dimensional part of one side: the part of dW outside span(U0) ⊗ span(V0)
never reaches C and so counts as lability by construction (new directions).

The analysis (``propensity_share``) and the edits ``propensity-only`` /
``lability-only`` share these functions, so the metric measures exactly what
the edit keeps.

Numerics: W0's basis comes from ``gram_triplets`` (the float64 Gram
eigendecomposition the analysis uses). Directions whose singular value is at
or below the float32 rank tolerance (``numerical_rank``) are left out: their
long-side vectors are not determined by W0 (and the Gram route cannot
compute them accurately), so a change there is a new direction, i.e. lability.
Above that tolerance the long-side vectors are orthonormal to about
eps64 · (s_max / s_i)² ≤ 1e-6. Where W0 has tied singular values the
diagonal depends on the basis chosen inside the tied space (W0 does not fix
it); trained weights have no exact ties.
"""

from __future__ import annotations

import torch

from rankedit.core.linalg import SVD, gram_triplets, numerical_rank


def full_basis(w0: torch.Tensor) -> SVD:
    """W0's singular triplets above the float32 rank tolerance, all of them, in float64 (descending).

    Cost: one float64 eigendecomposition of the short side's Gram matrix
    (min(m, n)³) and two m·n·min(m, n) products (the Gram and the long-side vectors).
    """
    if w0.ndim != 2:
        raise ValueError(f"need a 2-D matrix, got shape {tuple(w0.shape)}")
    shape = (int(w0.shape[0]), int(w0.shape[1]))
    s, svd = gram_triplets(w0.double(), min(shape))
    keep = numerical_rank(s, shape, torch.float32)
    return SVD(svd.U[:, :keep], svd.S[:keep], svd.V[:, :keep])


def diagonal(basis: SVD, dw: torch.Tensor) -> torch.Tensor:
    """diag(U0ᵀ dW V0) in float64, without forming C: c_i = u_iᵀ dW v_i (cost m·n·r)."""
    return ((basis.U.T @ dw.double()) * basis.V.T).sum(dim=1)


def propensity_delta(w0: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
    """U0 diag(diag(C)) V0ᵀ: dW's change of W0's singular values, vectors fixed (float64)."""
    basis = full_basis(w0)
    return (basis.U * diagonal(basis, dw)) @ basis.V.T


def propensity_share(w0: torch.Tensor, dw: torch.Tensor) -> float:
    """‖diag(C)‖² / ‖dW‖_F²: the share of the update's energy that only rescales W0's singular values.

    nan for a zero update. 1 for dW = U0 diag(δ) V0ᵀ; sin²(θ/2) for a rotation of
    one singular pair's left (or right) vectors by θ in their plane; r / (m n) in
    expectation (ratio of expectations) for a Gaussian dW.
    """
    total = float(dw.double().pow(2).sum())
    if total == 0.0:
        return float("nan")
    return float(diagonal(full_basis(w0), dw).pow(2).sum()) / total
