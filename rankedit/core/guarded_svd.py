"""Top-k singular triplets with a stated accuracy, cheap when the spectrum allows it.

A randomized SVD with a few power iterations is fast but can return the wrong
direction when the top values are nearly tied and the spectrum decays slowly
(on 1536 x 1536 updates with s1/s2 = 1.015 the rank-1 edit came out wrong by a
third of its norm). ``guarded_top_k`` therefore checks every answer:

1. the cheap pass (seeded randomized range finder, QR-stabilised power
   iterations, Rayleigh-Ritz on the block, in the matrix's dtype); the bound
   of step 2 is checked after every product with A or Aᵀ (at no extra
   product), and a clear gap stops after a few of them;
2. an a posteriori bound on the angle between the computed and the exact top-k
   subspaces, from Wedin's sin-theta theorem in residual form:
   ``||sin Θ||_F <= ||R||_F / (s_k - s_{k+1})``, R the residuals
   ``A V_k - U_k S_k`` and ``Aᵀ U_k - V_k S_k`` of the top-k triplets (Rayleigh-Ritz
   on one side makes that side's residual zero). s_{k+1} is estimated by the
   (k+1)-th Ritz value plus its own residual, so the bound is an estimate; the
   tests check it against numpy's float64 SVD on planted spectra;
3. while the bound is above ``tol``: a block Krylov continuation in float64
   (Musco & Musco 2015), warm-started from the cheap block, which converges
   with the square root of the gap where power iterations converge with the
   gap itself; after ``MAX_BLOCKS`` blocks (or at once when the cheap pass's
   values predict more, as on a flat, noise-like spectrum), the exact float64
   Gram eigendecomposition (``rankedit.core.linalg.gram_svd``).

For a rank-k reconstruction ``U_k S_k V_kᵀ = U_k U_kᵀ A`` the relative Frobenius
error is at most ``sqrt(2) ||sin Θ||_F`` (``edit_error``); the default ``tol``
keeps that below 1e-3 with a margin.

The top-k subspace is *not identifiable* when ``s_k - s_{k+1} < GAP_TOL · s_1``:
a change of dW of 1e-6 of its norm (less than storing the weights in bf16
changes) can then turn it by 1e-3. Such matrices get the exact decomposition
of the matrix as given, and the caller is told (``Accuracy.identifiable``).
Directions with numerically zero singular values (rank-deficient inputs) carry
no weight in any reconstruction and are left out of the bound.

All of the above is ``exact=True`` (``--exact-svd``), unchanged bit for bit. The edits'
default, ``exact=False``, changes only what follows a cheap pass that missed ``tol``
(``_contract``): where the storage precision of the decomposed matrix cannot fix the
top-k subspace to ``tol``, a certified near-optimal rank-k part; elsewhere Krylov, then
the top k + 1 Gram eigenpairs by a subset eigensolver (``rankedit.core.near_optimal``).
"""

from __future__ import annotations

import math
from typing import Callable
from dataclasses import dataclass

import torch

from rankedit.core import near_optimal
from rankedit.core.linalg import SVD, gram_triplets, norm64, numerical_rank, times, times_t

TOL = 5e-4  # bound on the estimated ||sin Θ||_F: a rank-k edit within sqrt(2) * 5e-4 < 1e-3
GAP_TOL = 1e-3  # below this (s_k - s_{k+1}) / s_1 the top-k subspace is not identifiable
MAX_BLOCKS = 16  # Krylov blocks before the exact decomposition is cheaper


@dataclass(frozen=True)
class Accuracy:
    subspace_error: float  # estimated ||sin Θ||_F between computed and exact top-k subspaces (0 when exact in theory)
    rel_gap: float  # (s_k - s_{k+1}) / s_1 of the numerically nonzero top-k (inf: nothing below it)
    identifiable: bool
    method: str  # "randomized" | "krylov" | "exact" | "near-optimal" (rankedit.core.near_optimal)
    # near-optimal only: ε of the certified ||A - U_k S_k V_kᵀ||_F <= (1 + ε) min_{rank B <= k} ||A - B||_F
    residual_bound: float | None = None

    @property
    def mode(self) -> str:
        """``svd_mode`` of the manifest: "near-optimal" (a certified residual bound) or "exact" (the top-k
        subspace within ``subspace_error`` of the exact one)."""
        return "near-optimal" if self.method == "near-optimal" else "exact"

    @property
    def edit_error(self) -> float:
        """Bound on the relative Frobenius error of the rank-k reconstruction U_k S_k V_kᵀ."""
        return math.sqrt(2.0) * self.subspace_error


def _ritz(A: torch.Tensor, K: torch.Tensor, B: torch.Tensor) -> SVD:
    """Rayleigh-Ritz triplets of A on the orthonormal basis K (B = Kᵀ A), all of them."""
    Ub, S, Vh = torch.linalg.svd(B, full_matrices=False)
    return SVD(K @ Ub, S, Vh.T)


def residuals(X: torch.Tensor, Y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Column norms of X - Y diag(s) in float64: a triplet residual (A V - U S or Aᵀ U - V S)."""
    j = X.shape[1]
    return (X - Y[:, :j] * s[:j]).double().norm(dim=0)


def _estimate(r: SVD, res: torch.Tensor, k: int, shape: tuple[int, int], dtype: torch.dtype) -> tuple[float, float]:
    """(bound on ||sin Θ||_F, relative gap) of the top-k triplets ``r``, from the residual norms
    ``res`` of its first triplets (at least k + 1 where there are; ``residuals``)."""
    s = r.S.double()
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 0.0, math.inf  # a zero matrix: every reconstruction is exactly zero
    k_eff = min(k, numerical_rank(s, shape, dtype))
    j = res.numel()
    if k_eff >= s.numel() or k_eff >= min(shape):
        return float(res[:k_eff].norm() / s[k_eff - 1]), math.inf
    nxt = float(s[k_eff]) + (float(res[k_eff]) if k_eff < j else 0.0)
    delta = float(s[k_eff - 1]) - nxt
    rel_gap = float(s[k_eff - 1] - s[k_eff]) / float(s[0])
    if delta <= 0:
        return 1.0, rel_gap
    return min(1.0, float(res[:k_eff].norm()) / delta), rel_gap


def _result(r: SVD, k: int, err: float, gap: float, method: str, dtype: torch.dtype) -> tuple[SVD, Accuracy]:
    svd = SVD(r.U[:, :k].to(dtype), r.S[:k].to(dtype), r.V[:, :k].to(dtype))
    return svd, Accuracy(err, gap, gap >= GAP_TOL, method)


def _cheap_pass(A: torch.Tensor, k: int, p: int, n_iter: int, seed: int,
                good: Callable[[SVD, torch.Tensor], bool] | None = None) -> tuple[torch.Tensor, SVD, torch.Tensor]:
    """Randomized range finder with power iterations: (left basis Q, Ritz triplets, their residuals).

    The products alternate, Aᵀ Q then A Z, each on the orthonormal basis the last one
    produced. After each, Rayleigh-Ritz on that basis gives triplets whose own side's
    residual is zero, and the next product is exactly what their other residual needs
    (A V for triplets with V = Z, Aᵀ U for U = Q). So the bound is checked after
    every product at no extra cost: the triplets of polynomial degree d (Ω, AᵀAΩ,
    A(AᵀA)Ω, ... ) are checked with the (d + 2)-th product, ``good(ritz, res)`` decides,
    and a clear gap stops after 4 or 5 products of the 2 n_iter + 2 at most."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(A.shape[1], p, generator=gen, dtype=A.dtype).to(A.device)
    Q, _ = torch.linalg.qr(times(A, omega))
    basis, left = Q, True  # left: the basis spans columns of A (product Aᵀ Q next)
    r = res = None
    for step in range(2 * n_iter + 1):
        P = times_t(A, basis) if left else times(A, basis)
        if r is not None:  # the residual the previous triplets lacked: Aᵀ U - V S, or A V - U S
            res = residuals(P[:, : k + 1], r.V if left else r.U, r.S)
            if step == 2 * n_iter or (good is not None and good(r, res)):
                return Q, r, res
        X, S, Wh = torch.linalg.svd(P, full_matrices=False)  # P = X S Wᵀ, X the next basis
        if left:  # Qᵀ A = W S Xᵀ: U = Q W, V = X (A V comes with the next product)
            r, Q = SVD(basis @ Wh.T, S, X), basis
        else:  # A Z = X S Wᵀ: U = X, V = Z W (Aᵀ U comes with the next product)
            r, Q = SVD(X, S, basis @ Wh.T), X
        basis, left = X, not left
    raise AssertionError("unreachable: the last step returns")


def _krylov(A: torch.Tensor, Q0: torch.Tensor, k: int, tol: float, max_blocks: int, in_dtype: torch.dtype):
    """Block Krylov continuation from the orthonormal block Q0; returns (Ritz, err, gap) or None."""
    blocks, Ms = [Q0], []
    shape = tuple(A.shape)
    for _ in range(max_blocks):
        Ms.append(times_t(A, blocks[-1]))  # Kᵀ A, one block row at a time
        K = torch.cat(blocks, 1)
        r = _ritz(A, K, torch.cat(Ms, 1).T)
        j = min(k + 1, r.S.numel())
        prod = times(A, torch.cat([r.V[:, :j], Ms[-1]], 1))  # residual check and the next block in one pass
        W = prod[:, j:]
        err, gap = _estimate(r, residuals(prod[:, :j], r.U, r.S), k, shape, in_dtype)
        if err <= tol or gap < GAP_TOL:
            return r, err, gap
        for _ in range(2):  # classical Gram-Schmidt, twice, against the whole basis
            W = W - K @ (K.T @ W)
        norms = W.norm(dim=0)
        W = W[:, norms > 1e-10 * float(norms.max().clamp_min(1e-300))]
        if W.shape[1] == 0 or K.shape[1] + W.shape[1] > min(shape):
            return r, err, gap  # the basis spans an invariant subspace (or all of A): Ritz is final
        Qn, _ = torch.linalg.qr(W)
        blocks.append(Qn)
    return None


def krylov_blocks_needed(s: torch.Tensor, k: int, err: float, tol: float) -> float:
    """Blocks for the Krylov continuation to take the bound from ``err`` to ``tol``, from the cheap
    pass's Ritz values: each block gains about exp(2 sqrt(g)), g = s_k² / s_p² - 1 with s_p the
    block's last value (Chebyshev). On a flat spectrum (a noise-like update) that is slower than
    the exact decomposition, which is then used directly."""
    s = s.double()
    if s.numel() <= k or float(s[-1]) <= 0:
        return 0.0
    g = float(s[k - 1] ** 2 / s[-1] ** 2) - 1.0
    if g <= 0:
        return math.inf
    return math.log(max(err, tol) / tol) / (2.0 * math.sqrt(g))


def guarded_top_k(A: torch.Tensor, k: int, *, seed: int = 0, oversample: int = 10, n_iter: int = 4,
                  tol: float = TOL, max_blocks: int = MAX_BLOCKS, exact: bool = True,
                  noise: float | Callable[[], float] = 0.0) -> tuple[SVD, Accuracy]:
    """Top-k triplets of A with ``Accuracy.subspace_error <= tol`` unless the subspace is not identifiable.

    ``exact=False`` (the edits' default) changes what follows a cheap pass that missed ``tol``: where the
    data cannot fix the top-k subspace to ``tol`` (``noise``: the spectral size of the decomposed matrix's
    storage rounding, or a function giving it; ``rankedit.core.near_optimal.determined``) and the rank-k
    part is certified within ``EPS_MAX`` of the optimal residual, that near-optimal part; else Krylov, then
    the exact decomposition of the top k + 1 pairs only (``near_optimal.top_triplets``). ``exact=True``
    is the guard as it always was, bit for bit."""
    m, n = A.shape
    if not 1 <= k <= min(m, n):
        raise ValueError(f"k={k} is outside 1..{min(m, n)} for a matrix of shape {(m, n)}")
    if n_iter < 1:
        raise ValueError(f"n_iter={n_iter}: the guard needs at least one power iteration")
    in_dtype = A.dtype
    p = min(k + oversample, min(m, n))
    facts: dict = {}  # the default's storage noise and ||A||_F², each computed once if asked for

    def good(r: SVD, res: torch.Tensor) -> bool:
        if _estimate(r, res, k, (m, n), in_dtype)[0] <= tol:
            return True
        if exact:
            return False
        # the default stops early where the certified near-optimal answer is the likely outcome anyway
        if "noise" not in facts:
            facts["noise"] = noise() if callable(noise) else noise
            facts["a2"] = norm64(A) ** 2 if facts["noise"] > 0 else None
        return near_optimal.likely(r.S, facts["a2"], facts["noise"], k, tol) if facts["a2"] else False

    Q, r, res = _cheap_pass(A, k, p, n_iter, seed, good=good)
    err, gap = _estimate(r, res, k, (m, n), in_dtype)
    if err <= tol:
        return _result(r, k, err, gap, "randomized", in_dtype)
    if not exact:
        return _contract(A, Q, r, k, err, gap, seed, tol, max_blocks, facts.get("noise", noise), facts.get("a2"))
    a64 = A.double()
    if gap >= GAP_TOL and krylov_blocks_needed(r.S, k, err, tol) <= max_blocks:
        out = _krylov(a64, Q.double(), k, tol, max_blocks, in_dtype)
        if out is not None and out[1] <= tol:
            r, err, gap = out
            return _result(r, k, err, gap, "krylov", in_dtype)
    s, ex = gram_triplets(a64, min(k + 1, min(m, n)))
    ex = SVD(ex.U, s, ex.V)  # every singular value: the exact s_{k+1} for the gap
    res = torch.hypot(residuals(times(a64, ex.V), ex.U, s), residuals(times_t(a64, ex.U), ex.V, s))
    err, gap = _estimate(ex, res, k, (m, n), in_dtype)
    return _result(ex, k, err, gap, "exact", in_dtype)


def _contract(A: torch.Tensor, Q: torch.Tensor, r: SVD, k: int, err: float, gap: float, seed: int, tol: float,
              max_blocks: int, noise: float | Callable[[], float], a2: float | None = None) -> tuple[SVD, Accuracy]:
    """``guarded_top_k(exact=False)`` after a cheap pass whose bound ``err`` missed ``tol`` (``a2``: ||A||_F²
    if the pass computed it)."""
    m, n = A.shape
    in_dtype = A.dtype
    a64 = None
    delta = noise() if callable(noise) else noise
    if delta > 0 and Q.shape[1] > k:
        cert = near_optimal.certify(A, Q, k, seed, a2)
        a64 = cert.a64
        if cert.eps <= near_optimal.EPS_MAX and not near_optimal.determined(delta, cert.values, cert.beta, k, tol):
            svd = cert.svd
            out = SVD(svd.U.to(in_dtype), svd.S.to(in_dtype), svd.V.to(in_dtype))
            return out, Accuracy(min(1.0, err), gap, False, "near-optimal", cert.eps)
    a64 = A.double() if a64 is None else a64
    if gap >= GAP_TOL and krylov_blocks_needed(r.S, k, err, tol) <= max_blocks:
        out = _krylov(a64, Q.double(), k, tol, max_blocks, in_dtype)
        if out is not None and out[1] <= tol:
            r, err, gap = out
            return _result(r, k, err, gap, "krylov", in_dtype)
    # a gap the cheap pass already found below GAP_TOL cannot meet the bound from a float32 Gram
    return exact_top_k(A, k, tol, a64, try_float32=gap >= GAP_TOL)


def exact_top_k(A: torch.Tensor, k: int, tol: float = TOL, a64: torch.Tensor | None = None,
                try_float32: bool = True) -> tuple[SVD, Accuracy]:
    """The exact top-k triplets from the top k + 1 Gram eigenpairs (subset solver), with the guard's
    a posteriori bound: the Gram product in float32 where that bound then meets ``tol`` (tried unless
    ``try_float32`` is false), else float64."""
    m, n = A.shape
    j = min(k + 1, min(m, n))
    for float32_gram in (try_float32 and A.dtype != torch.float64, False):
        s, ex, a64 = near_optimal.top_triplets(A, j, float32_gram, a64)
        res = torch.hypot(residuals(times(a64, ex.V), ex.U, s), residuals(times_t(a64, ex.U), ex.V, s))
        err, gap = _estimate(ex, res, k, (m, n), A.dtype)
        if err <= tol or not float32_gram:
            return _result(ex, k, err, gap, "exact", A.dtype)
    raise AssertionError("unreachable: the float64 pass returns")
