"""Singular value decompositions sized to what a caller needs.

``top_k_svd`` gives the top-k singular triplets: exact (LAPACK) for small
matrices or large k, a seeded randomized SVD (Halko, Martinsson & Tropp 2011,
with power iterations) otherwise, so a 4864 x 896 projection costs a few
matrix products instead of a full decomposition. Results are deterministic for
a given seed. ``gram_svd`` gives the full spectrum (and, if asked, the top-k
triplets) from the float64 eigendecomposition of the Gram matrix on the short
side: 3-5x faster than LAPACK's SVD of the float32 matrix on the CPU, and its
errors (about sqrt(eps64) * s_max ~ 1e-8 s_max) sit far below the float32 rank
tolerance (s_max * max(m, n) * 1.2e-7) that the measurements use.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Below this size the exact SVD is cheap and avoids any approximation.
EXACT_MAX_DIM = 1024


class SVD(NamedTuple):
    U: torch.Tensor  # (m, k)
    S: torch.Tensor  # (k,)
    V: torch.Tensor  # (n, k)  (columns are right singular vectors)


def times(A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """A @ X for a thin X (a block of columns), computed as (Xᵀ Aᵀ)ᵀ. For a row-major A BLAS's
    kernel for a thin right factor is 2-3x slower (7.6 ms against 2.8 ms for a 4864 x 896 A
    and 11 columns, one thread), and the result comes back column-major, as QR and SVD want it."""
    return (X.T @ A.T).T


def times_t(A: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Aᵀ @ Q as (Qᵀ A)ᵀ: ``A.T @ Q`` with a column-major Q (straight from QR) takes BLAS's
    slow path (67 ms against 2.6 ms for a 4864 x 896 A and 11 columns, one thread)."""
    return (Q.T @ A).T


# Entries per float64 block of ``norm64`` and ``bilinear64``: 512 KB of float64, kept in cache.
BLOCK = 1 << 16


def low_rank_product(B: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """B @ A for factors B (m, k) and A (k, n). At k = 1 the broadcast product B * A: each entry is one
    product, so the same bits as the GEMM, which gains nothing from BLAS there and took 5x as long
    (6.3 against 1.3 ms on 1536 x 4224, one thread)."""
    return B * A if B.shape[1] == 1 else B @ A


def norm64(x: torch.Tensor) -> float:
    """‖x‖_F with float64 products and sums, block by block.

    Why blocks: ``vector_norm(x, dtype=float64)`` makes a float64 copy of the whole
    matrix first, a fresh 34 MB allocation for a 4864 x 896 one that is paged in
    anew each time: 19 ms against 2 ms here (one thread). A float32 sum is no
    substitute: on a 13.7M-entry matrix it was off by 5e-4, an error of the edit itself.
    """
    flat = x.reshape(-1)
    if flat.dtype == torch.float64:
        return float(torch.linalg.vector_norm(flat))
    total = 0.0
    for block in flat.split(BLOCK):
        d = block.double()
        total += float(torch.dot(d, d))
    return total ** 0.5


def bilinear64(u: torch.Tensor, A: torch.Tensor, v: torch.Tensor) -> float:
    """uᵀ A v in float64, a block of rows at a time (no float64 copy of A: see ``norm64``)."""
    u64, v64 = u.double(), v.double()
    rows = max(1, BLOCK // max(1, A.shape[1]))
    return sum(float(u64[i:i + rows] @ (A[i:i + rows].double() @ v64)) for i in range(0, A.shape[0], rows))


def randomized_svd(A: torch.Tensor, k: int, oversample: int | None = None, n_iter: int = 10, seed: int = 0) -> SVD:
    """Top-k SVD of A by randomized range finding with QR-stabilised power iterations.

    The default oversampling (2k, at least 10) and 10 power iterations recover the
    top singular values to ~1e-6 relative and their subspace to ~1e-3 degrees on
    spectra that decay as slowly as trained weights do (see tests/test_geometry.py).
    """
    m, n = A.shape
    oversample = max(2 * k, 10) if oversample is None else oversample
    p = min(k + oversample, min(m, n))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(n, p, generator=gen, dtype=A.dtype).to(A.device)
    Q, _ = torch.linalg.qr(times(A, omega))
    for _ in range(n_iter):
        Z, _ = torch.linalg.qr(times_t(A, Q))
        Q, _ = torch.linalg.qr(times(A, Z))
    B = Q.T @ A  # (p, n)
    Ub, S, Vh = torch.linalg.svd(B, full_matrices=False)
    U = Q @ Ub
    return SVD(U[:, :k], S[:k], Vh[:k].T)


def exact_svd(A: torch.Tensor, k: int | None = None) -> SVD:
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    k = S.numel() if k is None else k
    return SVD(U[:, :k], S[:k], Vh[:k].T)


def top_k_svd(A: torch.Tensor, k: int, method: str = "auto", seed: int = 0) -> SVD:
    """Top-k singular triplets of a 2-D tensor.

    method: ``exact`` | ``randomized`` | ``auto`` (exact when the matrix is small
    or k is a sizeable fraction of its rank, randomized otherwise).
    """
    if A.ndim != 2:
        raise ValueError(f"top_k_svd needs a 2-D tensor, got shape {tuple(A.shape)}")
    r = min(A.shape)
    if not 1 <= k <= r:
        raise ValueError(f"k={k} is outside 1..{r} for a matrix of shape {tuple(A.shape)}")
    if method == "auto":
        method = "exact" if r <= EXACT_MAX_DIM or k > r // 8 else "randomized"
    if method == "exact":
        return exact_svd(A, k)
    if method == "randomized":
        return randomized_svd(A, k, seed=seed)
    raise ValueError(f"unknown SVD method {method!r}")


def numerical_rank(s: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> int:
    """Rank from singular values with torch.linalg.matrix_rank's default tolerance.

    ``matrix_rank`` with neither atol nor rtol counts s_i > s_max * max(m, n) * eps,
    eps of the dtype the matrix was decomposed in.
    """
    if s.numel() == 0 or float(s.max()) == 0.0:
        return 0
    tol = float(s.max()) * max(shape) * torch.finfo(dtype).eps
    return int((s > tol).sum())


def gram_triplets(A: torch.Tensor, k: int = 0) -> tuple[torch.Tensor, SVD | None]:
    """``gram_svd`` in float64 throughout: values and (for k >= 1) triplets stay float64."""
    if A.ndim != 2:
        raise ValueError(f"gram_svd needs a 2-D tensor, got shape {tuple(A.shape)}")
    m, n = A.shape
    if not 0 <= k <= min(m, n):
        raise ValueError(f"k={k} is outside 0..{min(m, n)} for a matrix of shape {tuple(A.shape)}")
    a, gram = gram64(A)
    if k == 0:
        lam = torch.linalg.eigvalsh(gram).flip(0)
        return lam.clamp_min(0).sqrt(), None
    s, vecs = gram_eigh(gram)
    return s, triplets_from_eigh(a, s, vecs, k)


def gram64(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A in float64, its short side's Gram matrix: A Aᵀ for a wide A, Aᵀ A for a tall one)."""
    a = A.double()
    return a, (a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a)


def gram_eigh(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(singular values, short-side singular vectors), both descending, from a float64 Gram matrix."""
    lam, vecs = torch.linalg.eigh(gram)
    return lam.flip(0).clamp_min(0).sqrt(), vecs.flip(1)


def triplets_from_eigh(a: torch.Tensor, s: torch.Tensor, vecs: torch.Tensor, k: int) -> SVD:
    """The top-k triplets of float64 ``a`` from its Gram eigenpairs (``gram_eigh`` of the short side's
    Gram, A Aᵀ for a wide A): the other side's vectors are A-products divided by s (zero where s = 0)."""
    wide = a.shape[0] <= a.shape[1]
    q = vecs[:, :k]
    sk = s[:k]
    other = (a.T @ q if wide else a @ q) / torch.where(sk > 0, sk, torch.ones_like(sk))
    other = torch.where(sk > 0, other, torch.zeros_like(other))
    U, V = (q, other) if wide else (other, q)
    return SVD(U, sk, V)


def gram_svd(A: torch.Tensor, k: int = 0) -> tuple[torch.Tensor, SVD | None]:
    """All singular values of A (descending, float64) and, for k >= 1, its top-k triplets.

    Eigendecomposition of the float64 Gram matrix of the short side (A Aᵀ for a
    wide A, Aᵀ A for a tall one); the other side's vectors are A-products of
    the eigenvectors divided by the singular values (zero where s = 0).
    Triplets come back in A's dtype.
    """
    s, svd = gram_triplets(A, k)
    if svd is None:
        return s, None
    return s, SVD(svd.U.to(A.dtype), svd.S.to(A.dtype), svd.V.to(A.dtype))
