"""The trajectory of one matrix over a run's checkpoints, and how linear it is, beside its nulls.

Pure functions: tensors and step numbers in, numbers out. ``dW_t = W_t - W0``;
T is the last checkpoint. Everything linear-in-t is measured from the Gram
matrix ``G_ij = <dW_i, dW_j>`` (n x n, n checkpoints), so the fit of a line in
t to the whole flattened update costs n² dot products, not a copy of the run.

Linearity is R² of the least-squares line in t: for values x_t (scalars or
flattened matrices), ``R² = 1 - Σ_t ‖x_t - (α + β t)‖² / Σ_t ‖x_t - x̄‖²``,
which is ``tcᵀ Gc tc / (tcᵀ tc · tr Gc)`` with ``tc = t - t̄`` and Gc the
centred Gram matrix. With few checkpoints R² is large by chance, so it is
always reported beside the same R² of (i) the same values with the steps
shuffled, (ii) Gaussian vectors of the same dimension and count, (iii) a
Gaussian random walk of the same dimension whose increments have variance
equal to the step gaps: a trend that a random walk also shows is no
evidence of linearity. For a(t) the nulls also take their direction from
their own last step, as a(t) does (``a_final_linearity``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rankedit.analysis.geometry import rank1_energy
from rankedit.core.linalg import gram_svd

GAP_THRESHOLD = 1.05  # s1/s2 below this: the top direction is not identifiable
N_NULL = 32  # draws per null (shuffles, random vectors, random walks)
DIRECT_MAX_DIM = 4096  # null vectors up to this dimension are drawn; above, their Gram matrix (Bartlett)


def matrix_trajectory(w0: torch.Tensor, ws: list[torch.Tensor], gap_threshold: float = GAP_THRESHOLD
                      ) -> tuple[list[dict], np.ndarray]:
    """Per-checkpoint facts of one matrix, and the Gram matrix of its updates (float64).

    Sign rule: each checkpoint's (u1(t), v1(t)) is flipped as a pair (which leaves
    s1 u1 v1ᵀ unchanged) when ``v1(t)ᵀ v1(T) < 0``; so ``cos_v_final >= 0`` and
    ``cos_u_final`` is negative only when the left vector turned against the right.
    """
    dws = [(w.double() - w0.double()) for w in ws]
    n = len(dws)
    gram = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            gram[i, j] = gram[j, i] = float((dws[i] * dws[j]).sum())
    tops = [gram_svd(d, k=1) for d in dws]
    u_t, v_t = tops[-1][1].U[:, 0], tops[-1][1].V[:, 0]
    norm_t = math.sqrt(gram[-1, -1])
    rows = []
    for i, (d, (s, top)) in enumerate(zip(dws, tops)):
        u, v = top.U[:, 0], top.V[:, 0]
        sign = -1.0 if float(v @ v_t) < 0 else 1.0
        s1 = float(s[0])
        s2 = float(s[1]) if s.numel() > 1 else 0.0
        ratio = s1 / s2 if s2 > 0 else math.inf
        norm = math.sqrt(gram[i, i])
        rows.append({
            "dw_norm": norm,
            "sigma1": s1,
            "rank1_energy": rank1_energy(s) if s1 > 0 else math.nan,
            "top_gap": ratio,
            "not_identifiable": bool(ratio < gap_threshold),
            "cos_u_final": sign * float(u @ u_t),
            "cos_v_final": sign * float(v @ v_t),
            "cos_dw_final": gram[i, -1] / (norm * norm_t) if norm > 0 and norm_t > 0 else math.nan,
            "a_final": float(u_t @ (d @ v_t)),
        })
    return rows, gram


def line_r2(steps, gram: np.ndarray) -> float:
    """R² of the least-squares line in t through the vectors whose Gram matrix is ``gram``."""
    t = np.asarray(steps, dtype=float)
    tc = t - t.mean()
    n = len(t)
    h = np.eye(n) - 1.0 / n
    gc = h @ gram @ h
    tot = float(np.trace(gc))
    if tot <= 0 or not np.any(tc):
        return math.nan
    return float(tc @ gc @ tc) / (float(tc @ tc) * tot)


def line_fit(steps, values) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through (t, value)."""
    t = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    tc = t - t.mean()
    slope = float(tc @ (y - y.mean()) / (tc @ tc))
    return float(y.mean() - slope * t.mean()), slope


def gaussian_factor(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """F with F Fᵀ distributed as the Gram matrix of n independent N(0, I_dim) vectors.

    The vectors themselves up to ``DIRECT_MAX_DIM``; above, Bartlett's lower-triangular
    factor of the Wishart(dim, I_n) law the Gram matrix follows (the same distribution,
    without drawing n·dim numbers)."""
    if dim <= DIRECT_MAX_DIM or dim < n:
        return rng.standard_normal((n, dim))
    low = np.tril(rng.standard_normal((n, n)), -1)
    low[np.diag_indices(n)] = np.sqrt(rng.chisquare(dim - np.arange(n)))
    return low


def gaussian_gram(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """The Gram matrix of n independent N(0, I_dim) vectors (``gaussian_factor``)."""
    f = gaussian_factor(n, dim, rng)
    return f @ f.T


def walk_matrix(steps) -> np.ndarray:
    """C with x_i = Σ_j C_ij e_j a random walk from 0 at step 0, increment variance = step gap."""
    t = np.asarray(steps, dtype=float)
    gaps = np.diff(np.concatenate([[0.0], t]))
    return np.tril(np.ones((len(t), len(t)))) * np.sqrt(np.clip(gaps, 0, None))[None, :]


def _summarize_draws(r2: float, draws: dict[str, list[float]]) -> dict:
    out = {"r2": r2}
    for key, vals in draws.items():
        vals = np.asarray(vals, dtype=float)
        finite = bool(np.any(np.isfinite(vals)))
        mean = float(np.nanmean(vals)) if finite else math.nan
        out[f"r2_{key}"] = mean
        out[f"r2_{key}_q05"] = float(np.nanquantile(vals, 0.05)) if finite else math.nan
        out[f"r2_{key}_q95"] = float(np.nanquantile(vals, 0.95)) if finite else math.nan
        out[f"excess_{key}"] = r2 - mean
    return out


def linearity(steps, gram: np.ndarray, dim: int, seed: int, n_null: int = N_NULL) -> dict:
    """R² of the line in t beside its three nulls (means and 95th percentiles over ``n_null`` draws)."""
    rng = np.random.default_rng(seed)
    t = np.asarray(steps, dtype=float)
    n = len(t)
    c = walk_matrix(t)
    draws = {"shuffled": [], "random": [], "walk": []}
    for _ in range(n_null):
        draws["shuffled"].append(line_r2(t[rng.permutation(n)], gram))
        draws["random"].append(line_r2(t, gaussian_gram(n, dim, rng)))
        draws["walk"].append(line_r2(t, c @ gaussian_gram(n, dim, rng) @ c.T))
    return _summarize_draws(line_r2(t, gram), draws)


def gaussian_top_value(shape: tuple[int, int], rng: np.random.Generator) -> float:
    """s1 of an m x n matrix of independent N(0, 1) entries, drawn exactly in law up to 2^20 entries:
    with p = min(m, n), the p x p Gram matrix follows Wishart(max(m, n), I_p) and s1² is its top
    eigenvalue. The product and the eigenvalues run in torch, under the hot path's thread count:
    numpy's multi-threaded SVD here took 200 s instead of 2 on a loaded 2-core machine (its
    threads spin while another process holds a core; BENCHMARKS.md). Above 2^20 entries, the
    limit sqrt(m) + sqrt(n) (the fluctuations shrink as min(m, n)^(-1/6))."""
    m, n = shape
    if m * n <= 1 << 20:
        f = torch.from_numpy(gaussian_factor(min(m, n), max(m, n), rng))
        return math.sqrt(max(float(torch.linalg.eigvalsh(f @ f.T)[-1]), 0.0))
    return math.sqrt(m) + math.sqrt(n)


def a_final_linearity(steps, a, shape: tuple[int, int], seed: int, n_null: int = N_NULL) -> dict:
    """R² of the line in t through a(t) = u1(T)ᵀ dW_t v1(T), beside nulls that pick their direction
    the same way: from the last checkpoint.

    That choice is what makes a(t) look linear: for any trajectory a(T) = s1(T) is
    the largest value by construction. The nulls are drawn exactly in law, without
    building matrices: for independent Gaussian matrices a(t_i) ~ N(0, 1) for
    i < n and a(T) = s1 of one; for a Gaussian random walk (increment variance =
    step gap) X_t = (t/T) X_T + B_t with B a Brownian bridge independent of X_T,
    so a(t) = (t/T) s1(X_T) + b(t), b a scalar Brownian bridge.
    """
    rng = np.random.default_rng(seed)
    t = np.asarray(steps, dtype=float)
    a = np.asarray(a, dtype=float)
    n, big_t = len(t), float(t[-1])
    draws = {"shuffled": [], "random": [], "walk": []}
    for _ in range(n_null):
        draws["shuffled"].append(line_r2(t[rng.permutation(n)], np.outer(a, a)))
        iid = np.append(rng.standard_normal(n - 1), gaussian_top_value(shape, rng))
        draws["random"].append(line_r2(t, np.outer(iid, iid)))
        w = walk_matrix(t) @ rng.standard_normal(n)
        walk = (t / big_t) * math.sqrt(big_t) * gaussian_top_value(shape, rng) + (w - (t / big_t) * w[-1])
        draws["walk"].append(line_r2(t, np.outer(walk, walk)))
    return _summarize_draws(line_r2(t, np.outer(a, a)), draws)
