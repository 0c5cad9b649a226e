"""The measurements of docs/science.md as pure functions of tensors.

Every function takes tensors and returns numbers (or small tensors); nothing
here reads files, picks a device or logs. Conventions:

- ``w0``, ``w1``: the base and tuned matrix in nn.Linear's (out, in) layout.
- The update ``dW = w1 - w0`` is formed in float32: for bf16/fp16/fp32 inputs
  the subtraction of two nearby numbers is exact or nearly so.
- Undefined values (e.g. rank-1 energy of a zero update) are ``nan``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from rankedit.core.threads import torch_threads
from rankedit.core.linalg import SVD, gram_eigh, gram_svd, numerical_rank, triplets_from_eigh
from rankedit.core.propensity_basis import propensity_share  # noqa: F401  (the metric's reference; the edits share its math)
from rankedit.core.masks import (  # noqa: F401  (Cut, kth_smallest and the mask functions: this module's API too)
    Cut, bf16_unchanged, bf16_update_mask, count, cut_mask, fraction, kth_smallest, low_cut, low_mask, principal_mask,
    principal_parts, principal_scores, top_fraction_cut, top_fraction_mask,
)

DEFAULT_K = 16
DEFAULT_ALPHA = 0.5
DEFAULT_ATOL = 1e-5
DEFAULT_Q = 0.1

NAN = float("nan")


# ---- sparsity ----------------------------------------------------------------------------

def sparsity_bf16(w0: torch.Tensor, w1: torch.Tensor) -> float:
    """Fraction of entries unchanged in bf16 (bitwise equal after casting both)."""
    return fraction(bf16_unchanged(w0, w1))


def sparsity_atol(w0: torch.Tensor, w1: torch.Tensor, atol: float = DEFAULT_ATOL) -> float:
    """Fraction of entries with |w1 - w0| <= atol (scale-blind; the subnetwork paper's rule)."""
    return fraction((w1.float() - w0.float()).abs() <= atol)


# ---- spectra of the update ------------------------------------------------------------------

def rank_from_singular_values(s: torch.Tensor, shape: tuple[int, int]) -> tuple[int, float]:
    """(numerical rank, rank / min(m, n)) with torch.linalg.matrix_rank's default tolerance (float32)."""
    r = numerical_rank(s, shape, torch.float32)
    return r, r / min(shape)


def effective_rank(s: torch.Tensor) -> float:
    """exp of the Shannon entropy of p_i = s_i / sum(s)."""
    s = s.double()
    total = float(s.sum())
    if total == 0.0:
        return NAN
    p = s / total
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def stable_rank(s: torch.Tensor) -> float:
    """||A||_F^2 / ||A||_2^2."""
    s = s.double()
    if float(s.max()) == 0.0:
        return NAN
    return float((s**2).sum() / s.max() ** 2)


def rank1_energy(s: torch.Tensor) -> float:
    """s_1^2 / sum(s_i^2): the share of the update's energy in its top direction."""
    s = s.double()
    e = float((s**2).sum())
    return NAN if e == 0.0 else float(s.max() ** 2 / e)


GAUSSIAN_DRAWS = 8  # seeded draws of gaussian_rank1_energy
GAUSSIAN_EXACT_MAX = 128  # min(m, n) up to this: drawn; above, the Marchenko-Pastur edge


def gaussian_rank1_energy(shape: tuple[int, int], draws: int = GAUSSIAN_DRAWS, seed: int = 0) -> float:
    """The rank-1 energy of a random update of this shape: the mean over ``draws`` seeded m x n matrices G of
    independent N(0, 1) entries of s_1(G)² / ‖G‖²_F (from the eigenvalues of the short side's Gram matrix,
    on one thread: the multi-threaded SVD spins on a shared machine). Above GAUSSIAN_EXACT_MAX on the short
    side, the large-matrix limit (√m + √n)² / (m n): the Marchenko-Pastur edge over E‖G‖²_F = m n (above the
    drawn mean by 3% at 128 x 128 and 2% at 256 x 256 and 512 x 512; the gap shrinks as min(m, n)^(-2/3))."""
    m, n = sorted((int(shape[0]), int(shape[1])))
    if m > GAUSSIAN_EXACT_MAX:
        return (math.sqrt(m) + math.sqrt(n)) ** 2 / (m * n)
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch_threads(1):
        for _ in range(draws):
            x = torch.randn(m, n, generator=g, dtype=torch.float64)
            ev = torch.linalg.eigvalsh(x @ x.T)
            total += float(ev[-1] / ev.sum())
    return total / draws


# ---- principal subspaces of the weights ---------------------------------------------------

def default_k(shape: tuple[int, int], k: int = DEFAULT_K) -> int:
    """k capped at min(m, n) / 4 (and at least 1)."""
    return max(1, min(k, min(shape) // 4))


def principal_angles_deg(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Principal angles (degrees, largest first) between the column spans of orthonormal A and B.

    Follows scipy.linalg.subspace_angles: cosines from svd(AᵀB), but sines (from
    the part of B outside span(A)) for angles under 45 degrees, where arccos of a
    cosine near 1 would lose most of its digits.
    """
    A = A.double()
    B = B.double()
    if A.shape[1] < B.shape[1]:
        A, B = B, A
    cos = torch.linalg.svdvals(A.T @ B).clamp(-1.0, 1.0)  # descending
    theta = torch.arccos(cos.flip(0))  # ascending cos -> descending angle
    small = cos.flip(0) ** 2 >= 0.5
    if bool(small.any()):
        resid = B - A @ (A.T @ B)
        sin = torch.linalg.svdvals(resid).clamp(-1.0, 1.0)  # descending
        theta = torch.where(small, torch.arcsin(sin), theta)
    return torch.rad2deg(theta)


def spectral_shift(s0: torch.Tensor, s1: torch.Tensor) -> float:
    """||s(W1) - s(W0)||_2 / ||s(W0)||_2 over all singular values (both sorted descending)."""
    s0 = s0.double().sort(descending=True).values
    s1 = s1.double().sort(descending=True).values
    n0 = float(s0.norm())
    return NAN if n0 == 0.0 else float((s1 - s0).norm() / n0)


def spectral_gap(s: torch.Tensor, k: int) -> float:
    """(s_k - s_{k+1}) / s_k: small gaps make the top-k subspace (and its angle) ill-defined."""
    s = s.double().sort(descending=True).values
    if k >= s.numel() or float(s[k - 1]) == 0.0:
        return NAN
    return float((s[k - 1] - s[k]) / s[k - 1])




# ---- overlaps with principal / low-magnitude weights ---------------------------------------

def overlap(update_mask: torch.Tensor, region: torch.Tensor) -> float:
    """|region ∩ M| / |M|: the share of updated entries that fall in the region."""
    m = count(update_mask)
    return NAN if m == 0 else count(update_mask & region) / m






def rel_update_norm(w0: torch.Tensor, w1: torch.Tensor) -> float:
    """||dW||_F / ||W0||_F."""
    n0 = float(w0.double().norm())
    return NAN if n0 == 0.0 else float((w1.double() - w0.double()).norm() / n0)


# ---- two runs from one base ------------------------------------------------------------------

def jaccard(mask_a: torch.Tensor, mask_b: torch.Tensor) -> tuple[float, float]:
    """(|A ∩ B| / |A ∪ B|, the value expected for independent masks of the same densities)."""
    inter = count(mask_a & mask_b)
    union = count(mask_a | mask_b)
    pa, pb = fraction(mask_a), fraction(mask_b)
    denom = pa + pb - pa * pb
    expected = NAN if denom == 0.0 else pa * pb / denom
    return (NAN if union == 0 else inter / union), expected


# ---- everything for one matrix -----------------------------------------------------------------

class BaseParts(NamedTuple):
    """What the metrics need from W0 alone: the same for every run tuned from one base,
    so ``rankedit.core.base_decomp`` keeps it across analyses."""
    s: torch.Tensor  # every singular value of W0 (float64, descending)
    svd: SVD  # its top-k triplets (float32)
    norm: float  # ‖W0‖_F in float64
    principal: Cut  # M_p: top-alpha of |W0_k|
    low: Cut  # M_low: bottom-alpha of |W0|


def base_parts(w0: torch.Tensor, k: int = DEFAULT_K, alpha: float = DEFAULT_ALPHA,
               eig: tuple[torch.Tensor, torch.Tensor] | None = None) -> BaseParts:
    """W0's share of ``matrix_metrics``: one Gram eigendecomposition and two mask cuts
    (the principal one as the ``principal`` mask edit cuts it: ``rankedit.core.masks``).
    ``eig``: W0's ``gram_eigh`` when the caller has it (the same operations ``gram_svd`` makes,
    so the triplets, and the principal mask, are bit-equal to the edit's)."""
    f0 = w0.float()
    kk = default_k((int(w0.shape[0]), int(w0.shape[1])), k)
    if eig is None:
        decomposition = gram_svd(f0, kk)
    else:
        top = triplets_from_eigh(f0.double(), *eig, kk)
        decomposition = (eig[0], SVD(top.U.float(), top.S.float(), top.V.float()))
    s0, svd0, principal = principal_parts(decomposition, alpha)
    return BaseParts(s0, svd0, float(f0.double().norm()), principal, low_cut(f0, alpha))


def _short_side_grams(f0: torch.Tensor, f1: torch.Tensor, d: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Gram of W0, of dW, of W1, cross term G) of the short side, in float64, from three products.

    W1's Gram is a sum: (W0 + dW)ᵀ(W0 + dW) = W0ᵀW0 + G + Gᵀ + dWᵀdW with G = W0ᵀdW
    (for a wide matrix the same with transposes). G is what the propensity share
    needs, so that metric costs no product of its own. dW = W1 - W0 in float64,
    where the difference of two float32 numbers is exact (``d``: dW given exactly, in float64).
    """
    a0 = f0.double()
    d = f1.double() - a0 if d is None else d
    if f0.shape[0] <= f0.shape[1]:  # wide: the short side is the rows, as in gram_svd
        g0, gd, g = a0 @ a0.T, d @ d.T, a0 @ d.T
    else:
        g0, gd, g = a0.T @ a0, d.T @ d, a0.T @ d
    return g0, gd, g0 + g + g.T + gd, g


def _propensity_from_gram(s0: torch.Tensor, vecs0: torch.Tensor, g: torch.Tensor, dw_sq: float,
                          shape: tuple[int, int]) -> float:
    """``propensity_share`` from W0's Gram eigenpairs and the cross term G (see ``_short_side_grams``).

    With q_i W0's short-side singular vectors, c_i = u_iᵀ dW v_i = q_iᵀ G q_i / s_i on either
    side. Directions at or below the float32 rank tolerance are left out, as ``full_basis`` does.
    """
    if dw_sq == 0.0:
        return NAN
    keep = numerical_rank(s0, shape, torch.float32)
    q = vecs0[:, :keep]
    c = ((g @ q) * q).sum(dim=0) / s0[:keep]
    return float(c.pow(2).sum()) / dw_sq


def matrix_metrics(
    w0: torch.Tensor,
    w1: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    alpha: float = DEFAULT_ALPHA,
    atol: float = DEFAULT_ATOL,
    q: float = DEFAULT_Q,
    w_other: torch.Tensor | None = None,
    seed: int = 0,
    base: BaseParts | None = None,
    on_base: Callable[[BaseParts], None] | None = None,
    dw: torch.Tensor | None = None,
    on_update: Callable[[tuple[torch.Tensor, torch.Tensor]], None] | None = None,
    eig0: tuple[torch.Tensor, torch.Tensor] | None = None,
    on_eig0: Callable[[tuple[torch.Tensor, torch.Tensor]], None] | None = None,
) -> dict:
    """All per-matrix measurements of docs/science.md for one (out, in) matrix pair.

    Costs: three full spectra (of W0, W1 and dW, which rank, spectral shift,
    the energy ratios and the propensity share need), each one float64
    eigendecomposition of a short-side Gram matrix, from three m·n·min(m, n)
    products (``_short_side_grams``: W1's Gram is a sum, and its cross term gives
    the propensity share); the top-k triplets of W0 and W1 come from the same
    decompositions. ``base``: W0's parts (``base_parts(w0, k, alpha)``) computed
    earlier, which saves the mask cut-offs; W0's decomposition is made all the
    same, because the propensity share needs all of its vectors. ``on_base``:
    called with the parts when they were computed here (to cache them). ``seed``
    is kept for API stability (nothing here is random). ``dw``: the update itself when it is
    known exactly (a LoRA adapter's scale·B·A in float64); W1 is then W0 + dW in float64 for
    the spectra, and ``w1`` (the merged weights as stored) gives only the bf16 update mask.
    ``on_update``: called with dW's Gram eigenpairs (``gram_eigh``, vectors and all, where the
    metrics need only the values), so that the interference of several runs
    (``rankedit.analysis.interference``) decomposes each update once.
    ``eig0``: W0's Gram eigenpairs made earlier in the same run (``rankedit.core.base_decomp``);
    ``on_eig0``: called with them when they were made here.
    """
    if w0.ndim != 2 or w0.shape != w1.shape:
        raise ValueError(f"need two 2-D matrices of one shape, got {tuple(w0.shape)} and {tuple(w1.shape)}")
    shape = (int(w0.shape[0]), int(w0.shape[1]))
    f0 = w0.float()
    exact = None if dw is None else dw.double()
    a1 = f0.double() + exact if exact is not None else None
    f1 = w1.float() if exact is None else a1.float()
    dw = f1 - f0 if exact is None else exact.float()
    kk = default_k(shape, k)
    gram0, gram_dw, gram1, cross = _short_side_grams(f0, f1, exact)
    if eig0 is None:
        eig0 = gram_eigh(gram0)
        if on_eig0 is not None:
            on_eig0(eig0)
    if base is None:
        base = base_parts(w0, k, alpha, eig=eig0)
        if on_base is not None:
            on_base(base)
    elif tuple(base.svd.U.shape) != (shape[0], kk) or base.s.numel() != min(shape):
        raise ValueError(f"base parts of shape {tuple(base.svd.U.shape)} do not fit a {shape} matrix at k={kk}")

    if on_update is None:
        s_dw = torch.linalg.eigvalsh(gram_dw).flip(0).clamp_min(0).sqrt()
    else:
        eig_dw = gram_eigh(gram_dw)
        s_dw = eig_dw[0]
        on_update(eig_dw)
    s0, svd0 = base.s, base.svd
    eig1 = gram_eigh(gram1)
    top1 = triplets_from_eigh(a1 if a1 is not None else f1.double(), *eig1, kk)
    s1, svd1 = eig1[0], SVD(top1.U.float(), top1.S.float(), top1.V.float())
    ang_l = principal_angles_deg(svd0.U, svd1.U)
    ang_r = principal_angles_deg(svd0.V, svd1.V)

    upd = bf16_update_mask(w0, w1)
    m_p = cut_mask(principal_scores(svd0), base.principal)
    m_low = cut_mask(f0.abs(), base.low, largest=False)
    abs_dw = dw.abs()
    topq = top_fraction_mask(abs_dw, q) if float(abs_dw.max()) > 0 else torch.zeros_like(upd)

    r, r_frac = rank_from_singular_values(s_dw, shape)
    out = {
        "sparsity_bf16": 1.0 - fraction(upd),
        "sparsity_atol": fraction(abs_dw <= atol),
        "rank": r,
        "rank_fraction": r_frac,
        "effective_rank": effective_rank(s_dw),
        "stable_rank": stable_rank(s_dw),
        "rank1_energy": rank1_energy(s_dw),
        "angle_left_deg": float(ang_l.max()),
        "angle_right_deg": float(ang_r.max()),
        "angles_left_deg": [float(a) for a in ang_l],
        "angles_right_deg": [float(a) for a in ang_r],
        "k": kk,
        "spectral_gap": spectral_gap(s0, kk),
        "spectral_shift": spectral_shift(s0, s1),
        "overlap_principal": overlap(upd, m_p),
        "overlap_low": overlap(upd, m_low),
        "overlap_principal_topq": overlap(topq, m_p),
        # rel_update_norm(f0, f1), with ‖W0‖ from the base parts
        "rel_update_norm": NAN if base.norm == 0.0 else float(
            (exact if exact is not None else f1.double() - f0.double()).norm() / base.norm),
        "propensity_share": _propensity_from_gram(*eig0, cross, float(gram_dw.trace()), shape),
    }
    if w_other is not None:
        if w_other.shape != w0.shape:
            raise ValueError(f"other run's matrix has shape {tuple(w_other.shape)}, expected {shape}")
        j, j_exp = jaccard(upd, bf16_update_mask(w0, w_other))
        out["jaccard"] = j
        out["jaccard_expected"] = j_exp
    return out

