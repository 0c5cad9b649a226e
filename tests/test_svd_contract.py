"""The SVD contract of the edits: a certified near-optimal top-k where the data cannot fix the directions,
the exact top-k elsewhere (subset eigensolver), and ``exact_svd`` as the guarded SVD always was."""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from rankedit.core import guarded_svd, near_optimal
from rankedit.core.guarded_svd import TOL, guarded_top_k
from rankedit.core.svd import edit_svd, storage_noise, storage_unit_roundoff
from rankedit.core.threads import torch_threads
from rankedit.edits import build_edit, read_manifest
from rankedit.edits.manifest import summary_lines
from rankedit.testing import synthetic


@pytest.fixture(autouse=True)
def one_thread():
    """The thread policy's choice on 2 cores: two OpenMP threads on these small products only spin."""
    with torch_threads(1):
        yield


def orthonormal(m, n, gen):
    return torch.linalg.qr(torch.randn(m, n, generator=gen, dtype=torch.float64))[0]


def spectrum(kind: str, m: int = 200, n: int = 500, seed: int = 0) -> torch.Tensor:
    """float32 planted matrices: flat (all values 1 ± 1%), noise-like (Gaussian, a Marchenko-Pastur
    spectrum), near-tied (s1/s2 = 1.001 on a slow decay), well separated (s1/s2 = 3, s2/s3 = 2)."""
    gen = torch.Generator().manual_seed(seed)
    r = min(m, n)
    if kind == "noise-like":
        return torch.randn(m, n, generator=gen)
    if kind == "flat":
        s = 1 + 0.01 * torch.rand(r, generator=gen, dtype=torch.float64)
    elif kind == "near-tied":
        s = torch.arange(1, r + 1, dtype=torch.float64) ** -0.05
        s[0] = s[1] * 1.001
    else:
        s = torch.arange(1, r + 1, dtype=torch.float64) ** -0.3 * 0.2
        s[:3] = torch.tensor([1.2, 0.4, 0.2], dtype=torch.float64)
    s = s.sort(descending=True).values
    return ((orthonormal(m, r, gen) * s) @ orthonormal(n, r, gen).T).float()


def cheap_basis(a: torch.Tensor, k: int) -> torch.Tensor:
    """The cheap pass's left basis, as the guard hands it over (all its products, no early stop)."""
    return guarded_svd._cheap_pass(a, k, k + 10, 4, 0)[0]


KINDS = ["flat", "noise-like", "near-tied", "well-separated"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 3])
def test_the_certified_bound_holds_against_numpy(kind, k):
    a = spectrum(kind)
    basis = cheap_basis(a, k)
    cert = near_optimal.certify(a, basis, k, seed=0)
    a64 = a.double().numpy()
    U, S, Vh = np.linalg.svd(a64, full_matrices=False)
    optimal = math.sqrt(float((S[k:] ** 2).sum()))
    svd = cert.svd
    e = ((svd.U.float() * svd.S.float()) @ svd.V.float().T).double().numpy()  # the float32 factors an edit gets
    assert np.linalg.norm(a64 - e) <= (1 + cert.eps) * optimal
    q = torch.linalg.qr(basis.double())[0].numpy()
    assert cert.beta >= np.linalg.norm(a64 - q @ (q.T @ a64), 2)  # the power bound on the deflated norm holds
    assert np.all(cert.values.numpy() <= S[: cert.values.numpy().size] * (1 + 1e-12))  # Ritz values interlace
    assert near_optimal.gap_upper(cert.values, cert.beta, k) >= S[k - 1] - S[k]
    if kind in ("flat", "noise-like"):
        assert cert.eps < 0.05  # noise-like: the bound is useful, not merely true


@pytest.mark.parametrize("kind", ["flat", "noise-like", "well-separated"])
def test_the_contract_gives_near_optimal_only_where_the_data_cannot_fix_the_directions(kind):
    a = spectrum(kind, 300, 640)  # big enough for a useful certificate at k = 1 (ε about 0.005)
    loud = 0.1 * float(a.double().norm())  # a storage noise that no gap of a can outweigh
    svd, acc = guarded_top_k(a, 1, exact=False, noise=loud)
    a64 = a.double().numpy()
    U, S, Vh = np.linalg.svd(a64, full_matrices=False)
    e = ((svd.U * svd.S) @ svd.V.T).double().numpy()
    if kind == "well-separated":  # the cheap pass meets the tolerance: today's answer, exact to 5e-4
        assert acc.method == "randomized" and acc.mode == "exact"
    if acc.mode == "near-optimal":
        assert acc.residual_bound <= near_optimal.EPS_MAX and not acc.identifiable
        assert np.linalg.norm(a64 - e) <= (1 + acc.residual_bound) * math.sqrt(float((S[1:] ** 2).sum()))
    if kind in ("flat", "noise-like"):
        assert acc.mode == "near-optimal"
    if kind == "noise-like":  # exact data (no storage noise): the exact top-k (Krylov, or the subset solver)
        svd0, acc0 = guarded_top_k(a, 1, exact=False, noise=0.0)
        assert acc0.mode == "exact" and acc0.residual_bound is None and acc0.identifiable
        cos = abs(float(torch.from_numpy(U[:, 0]) @ svd0.U[:, 0].double()))
        assert math.sqrt(max(0.0, 1 - cos * cos)) <= acc0.edit_error and acc0.subspace_error <= TOL


def _counting(monkeypatch):
    """Counts the guard's products with A or Aᵀ (the cheap pass's and Krylov's)."""
    calls = []
    for name in ("times", "times_t"):
        real = getattr(guarded_svd, name)
        monkeypatch.setattr(guarded_svd, name, lambda *a, real=real: calls.append(1) or real(*a))
    return calls


def test_the_default_stops_the_cheap_pass_where_the_certificate_is_the_likely_answer(monkeypatch):
    a = spectrum("flat", 500, 900)  # 500 values: the top one is 1/500 of the energy, a certificate well within 1%
    loud = 0.1 * float(a.double().norm())
    full = guarded_top_k(a, 1, exact=True)
    calls = _counting(monkeypatch)
    svd, acc = guarded_top_k(a, 1, exact=False, noise=loud)
    assert len(calls) == 3  # A Ω, Aᵀ Q, A Z: the first check of the bound, then the certificate
    calls.clear()
    assert torch.equal(guarded_top_k(a, 1, exact=True)[0].U, full[0].U) and len(calls) >= 10  # exact: every product
    S = np.linalg.svd(a.double().numpy(), compute_uv=False)
    e = ((svd.U * svd.S) @ svd.V.T).double().numpy()
    assert acc.mode == "near-optimal" and acc.residual_bound <= near_optimal.EPS_MAX
    assert np.linalg.norm(a.double().numpy() - e) <= (1 + acc.residual_bound) * math.sqrt(float((S[1:] ** 2).sum()))


def test_every_step_bounds_the_deflated_norm_and_the_certificate_stops_when_it_is_good_enough(monkeypatch):
    a = spectrum("flat", 1000, 1200)  # 1000 values: ε about 0.003 after two steps at k = 1
    basis = cheap_basis(a, 1)
    q = torch.linalg.qr(basis.double())[0]
    a64 = a.double()
    true = np.linalg.norm((a64 - q @ (q.T @ a64)).numpy(), 2)
    bounds = list(near_optimal.deflated_norm_bounds(a64, q, seed=0))
    assert len(bounds) == near_optimal.CERT_STEPS and all(b >= true for b in bounds)  # one event: all hold
    calls = []
    for name in ("times", "times_t"):
        real = getattr(near_optimal, name)
        monkeypatch.setattr(near_optimal, name, lambda *x, real=real: calls.append(1) or real(*x))
    cert = near_optimal.certify(a, basis, 1, seed=0)
    assert cert.eps <= near_optimal.EPS_MAX / 2 and cert.beta == pytest.approx(min(bounds[: near_optimal.CERT_EARLY]), rel=1e-9)
    assert len(calls) == 2 * near_optimal.CERT_EARLY  # Aᵀ [Q, Ω] then A·, Aᵀ·, A·: two steps, not three
    calls.clear()
    cert3 = near_optimal.certify(a, basis, 3, seed=0)  # k = 3: ε above EPS_MAX / 2 after two steps, so three
    assert len(calls) == 2 * near_optimal.CERT_STEPS and cert3.beta == pytest.approx(min(bounds), rel=1e-9)


def test_likely_predicts_from_the_ritz_values():
    flat = torch.full((11,), 1.0, dtype=torch.float64)
    a2 = 600.0  # 600 values of about 1: a flat spectrum whose top 11 the cheap pass saw
    assert near_optimal.likely(flat, a2, noise=1.0, k=1, tol=TOL)
    assert not near_optimal.likely(flat, a2, noise=0.0, k=1, tol=TOL)  # exact data: the exact path decides
    assert not near_optimal.likely(flat, 30.0, noise=1.0, k=1, tol=TOL)  # little left outside: ε would be large
    sep = torch.tensor([10.0, 1.0, 0.9], dtype=torch.float64)
    assert not near_optimal.likely(sep, 200.0, noise=1e-6, k=1, tol=TOL)  # a gap the data fixes


def test_a_wrong_prediction_costs_time_not_accuracy(monkeypatch):
    a = spectrum("near-tied", 300, 640)
    monkeypatch.setattr(near_optimal, "likely", lambda *a, **kw: True)  # stop at the first check, always
    svd, acc = guarded_top_k(a, 1, exact=False, noise=1e-12)  # the data fixes the directions: no near-optimal
    U = np.linalg.svd(a.double().numpy(), full_matrices=False)[0]
    cos = abs(float(torch.from_numpy(U[:, 0]) @ svd.U[:, 0].double()))
    assert acc.mode == "exact" and math.sqrt(max(0.0, 1 - cos * cos)) <= max(acc.edit_error, 1e-6)


def test_short_long_matrices_take_the_gram_route_by_default_and_lapack_when_exact(monkeypatch):
    a = spectrum("near-tied", 256, 1100)  # a GQA k_proj's shape class: short side <= 256, long side >= 1024
    S = np.linalg.svd(a.double().numpy(), compute_uv=False)
    svd, acc = edit_svd(a, 2)
    np.testing.assert_allclose(svd.S.double().numpy(), S[:2], rtol=1e-6)
    assert acc.mode == "exact" and acc.rel_gap == pytest.approx((S[1] - S[2]) / S[0], rel=1e-5)
    lapack = edit_svd(a, 2, exact=True)
    monkeypatch.setattr(near_optimal, "top_triplets", lambda *a, **kw: pytest.fail("the Gram route in exact mode"))
    again = edit_svd(a, 2, exact=True)
    assert all(torch.equal(x, y) for x, y in zip(lapack[0], again[0]))
    np.testing.assert_allclose((svd.U * svd.S) @ svd.V.T, (again[0].U * again[0].S) @ again[0].V.T, atol=1e-5)
    small = spectrum("near-tied", 64, 176)  # the organisms' matrices: LAPACK as before, in both modes
    assert all(torch.equal(x, y) for x, y in zip(edit_svd(small, 1)[0], edit_svd(small, 1, exact=True)[0]))


def test_the_subset_exact_path_matches_numpy_and_the_full_decomposition():
    a = spectrum("near-tied", 120, 300)
    for k in (1, 5):
        svd, acc = guarded_svd.exact_top_k(a, k)
        S = np.linalg.svd(a.double().numpy(), compute_uv=False)
        np.testing.assert_allclose(svd.S.double().numpy(), S[:k], rtol=1e-6)
        s_full, full = guarded_svd.gram_triplets(a.double(), k)
        np.testing.assert_allclose(svd.S.double().numpy(), s_full[:k].numpy(), rtol=1e-6)
        assert acc.method == "exact"


def test_exact_mode_never_runs_the_contract(monkeypatch):
    a = spectrum("noise-like", 260, 300)
    before = [guarded_top_k(a, 1), svd_gram := edit_svd(a, 40, exact=True)]  # 40 > 260 / 8: the Gram branch
    monkeypatch.setattr(guarded_svd, "_contract", lambda *a, **kw: pytest.fail("the contract ran in exact mode"))
    monkeypatch.setattr(near_optimal, "top_triplets", lambda *a, **kw: pytest.fail("subset solver in exact mode"))
    after = [edit_svd(a, 1, exact=True, noise=1.0), edit_svd(a, 40, exact=True, noise=1.0)]
    for (s0, acc0), (s1, acc1) in zip(before, after):
        assert all(torch.equal(x, y) for x, y in zip(s0, s1)) and acc0 == acc1 and acc1.mode == "exact"
    assert svd_gram[1].method == "exact"


def test_chi2_tail_matches_scipy():
    for r in (2, 8, 16):
        for x in (1e-3, 0.1, 1.0, 7.0, 30.0):
            assert near_optimal.chi2_even_cdf(x, r) == pytest.approx(scipy.stats.chi2.cdf(x, r), rel=1e-9, abs=1e-300)
    t2 = near_optimal.chi2_even_quantile(near_optimal.FAIL_PROB, near_optimal.CERT_COLS)
    assert scipy.stats.chi2.cdf(t2, near_optimal.CERT_COLS) == pytest.approx(near_optimal.FAIL_PROB, rel=1e-6)


def test_storage_precision_is_found_from_the_entries():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 96, generator=gen) * 0.02
    assert storage_unit_roundoff(w.bfloat16().float()) == 2.0 ** -8
    assert storage_unit_roundoff(w.half().float()) == 2.0 ** -11
    assert storage_unit_roundoff(w) == 2.0 ** -24
    assert storage_unit_roundoff(w.bfloat16().double()) == 2.0 ** -8
    b = w.bfloat16().float()
    rms = float(b.double().pow(2).mean().sqrt())
    assert storage_noise(b) == pytest.approx((8 + math.sqrt(96)) * 2.0 ** -8 * rms / math.sqrt(3), rel=1e-12)
    # read from a bf16 file: the same answer without a pass over the entries
    assert storage_noise(b, torch.bfloat16) == storage_noise(b)
    assert storage_unit_roundoff(w, torch.float32) == 2.0 ** -24 and storage_unit_roundoff(w.half().float(), torch.float16) == 2.0 ** -11


def test_summary_lines_say_what_was_kept_and_how():
    near = {"n_matrices": 7, "energy_kept": 0.99999, "energy_before_rescale": 0.0852, "rescale": 11.74,
            "svd_error_max": 1.41, "svd_near_optimal": 5, "svd_residual_bound_max": 0.0079, "svd_error_max_exact": 0.0}
    lines = summary_lines(near)
    assert lines[0] == "7 matrices edited, energy kept 1.0000 (before the rescale 0.0852, rescale ×11.74)"
    assert lines[1].startswith("SVD: 2 of 7 matrices exact (top-k within 0.0e+00 of the exact one), 5 near-optimal")
    assert "1 + 7.9e-03" in lines[1]
    plain = summary_lines({"n_matrices": 3, "energy_kept": 0.5, "energy_before_rescale": 0.5, "rescale": 1.0,
                           "density": 0.25})
    assert plain == ["3 matrices edited, energy kept 0.5000, density 0.2500"]


@pytest.fixture(scope="module")
def rl_pair(tmp_path_factory):
    """A bf16 Llama wide enough for the guard (512 x 512 but k/v) with an RL-like update: 10% of
    entries changed, a weak top direction, all quantized by bf16 storage."""
    root = tmp_path_factory.mktemp("rl")
    base = synthetic.build_random(root / "base", "llama", seed=0, hidden_size=512, intermediate_size=512,
                                  num_hidden_layers=1, num_attention_heads=4, dtype=torch.bfloat16)
    return base, synthetic.perturb(base, root / "tuned", scale=1e-3, density=0.1, spike=0.2, seed=1,
                                   dtype=torch.bfloat16)


def _sha(out: Path) -> str:
    return hashlib.sha256((Path(out) / "model.safetensors").read_bytes()).hexdigest()


def test_manifest_records_the_mode_and_exact_svd_keeps_the_exact_path(rl_pair, tmp_path, monkeypatch):
    base, tuned = rl_pair
    man = read_manifest(build_edit("rank-k", base, tuned, tmp_path / "default", k=1))
    big = [m for m in man["matrices"] if "k_proj" not in m["name"] and "v_proj" not in m["name"]]
    assert all(m["svd_mode"] == "near-optimal" and 0 < m["svd_residual_bound"] <= near_optimal.EPS_MAX for m in big)
    s = man["summary"]
    assert s["svd_near_optimal"] == len(big) and s["svd_residual_bound_max"] == max(m["svd_residual_bound"] for m in big)
    assert man["params"]["exact_svd"] is False
    # --exact-svd: no contract code runs (the guard alone, as it always was), every matrix exact
    monkeypatch.setattr(guarded_svd, "_contract", lambda *a, **kw: pytest.fail("the contract ran in exact mode"))
    exact_out = build_edit("rank-k", base, tuned, tmp_path / "exact", k=1, exact_svd=True)
    exact = read_manifest(exact_out)
    assert {m["svd_mode"] for m in exact["matrices"]} == {"exact"} and exact["summary"]["svd_near_optimal"] == 0
    assert exact["params"]["exact_svd"] is True and _sha(exact_out) != _sha(tmp_path / "default")


def test_the_base_cache_keeps_the_modes_apart():
    from rankedit.core import base_decomp as base_svd

    w0 = torch.randn(300, 320, generator=torch.Generator().manual_seed(0))
    assert base_svd.cache_key(w0, 8, 0, exact=False) != base_svd.cache_key(w0, 8, 0) == base_svd.cache_key(w0, 8, 0, True)
