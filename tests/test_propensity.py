"""Propensity vs lability: the share on constructed matrices, the two edits' exact facts, and a build."""

import math

import pytest
import torch
from safetensors.torch import load_file

from rankedit.analysis.geometry import matrix_metrics, propensity_share
from rankedit.core.propensity_basis import diagonal, full_basis, propensity_delta
from rankedit.edits import EDITS, MatrixInputs


def _base(m, n, seed=0):
    """W0 = U0 diag(s) V0ᵀ with known, well-separated singular values, float64."""
    g = torch.Generator().manual_seed(seed)
    r = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))
    s = torch.linspace(3.0, 1.0, r, dtype=torch.float64)
    return U, s, V, (U * s) @ V.T


def _run(name, w0, dw):
    e = EDITS[name]
    return e.fn(MatrixInputs(w0, (w0 + dw,)), e.params()).delta


@pytest.mark.parametrize("m, n", [(12, 12), (20, 8), (8, 20)])
def test_a_pure_rescale_of_the_singular_values_is_all_propensity(m, n):
    U, s, V, w0 = _base(m, n)
    delta = torch.linspace(-0.5, 0.7, min(m, n), dtype=torch.float64)
    dw = (U * delta) @ V.T
    assert propensity_share(w0, dw) == pytest.approx(1.0, abs=1e-10)
    torch.testing.assert_close(_run("propensity-only", w0, dw), dw, rtol=0, atol=1e-12)
    assert float(_run("lability-only", w0, dw).norm()) < 1e-12


@pytest.mark.parametrize("theta", [0.1, 0.7, math.pi / 2, 2.5])
def test_rotating_a_pair_of_singular_vectors_by_theta_gives_sin_squared_half_theta(theta):
    # W1 = U0 R S0 V0ᵀ, R rotating coordinates 1 and 2 by θ: C = (R - I) S0, whose 2 x 2 block is
    # [[(cos θ - 1) s1, -sin θ s2], [sin θ s1, (cos θ - 1) s2]]. ‖diag C‖² = (1 - cos θ)² (s1² + s2²),
    # ‖C‖² = ((1 - cos θ)² + sin² θ)(s1² + s2²) = 2 (1 - cos θ)(s1² + s2²): share (1 - cos θ) / 2 = sin²(θ/2).
    U, s, V, w0 = _base(10, 14)
    R = torch.eye(10, dtype=torch.float64)
    R[1, 1] = R[2, 2] = math.cos(theta)
    R[1, 2], R[2, 1] = -math.sin(theta), math.sin(theta)
    dw = (U @ R * s) @ V.T - w0
    assert propensity_share(w0, dw) == pytest.approx(math.sin(theta / 2) ** 2, abs=1e-10)


def test_turning_one_singular_vector_towards_a_new_direction_gives_the_same_law():
    # tall W0: a left vector u' orthogonal to all of U0 exists. u1 -> cos θ u1 + sin θ u': dW =
    # s1 ((cos θ - 1) u1 + sin θ u') v1ᵀ, whose C has only c_11 = s1 (cos θ - 1): share sin²(θ/2) again;
    # the sin θ u' part lies outside span(U0) and counts as lability.
    U, s, V, w0 = _base(16, 6)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, generator=g, dtype=torch.float64)
    x = x - U @ (U.T @ x)
    u_new = x / x.norm()
    theta = 0.9
    dw = s[0] * torch.outer((math.cos(theta) - 1) * U[:, 0] + math.sin(theta) * u_new, V[:, 0])
    assert propensity_share(w0, dw) == pytest.approx(math.sin(theta / 2) ** 2, abs=1e-10)
    # wholly outside span(U0): no propensity at all; so is u_i v_jᵀ with i != j
    assert propensity_share(w0, torch.outer(u_new, V[:, 2])) == pytest.approx(0.0, abs=1e-12)
    assert propensity_share(w0, torch.outer(U[:, 0], V[:, 3])) == pytest.approx(0.0, abs=1e-12)


def test_a_gaussian_update_has_propensity_share_r_over_mn_in_expectation():
    # c_i = u_iᵀ G v_i ~ N(0, σ²) for Gaussian G (orthonormal u_i, v_i), so E‖diag C‖² = r σ² and
    # E‖G‖² = m n σ²: the ratio of expectations is r / (m n) = 1 / max(m, n).
    m, n = 30, 50
    _, _, _, w0 = _base(m, n)
    basis = full_basis(w0)
    g = torch.Generator().manual_seed(5)
    num = den = 0.0
    for _ in range(400):
        dw = torch.randn(m, n, generator=g, dtype=torch.float64)
        num += float(diagonal(basis, dw).pow(2).sum())
        den += float(dw.pow(2).sum())
    assert num / den == pytest.approx(min(m, n) / (m * n), rel=0.05)


def test_the_two_edit_deltas_sum_to_the_update_and_split_its_energy():
    U, s, V, w0 = _base(24, 18)
    dw = 0.01 * torch.randn(24, 18, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    prop, lab = _run("propensity-only", w0, dw), _run("lability-only", w0, dw)
    torch.testing.assert_close(prop + lab, dw, rtol=0, atol=1e-15)
    # orthogonal in the Frobenius product, so the energies add up to ‖dW‖² and the share is prop's
    share = float(prop.pow(2).sum() / dw.pow(2).sum())
    assert share == pytest.approx(propensity_share(w0, dw), rel=1e-10)
    assert float((prop * lab).sum()) == pytest.approx(0.0, abs=1e-14)


def test_directions_below_the_rank_tolerance_are_not_w0s_own():
    # W0 of rank 3 in a 8 x 8 matrix: a change along a null direction is new (lability), however the
    # Gram eigendecomposition happens to orient the null space
    U, s, V, full = _base(8, 8)
    w0 = (U[:, :3] * s[:3]) @ V[:, :3].T
    assert full_basis(w0).S.numel() == 3
    dw = torch.outer(U[:, 5], V[:, 5])
    assert propensity_share(w0, dw) == pytest.approx(0.0, abs=1e-12)
    assert float(propensity_delta(w0, dw).norm()) < 1e-12
    assert math.isnan(propensity_share(w0, torch.zeros(8, 8, dtype=torch.float64)))


def test_analyze_writes_the_share_for_each_matrix():
    U, s, V, w0 = _base(16, 12)
    w0 = w0.float()
    dw = ((U * torch.linspace(0.1, 0.2, 12, dtype=torch.float64)) @ V.T).float()
    out = matrix_metrics(w0, w0 + dw, k=2)
    assert out["propensity_share"] == pytest.approx(1.0, abs=1e-5)


def test_edit_records_of_the_pair():
    prop, lab = EDITS["propensity-only"], EDITS["lability-only"]
    assert prop.control_for(prop.params()) == ("lability-only", lab.params())
    assert lab.control_for(lab.params()) is None
    from rankedit.edits.storage import MatrixSize, Storage

    size = MatrixSize((4, 6))  # bf16 values: 2 bytes each
    assert prop.storage(prop.params(), size) == Storage(4, 8) and lab.storage(lab.params(), size) == Storage(24, 48)
    assert prop.svd_rank(prop.params()) is None


def test_propensity_and_lability_through_the_cli_on_disk(tiny_pair, tmp_path, capsys):
    from rankedit.cli.main import main
    from rankedit.files.checkpoint import Checkpoint
    from rankedit.core.modules import classify

    base, tuned = tiny_pair
    outs = {}
    for name in ("propensity-only", "lability-only"):
        outs[name] = tmp_path / name
        try:
            main(["edit", name, str(base), str(tuned), "-o", str(outs[name]), "--quiet"])
        except SystemExit as e:
            pytest.fail(f"rankedit edit {name} exited {e.code}: {capsys.readouterr().err}")
    ck = Checkpoint(base)
    mats = [n for n in ck.names if classify(n, ck.info(n).shape, ck.model_type).is_matrix]
    w0, w1 = load_file(str(base / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    p, q = (load_file(str(outs[n] / "model.safetensors")) for n in ("propensity-only", "lability-only"))
    for n in mats:
        a0 = w0[n].double()
        dw = w1[n].double() - a0
        torch.testing.assert_close((p[n].double() - a0) + (q[n].double() - a0), dw, rtol=0, atol=1e-6)
        want = propensity_delta(w0[n].float(), (w1[n].float() - w0[n].float()))
        torch.testing.assert_close(p[n].double() - a0, want, rtol=0, atol=1e-6)
    for n in set(w0) - set(mats):  # rest: base
        assert torch.equal(p[n], w0[n]) and torch.equal(q[n], w0[n])


@pytest.mark.parametrize("shape", [(48, 32), (32, 48), (40, 40)])
def test_the_analysis_shares_w0s_decomposition_and_measures_the_same_share(shape):
    """matrix_metrics gets the share from W0's Gram eigenpairs and the cross term W0ᵀdW (no
    decomposition of its own); it must equal the reference ``propensity_share`` (full basis)."""
    from rankedit.analysis.geometry import matrix_metrics
    from rankedit.core.linalg import gram_svd

    g = torch.Generator().manual_seed(7)
    w0 = torch.randn(*shape, generator=g)
    for dw in (0.01 * torch.randn(*shape, generator=g),  # noise
               0.05 * torch.outer(torch.randn(shape[0], generator=g), torch.randn(shape[1], generator=g))):
        w1 = w0 + dw
        m = matrix_metrics(w0, w1, k=4)
        assert m["propensity_share"] == pytest.approx(propensity_share(w0, w1 - w0), rel=1e-7)
        # W1's spectrum, from a Gram made of sums, is W1's own
        s1, _ = gram_svd(w1)
        s0, _ = gram_svd(w0)
        assert m["spectral_shift"] == pytest.approx(float((s1 - s0).norm() / s0.norm()), rel=1e-6)
    # a pure rescale of W0's singular values: share 1, through the analysis as through the reference
    u, s, vh = torch.linalg.svd(w0.double(), full_matrices=False)
    w1 = (u * (s * 1.01)) @ vh
    assert matrix_metrics(w0.double(), w1, k=4)["propensity_share"] == pytest.approx(1.0, abs=1e-9)
