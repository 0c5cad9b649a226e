"""The SVD accuracy guard: planted spectra against numpy's float64 SVD, and its manifest record."""

import logging

import numpy as np
import pytest
import torch

from rankedit.edits import build_edit, read_manifest
from rankedit.edits.methods.rank_k import RankKParams, rank_k
from rankedit.edits.registry import MatrixInputs
from rankedit.core.svd import POWER_ITERS, edit_svd, unidentifiable_warning, warn_unidentifiable
from rankedit.core.guarded_svd import GAP_TOL, guarded_top_k
from rankedit.core.linalg import randomized_svd


def orthonormal(m, n, seed):
    q, _ = torch.linalg.qr(torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def planted_factors(m, n, ratio, alpha=0.3, rank=None, seed=0):
    """float64 (U, s, V) with s_i = i^-alpha (slow decay), s1/s2 = ratio, zero beyond ``rank``."""
    r = min(m, n)
    s = torch.arange(1, r + 1, dtype=torch.float64) ** -alpha
    s[1:] = s[1:] / s[1] / ratio
    s[0] = 1.0
    if rank is not None:
        s[rank:] = 0.0
    return orthonormal(m, r, seed), s, orthonormal(n, r, seed + 1)


def planted(m, n, ratio, alpha=0.3, rank=None, seed=0):
    """float32 A = U diag(s) Vᵀ (``planted_factors``)."""
    U, s, V = planted_factors(m, n, ratio, alpha, rank, seed)
    return ((U * s) @ V.T).float()


def exact_rank_k(a: torch.Tensor, k: int) -> np.ndarray:
    """The rank-k edit (norm rescale) from numpy.linalg.svd of the float32 matrix in float64."""
    a64 = a.double().numpy()
    U, S, Vh = np.linalg.svd(a64, full_matrices=False)
    part = (U[:, :k] * S[:k]) @ Vh[:k]
    return part * (np.linalg.norm(a64) / np.linalg.norm(S[:k]))


def rel(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def rank_k_edit(a, k=1):
    w0 = torch.zeros_like(a)
    return rank_k(MatrixInputs(w0=w0, tuned=(a,), seed=0), RankKParams(k=k))


@pytest.mark.parametrize("shape", [(1536, 1536), (8960, 1536)])
def test_near_tie_rank1_edit_is_within_1e3_of_exact(shape):
    U, s, V = planted_factors(*shape, ratio=1.01)
    a = ((U * s) @ V.T).float()
    if shape[0] == shape[1]:
        ref = exact_rank_k(a, 1)
    else:  # numpy's SVD of 8960 x 1536 alone takes long: the planted factors are the exact float64 SVD
        ref = (torch.outer(U[:, 0], V[:, 0]) * float(a.double().norm())).numpy()
    # the unguarded randomized SVD (what edits used before) is wrong by more than 1e-3 here
    old = randomized_svd(a, 1, oversample=10, n_iter=POWER_ITERS, seed=0)
    old_edit = ((old.U * old.S) @ old.V.T).double().numpy() * (np.linalg.norm(a.double().numpy()) / float(old.S.norm()))
    assert rel(old_edit, ref) > 5e-3
    res = rank_k_edit(a)
    err = rel(res.delta.double().numpy(), ref)
    assert err <= 1e-3
    assert res.svd_identifiable is True
    assert err <= res.svd_error <= 1e-3  # the recorded bound holds and is within the tolerance


def test_clean_gap_passes_after_the_cheap_pass():
    a = planted(1536, 1024, ratio=1.5, alpha=0.5)
    svd, acc = edit_svd(a, 1)
    assert acc.method == "randomized"  # no Krylov blocks, no exact fallback: the guard cost one thin product
    U, S, Vh = np.linalg.svd(a.double().numpy(), full_matrices=False)
    np.testing.assert_allclose(svd.S.double().numpy(), S[:1], rtol=1e-5)
    ref = S[0] * np.outer(U[:, 0], Vh[0])
    got = ((svd.U * svd.S) @ svd.V.T).double().numpy()
    assert rel(got, ref) <= acc.edit_error <= 1e-3
    assert acc.identifiable and acc.rel_gap == pytest.approx((S[0] - S[1]) / S[0], rel=1e-4)


def test_the_cheap_pass_stops_early_on_a_clear_gap_and_not_on_a_slow_one(monkeypatch):
    """The bound is checked after every product with A or Aᵀ: a clear gap (s1/s2 = 3) stops well
    before the last of them within the tolerance; a slow one (s1/s2 = 1.05) runs all of them
    (1 + 2 n_iter + 1, the guard then goes on)."""
    from rankedit.core import guarded_svd

    clear, slow = planted(1536, 1024, ratio=3.0, alpha=0.5), planted(1536, 1024, ratio=1.05, alpha=0.05)
    products = []
    for fn in ("times", "times_t"):
        real = getattr(guarded_svd, fn)
        monkeypatch.setattr(guarded_svd, fn, lambda A, X, real=real: products.append(X.shape) or real(A, X))
    svd, acc = guarded_top_k(clear, 1, n_iter=POWER_ITERS)
    assert 3 <= len(products) <= 6 and acc.method == "randomized" and acc.edit_error <= 1e-3
    U, S, Vh = np.linalg.svd(clear.double().numpy(), full_matrices=False)
    got = ((svd.U * svd.S) @ svd.V.T).double().numpy()
    assert rel(got, S[0] * np.outer(U[:, 0], Vh[0])) <= acc.edit_error
    products.clear()
    _, _, res = guarded_svd._cheap_pass(
        slow, 1, 11, POWER_ITERS, 0,
        good=lambda r, res: guarded_svd._estimate(r, res, 1, (1536, 1024), torch.float32)[0] <= guarded_svd.TOL)
    assert len(products) == 1 + 2 * POWER_ITERS + 1 and res.shape == (2,)


def sin_angle(x: torch.Tensor, ref: np.ndarray) -> float:
    """sin of the angle between a computed vector and a unit reference, as the norm of x's part
    orthogonal to it (sqrt(1 - cos²) would lose everything below 1e-4 to float32 rounding)."""
    x = x.double().numpy()
    x = x / np.linalg.norm(x)
    return float(np.linalg.norm(x - ref * np.dot(ref, x)))


@pytest.mark.parametrize("shape", [(700, 300), (300, 700)])
def test_every_check_of_the_cheap_pass_bounds_the_true_error(shape):
    """At each product the triplets the check sees have a bound at or above their true
    subspace error (against numpy's float64 SVD), on both orientations of the matrix."""
    from rankedit.core import guarded_svd

    a = planted(*shape, ratio=1.3, alpha=0.2)
    U, S, Vh = np.linalg.svd(a.double().numpy(), full_matrices=False)
    seen = []

    def good(r, res):
        bound = guarded_svd._estimate(r, res, 1, shape, torch.float32)[0]
        true = max(sin_angle(r.U[:, 0], U[:, 0]), sin_angle(r.V[:, 0], Vh[0]))
        seen.append((bound, true))
        return False

    guarded_svd._cheap_pass(a, 1, 11, POWER_ITERS, 0, good=good)
    assert len(seen) == 2 * POWER_ITERS - 1  # after every product but the first and the last (that one returns)
    assert all(true <= bound for bound, true in seen)
    assert seen[-1][0] < seen[0][0]  # the iterations converge


def test_times_is_the_product():
    from rankedit.core.guarded_svd import times, times_t

    g = torch.Generator().manual_seed(0)
    A, X, Q = torch.randn(50, 30, generator=g), torch.randn(30, 4, generator=g), torch.randn(50, 4, generator=g)
    torch.testing.assert_close(times(A, X), A @ X)
    torch.testing.assert_close(times_t(A, Q), A.T @ Q)


@pytest.mark.parametrize("k", [2, 5])
def test_rank_deficient_update(k):
    """Rank 3: for k <= 3 the usual check; for k > 3 the extra directions carry zero weight."""
    a = planted(1200, 800, ratio=1.2, rank=3)
    res = rank_k_edit(a, k)
    ref = exact_rank_k(a, k)
    assert rel(res.delta.double().numpy(), ref) <= 1e-5
    assert res.rank_kept == min(k, 3)
    assert res.svd_identifiable is True and res.svd_error <= 1e-3


def test_unidentifiable_gap_is_flagged_and_exact():
    a = planted(1024, 768, ratio=1.0003, alpha=0.3)
    svd, acc = guarded_top_k(a, 1)
    assert acc.method == "exact" and not acc.identifiable and acc.rel_gap < GAP_TOL
    U, S, Vh = np.linalg.svd(a.double().numpy(), full_matrices=False)
    # the exact direction of the matrix as given (its own gap is 3e-4 of s1, far above float64 error)
    assert abs(float(np.dot(svd.V[:, 0].double().numpy(), Vh[0]))) > 1 - 1e-6


def test_one_warning_line_per_edit(caplog):
    facts = [{"name": f"m{i}", "svd_identifiable": i % 2 == 0} for i in range(6)]
    msg = unidentifiable_warning("rank-k", facts)
    assert "\n" not in msg and "3 of 6 matrices" in msg and "m1" in msg
    with caplog.at_level(logging.WARNING, logger="rankedit"):
        warn_unidentifiable("rank-k", facts)
        warn_unidentifiable("rank-k", [{"name": "x", "svd_identifiable": True}])
    assert len(caplog.records) == 1
    assert unidentifiable_warning("mask", [{"name": "x"}]) is None  # edits without SVDs never warn


def test_manifest_records_svd_accuracy(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    man = read_manifest(build_edit("rank-k", base, tuned, tmp_path / "r1", k=1))
    errs = [m["svd_error"] for m in man["matrices"]]
    assert len(errs) == man["summary"]["n_matrices"] and all(0 <= e <= 1e-3 for e in errs)
    assert man["summary"]["svd_error_max"] == max(errs)
    bad = sum(not m["svd_identifiable"] for m in man["matrices"])
    assert man["summary"]["svd_not_identifiable"] == bad
    plain = read_manifest(build_edit("mask", base, tuned, tmp_path / "mask"))
    assert "svd_error" not in plain["matrices"][0] and "svd_error_max" not in plain["summary"]


def test_a_large_k_on_a_large_matrix_is_the_exact_float64_decomposition(monkeypatch):
    """k above an eighth of a short side over 256: the float64 Gram eigendecomposition, not
    LAPACK's float32 SVD (3x slower there) nor the randomized one; exact against numpy."""
    from rankedit.core import svd as svd_mod

    a = planted(700, 300, ratio=1.2, alpha=0.4)
    monkeypatch.setattr(svd_mod, "exact_svd", lambda *x, **k: pytest.fail("LAPACK's SVD of a large matrix"))
    monkeypatch.setattr(svd_mod, "guarded_top_k", lambda *x, **k: pytest.fail("the randomized SVD for a large k"))
    got, acc = edit_svd(a, 60)
    U, S, Vh = np.linalg.svd(a.double().numpy(), full_matrices=False)
    np.testing.assert_allclose(got.S.double().numpy(), S[:60], rtol=1e-5)
    ref = (U[:, :60] * S[:60]) @ Vh[:60]
    assert rel(((got.U * got.S) @ got.V.T).double().numpy(), ref) <= 1e-6
    assert acc.method == "exact" and acc.subspace_error == 0.0 and got.U.dtype == torch.float32
    assert acc.rel_gap == pytest.approx((S[59] - S[60]) / S[0], rel=1e-6)
