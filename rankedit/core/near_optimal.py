"""What the guarded SVD does when its cheap pass is not enough: a certified near-optimal answer where the
data cannot determine the top-k directions, and a faster exact decomposition where it can.

**Near-optimal, with a certificate.** For an orthonormal basis Q (m x p) of the cheap pass (re-orthonormalized
in float64) and the Ritz triplets of B = Qᵀ A, the rank-k part E = U_k S_k V_kᵀ with U_k = Q W_k is P_k A
(P_k the projection on U_k), so

    ||A - E||_F² = ||A||_F² - Σ_{i<=k} s̃_i²                                   (exact identity)

while the best rank-k residual is ||A||_F² - Σ_{i<=k} σ_i². With P = Q Qᵀ, AᵀA = AᵀPA + Aᵀ(I - P)A, two
positive semidefinite terms, and Ky Fan's inequality gives

    Σ_{i<=k} σ_i² <= Σ_{i<=k} s̃_i² + Σ_{i<=k} σ_i((I - P)A)² <= Σ_{i<=k} s̃_i² + k β²,

β any upper bound on ||(I - P)A||_2. Hence (1 + ε) = ||A - E||_F / sqrt(||A - E||_F² - k β²) bounds the
ratio to the optimal residual. β comes from a power method on G = (I - P)AAᵀ(I - P) started from an
m x r Gaussian block Ω drawn independently of Q: ||G^q Ω||_2 >= λ_1^q ||e_1ᵀ Ω||, and ||e_1ᵀ Ω||² is a
χ² variable with r degrees of freedom, below t² with probability ``FAIL_PROB``; so β² = λ_1 <=
(||G^q Ω||_2 / t)^(1/q) except with that probability over the seeded draw (Dixon 1983, Halko, Martinsson
and Tropp 2011 §4.3, with the block's χ² in place of a single vector's Gaussian). That event is one for
every q, so the bounds of all the steps hold together and the certificate keeps the smallest; it stops
after the second step where that already certifies ε <= EPS_MAX / 2 (on issue #32's 1536 x 4224 MLP
updates, ε 0.0036 at k = 1: two float64 products of the six saved), else takes the third. Everything after the
cheap pass is in float64; the numerator carries the rounding of the float32 factors (3 u Σ s̃_i) and both
sides a relative margin for float64 sums.

**When the data decides.** A rank-k edit's directions are only worth computing to ``TOL`` when the data
fixes them that well. The stored tuned matrix was rounded to its storage format; a perturbation of
spectral norm δ can turn the top-k subspace by up to about δ / (σ_k - σ_{k+1}) (Wedin). With δ the
storage noise (``rankedit.core.svd.storage_noise``) the data determines the subspace to ``TOL`` only if
δ <= TOL (σ_k - σ_{k+1}); ``gap_upper`` is an upper bound on that gap from what was computed
(σ_k² <= s̃_k² + β² by Weyl, σ_{k+1} >= s̃_{k+1} by interlacing), so "not determined" is never claimed
for a gap that could be wider.

**The exact decomposition, top-k only.** Where exactness is required, the top k + 1 eigenpairs of the
short side's Gram matrix come from LAPACK's subset solver (``dsyevr``: tridiagonal reduction, then only
the wanted pairs), not the full eigendecomposition; the Gram product is float32 first and kept when the
a posteriori bound (Wedin, residuals in float64) meets the tolerance, float64 otherwise.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from rankedit.core.kept import kept
from rankedit.core.linalg import SVD, norm64, times, times_t, triplets_from_eigh
from threadpoolctl import threadpool_limits

FAIL_PROB = 1e-9  # probability over the seeded Gaussian block that the bound on β fails, per matrix
CERT_COLS = 16  # columns of that block: the χ² with 16 degrees of freedom is below 0.58 with FAIL_PROB
CERT_STEPS = 3  # power steps on (I - P) A Aᵀ (I - P), at most: 6 float64 products with A
CERT_EARLY = 2  # steps after which a certificate of ε <= EPS_MAX / 2 is kept without the last
EPS_MAX = 0.01  # a near-optimal answer is used only when certified within 1% of the optimal residual
CERT_SEED = 0x5EED  # offset of the certificate's generator from the cheap pass's seed (an independent draw)
MARGIN = 1e-9  # relative slack on float64 sums of squares
PREDICT_BETA = 2.0  # ``likely``'s β over the (k+1)-th Ritz value: the certificate's overestimate, and more


def chi2_even_cdf(x: float, r: int) -> float:
    """P(χ²_r <= x) for an even r: the Poisson tail Σ_{j >= r/2} e^{-x/2} (x/2)^j / j!, summed upwards."""
    h = x / 2.0
    term = math.exp(-h + (r // 2) * math.log(h) - math.lgamma(r // 2 + 1)) if h > 0 else 0.0
    total, j = 0.0, r // 2
    while term > 1e-300 and (total == 0.0 or term > 1e-18 * total):
        total += term
        j += 1
        term *= h / j
    return min(1.0, total)


def chi2_even_quantile(p: float, r: int) -> float:
    """The x with P(χ²_r <= x) = p (bisection, r even)."""
    lo, hi = 0.0, float(r)
    while chi2_even_cdf(hi, r) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_even_cdf(mid, r) < p else (lo, mid)
    return lo


_T = math.sqrt(chi2_even_quantile(FAIL_PROB, CERT_COLS))


@dataclass(frozen=True)
class Certificate:
    svd: SVD  # float64 top-k triplets of A from the Ritz values of the whole block
    values: torch.Tensor  # every Ritz value s̃ (float64, descending): lower bounds on σ_i
    beta: float  # upper bound on ||(I - P) A||_2 (with probability 1 - FAIL_PROB)
    eps: float  # ||A - E||_F <= (1 + eps) * optimal rank-k residual (inf: no certificate)
    a64: torch.Tensor  # A in float64, for a caller that goes on to an exact decomposition


def float64_copy(A: torch.Tensor) -> torch.Tensor:
    """A in float64, in a buffer this thread keeps (``rankedit.core.kept``: a fresh 52 MB allocation per
    1536 x 4224 matrix cost 150 ms against 17 ms). Valid until this thread's next call."""
    if A.dtype == torch.float64:
        return A
    return kept("float64 copy", A, torch.float64).copy_(A)


def start_block(q: torch.Tensor, seed: int, cols: int = CERT_COLS) -> torch.Tensor:
    """The power method's Gaussian start Ω (m x cols, drawn independently of the cheap pass), deflated:
    (I - Q Qᵀ) Ω."""
    gen = torch.Generator(device="cpu").manual_seed(seed + CERT_SEED)
    x = torch.randn(q.shape[0], cols, generator=gen, dtype=torch.float64).to(q.device)
    return x - q @ (q.T @ x)


def deflated_norm_bounds(a64: torch.Tensor, q: torch.Tensor, seed: int, cols: int = CERT_COLS,
                         steps: int = CERT_STEPS, first: torch.Tensor | None = None) -> Iterator[float]:
    """After each power step q = 1..steps, a β_q >= ||(I - Q Qᵀ) A||_2; all of them hold except with
    probability ``FAIL_PROB`` together (for ``cols`` = CERT_COLS; see the module). ``first``:
    Aᵀ (I - Q Qᵀ) Ω (``start_block``), where the caller had it from a product it made anyway."""
    x = start_block(q, seed, cols)
    t = _T if cols == CERT_COLS else math.sqrt(chi2_even_quantile(FAIL_PROB, cols))
    log_scale = 0.0
    for step in range(steps):  # x <- G x, G = (I - P) A Aᵀ (I - P), normalised, the scales kept in log_scale
        if step > 0:
            x = x - q @ (q.T @ x)
        x = times(a64, first if step == 0 and first is not None else times_t(a64, x))
        x = x - q @ (q.T @ x)
        c = float(x.norm())
        if c == 0.0:
            yield 0.0  # (I - P) A is zero: the block spans A's range
            return
        x = x / c
        log_scale += math.log(c)
        top = float(torch.linalg.matrix_norm(x, ord=2))
        lam = math.exp((log_scale + math.log(top) - math.log(t)) / (step + 1))
        yield math.sqrt(lam) * (1.0 + 1e-8)  # float64 rounding of the steps, generously


def deflated_norm_bound(a64: torch.Tensor, q: torch.Tensor, seed: int, cols: int = CERT_COLS,
                        steps: int = CERT_STEPS) -> float:
    """The smallest of ``deflated_norm_bounds``: β >= ||(I - Q Qᵀ) A||_2 except with probability ``FAIL_PROB``."""
    return min(deflated_norm_bounds(a64, q, seed, cols, steps))


def certify(A: torch.Tensor, Q: torch.Tensor, k: int, seed: int, a2: float | None = None) -> Certificate:
    """The near-optimal rank-k part of A on the basis Q (m x p, p > k where possible) and its ε (``a2``:
    ||A||_F² in float64, if at hand)."""
    a64 = float64_copy(A)
    qh, _ = torch.linalg.qr(Q.double())
    p = qh.shape[1]
    # Qᵀ A and the power method's first product in one pass over A: Aᵀ [Q, (I - P) Ω]
    both = times_t(a64, torch.cat([qh, start_block(qh, seed)], 1))
    B = both[:, :p].T  # Qᵀ A, p x n
    Ub, S, Vh = torch.linalg.svd(B, full_matrices=False)
    svd = SVD(qh @ Ub[:, :k], S[:k], Vh[:k].T)
    a2 = norm64(A) ** 2 if a2 is None else a2
    top2 = float((S[:k] ** 2).sum())
    u = torch.finfo(A.dtype).eps / 2
    resid2 = max(a2 - top2, 0.0) + MARGIN * a2
    num = math.sqrt(resid2) + 3 * u * float(S[:k].sum())  # the factors are rounded to A's dtype

    def eps_of(beta: float) -> float:
        low2 = a2 - top2 - k * beta ** 2 - MARGIN * a2
        return max(num / math.sqrt(low2) - 1.0, 0.0) if low2 > 0 else math.inf

    beta = math.inf
    for step, b in enumerate(deflated_norm_bounds(a64, qh, seed, first=both[:, p:]), 1):
        beta = min(beta, b)
        if step >= CERT_EARLY and eps_of(beta) <= EPS_MAX / 2:
            break
    return Certificate(svd, S, beta, eps_of(beta), a64)


def likely(values: torch.Tensor, a2: float, noise: float, k: int, tol: float) -> bool:
    """Whether the cheap pass may stop at these Ritz values (descending, more than k; ``a2`` = ||A||_F²):
    the certificate would very likely pass, and the data cannot fix the top-k subspace even with a
    generous gap. A prediction only: ``certify`` decides, and a miss costs the Krylov or exact path
    from the basis at hand. On a flat spectrum (a noise-like update) the certified ε hardly depends
    on how far the power iterations went (ε 0.0020-0.0030 after 1 or 4 of them on issue #32's pair),
    so stopping at the first check saves the products that could not improve it.

    β is predicted as ``PREDICT_BETA`` times the (k+1)-th Ritz value: the certificate's own β, from
    three power steps on a flat spectrum, overestimates σ_{k+1} by a factor up to
    (||Ω||_2 / t)^(1/6) ≈ 2 (the module's bound), and ε ≈ k β² / (2 ||A - E||_F²)."""
    if values.numel() <= k or noise <= 0:
        return False
    resid2 = a2 - float((values[:k].double() ** 2).sum())
    if resid2 <= 0:
        return False
    beta = PREDICT_BETA * float(values[k])
    return k * beta ** 2 / (2 * resid2) <= EPS_MAX / 2 and not determined(noise, values, beta, k, tol)


def gap_upper(values: torch.Tensor, beta: float, k: int) -> float:
    """An upper bound on σ_k - σ_{k+1} from the Ritz values and β: sqrt(s̃_k² + β²) - s̃_{k+1}."""
    nxt = float(values[k]) if values.numel() > k else 0.0
    return math.sqrt(float(values[k - 1]) ** 2 + beta ** 2) - nxt


def determined(noise: float, values: torch.Tensor, beta: float, k: int, tol: float) -> bool:
    """Whether the data may fix the top-k subspace to ``tol``: storage noise <= tol * (largest possible gap)."""
    return noise <= tol * gap_upper(values, beta, k)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """SciPy's own BLAS (a separate OpenBLAS, whose threads spin as OpenMP's do) at n threads while any
    thread is inside; the last one out restores it (two background workers may overlap)."""
    global _blas_users, _blas_limit

    with _blas_lock:
        if _blas_users == 0:
            _blas_limit = threadpool_limits(limits=n, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


def top_eigh(gram: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-j singular values, their short-side vectors), descending, from a Gram matrix, by LAPACK's
    subset eigensolver in float64."""
    import scipy.linalg

    r = gram.shape[0]
    g = gram.double().cpu().numpy()
    with blas_threads(torch.get_num_threads()):
        lam, vecs = scipy.linalg.eigh(g, subset_by_index=[r - j, r - 1], driver="evr", overwrite_a=True,
                                      check_finite=False)
    lam = torch.from_numpy(lam.copy()).flip(0).to(gram.device)
    vecs = torch.from_numpy(vecs.copy()).flip(1).to(gram.device)
    return lam.clamp_min(0).sqrt(), vecs


def top_triplets(A: torch.Tensor, j: int, float32_gram: bool,
                 a64: torch.Tensor | None = None) -> tuple[torch.Tensor, SVD, torch.Tensor]:
    """(top-j values, float64 top-j triplets, A in float64) from the short side's Gram matrix, formed in
    float32 (``float32_gram``) or float64, and the subset eigensolver (``a64``: A in float64, if at hand)."""
    wide = A.shape[0] <= A.shape[1]
    a64 = A.double() if a64 is None else a64
    if float32_gram:
        a32 = A.float()
        gram = a32 @ a32.T if wide else a32.T @ a32
    else:
        gram = a64 @ a64.T if wide else a64.T @ a64
    s, vecs = top_eigh(gram, j)
    return s, triplets_from_eigh(a64, s, vecs, j), a64
