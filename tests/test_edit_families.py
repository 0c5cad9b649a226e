"""The size-for-gain edit families (rank-auto, sign, dare, sub-rank-1, the multiplier α), each with
its control and storage cost, on constructed inputs whose answers are known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rankedit.core.errors import RankeditError
from rankedit.edits import EDITS
from rankedit.edits.methods.rank_auto import energy_rank, ratio_rank
from rankedit.edits.registry import MatrixInputs, parse_params
from rankedit.edits.storage import MatrixSize, Storage


def orthonormal(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


def planted(m: int, n: int, s: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dW, U, V) with dW = U diag(s) Vᵀ exactly known."""
    U, V = orthonormal(m, len(s), seed), orthonormal(n, len(s), seed + 1)
    return (U * torch.tensor(s, dtype=torch.float64)) @ V.T, U, V


def inputs(dw: torch.Tensor, w0: torch.Tensor | None = None, seed: int = 7) -> MatrixInputs:
    w0 = torch.zeros_like(dw) if w0 is None else w0
    return MatrixInputs(w0=w0, tuned=(w0 + dw,), seed=seed)


def run(method: str, x: MatrixInputs, **params):
    edit = EDITS[method]
    return edit.run(x, edit.params(**params))


# ---- rank-auto ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tau, k", [(0.6, 1), (0.9, 2), (0.95, 3), (1.0, 3)])
def test_energy_rank_is_the_smallest_k_reaching_tau(tau, k):
    dw, _, _ = planted(40, 30, [3.0, 2.0, 1.0])  # energies 9/14 = 0.643, 13/14 = 0.929, 1
    assert energy_rank(dw, tau) == k


def test_energy_one_keeps_the_update_s_whole_rank():
    """τ = 1: every direction the update has, although float sums of s_j² can reach ‖dW‖² a few values early."""
    gen = torch.Generator().manual_seed(0)
    U, S, Vh = torch.linalg.svd(torch.randn(160, 448, generator=gen).double(), full_matrices=False)
    S[-10:] = S[0] * 3e-4  # a faint tail, still above the rank tolerance (448 · eps32 · s1 = 5.3e-5 s1)
    full = ((U * S) @ Vh).float()
    s = torch.linalg.svdvals(full).double()  # the float32 values rank-k's exact SVD gives
    assert int((torch.cumsum(s * s, 0) >= float((full.double() ** 2).sum())).nonzero()[0]) + 1 < 160  # sums meet early
    assert energy_rank(full, 1.0) == 160
    low = torch.randn(160, 5, generator=gen) @ torch.randn(5, 448, generator=gen)
    assert energy_rank(low, 1.0) == 5


def test_energy_rank_of_a_big_matrix_from_its_values_alone(monkeypatch):
    """Above the exact-SVD size: one values-only decomposition, no top-k SVD, the same k."""
    import rankedit.edits.methods.rank_auto as ra

    dw, _, _ = planted(300, 280, [5.0, 4.0, 3.0, 2.0, 1.0])  # cumulative 25, 41, 50, 54, 55 of 55
    monkeypatch.setattr(ra, "edit_svd", lambda *a, **k: pytest.fail("a top-k SVD to choose k"))
    assert energy_rank(dw.float(), 0.98) == 4 and energy_rank(dw.float(), 0.99) == 5
    assert energy_rank(dw.float(), 0.45) == 1 and energy_rank(dw.float(), 0.46) == 2  # 25/55 = 0.4545
    noise = torch.randn(400, 300, generator=torch.Generator().manual_seed(1))  # a flat spectrum: k deep in the bulk
    s = torch.linalg.svdvals(noise.double())
    want = int((torch.cumsum(s * s, 0) >= 0.5 * float((noise.double() ** 2).sum())).nonzero()[0]) + 1
    assert energy_rank(noise, 0.5) == want and 50 < want < 250


@pytest.mark.parametrize("shape, ratio, k", [((64, 32), 0.1, 2), ((4, 6), 0.01, 1), ((8, 8), 1.0, 4)])
def test_ratio_rank_is_the_largest_k_within_the_matrix_share(shape, ratio, k):
    # 0.1·2048/96 = 2.13; the floor of one direction; 64/16 = 4
    assert ratio_rank(shape, ratio) == k


@pytest.mark.parametrize("rule", [{"energy": 0.9}, {"param_ratio": 0.05}])
def test_rank_auto_is_rank_k_at_the_chosen_rank_and_its_control_random_rank_k(rule):
    dw, _, _ = planted(64, 32, [3.0, 2.0, 1.0, 0.5])
    x = inputs(dw.float())
    k = 2 if "energy" in rule else 1  # energy: 13/14.25 = 0.912 ≥ 0.9 (9/14.25 is not); ratio: 0.05·2048/96 = 1.07
    for edit, same in (("rank-auto", "rank-k"), ("random-rank-auto", "random-rank-k")):
        got, want = run(edit, x, **rule), run(same, x, k=k)
        assert torch.equal(got.delta, want.delta) and got.stored_rank == k and got.rescale == want.rescale
    assert EDITS["rank-auto"].control_for(EDITS["rank-auto"].params(**rule))[0] == "random-rank-auto"


@pytest.mark.parametrize("shape", [(300, 420), (420, 300)])
def test_rank_auto_on_a_big_matrix_is_the_exact_rank_k_from_the_one_decomposition_that_chose_k(shape, monkeypatch):
    """Above the exact-SVD size the Gram eigendecomposition that chose k also gives the triplets: no second
    SVD, and the edit is c·U_k S_k V_kᵀ of numpy's float64 SVD, c = ‖dW‖ / ‖S_k‖; its control carries the
    same values and rescale on random directions."""
    import numpy as np

    import rankedit.edits.methods.rank_auto as ra
    import rankedit.edits.methods.rank_k as rk

    m, n = shape
    gen = torch.Generator().manual_seed(3)
    dw = (orthonormal(m, 12, 4) * torch.linspace(3.0, 1.0, 12, dtype=torch.float64)) @ orthonormal(n, 12, 5).T
    dw = (dw + 0.05 * torch.randn(m, n, generator=gen, dtype=torch.float64)).float()
    monkeypatch.setattr(rk, "edit_svd", lambda *a, **k: pytest.fail("a second SVD"))
    monkeypatch.setattr(ra, "edit_svd", lambda *a, **k: pytest.fail("a second SVD"))
    U, S, Vt = np.linalg.svd(dw.double().numpy(), full_matrices=False)
    for tau in (0.3, 0.8):
        k = int(np.searchsorted(np.cumsum(S * S) / float((dw.double() ** 2).sum()), tau)) + 1
        got = run("rank-auto", inputs(dw), energy=tau)
        c = float(np.linalg.norm(dw.double().numpy()) / np.linalg.norm(S[:k]))
        want = c * (U[:, :k] * S[:k]) @ Vt[:k]
        assert got.stored_rank == k and got.rescale == pytest.approx(c, rel=1e-6)
        assert np.linalg.norm(got.delta.double().numpy() - want) <= 1e-5 * np.linalg.norm(want)
        assert got.svd_error == 0.0 and got.svd_identifiable
        ctl = run("random-rank-auto", inputs(dw), energy=tau)
        assert ctl.stored_rank == k and ctl.rescale == pytest.approx(c, rel=1e-6)
        assert float(ctl.delta.double().norm()) == pytest.approx(float(np.linalg.norm(want)), rel=1e-5)


def test_rank_auto_cost_and_rules():
    edit = EDITS["rank-auto"]
    assert edit.storage(edit.params(energy=0.5), MatrixSize((64, 32), rank=3)) == Storage(288, 1152)
    assert edit.storage(edit.params(param_ratio=0.1), MatrixSize((64, 32))) == Storage(192, 768)
    with pytest.raises(ValueError, match="give the rank the build stored"):
        edit.storage(edit.params(energy=0.5), MatrixSize((64, 32)))
    for bad in ({}, {"energy": 0.5, "param_ratio": 0.1}):
        with pytest.raises(RankeditError, match="exactly one of --energy and --param-ratio"):
            parse_params(edit, bad)


# ---- sign ----------------------------------------------------------------------------------------
DW = torch.tensor([[1.0, -3.0], [0.0, 2.0]])  # |dW| sums: 6 over 4 entries; rows 4/2 and 2/2
SIGNS = torch.tensor([[1.0, -1.0], [1.0, 1.0]])  # an exact 0 gets +1


def test_sign_mean_scale_is_the_least_squares_fit_per_matrix_and_per_row():
    assert torch.equal(run("sign", inputs(DW)).delta, 1.5 * SIGNS)
    ls = float((DW * SIGNS).sum() / SIGNS.square().sum())  # <dW, S> / ‖S‖²
    assert ls == 1.5
    rows = torch.linalg.lstsq(SIGNS.reshape(2, 2, 1).double(), DW.reshape(2, 2, 1).double()).solution.flatten()
    assert rows.tolist() == pytest.approx([2.0, 1.0])  # per row: differs from the per-matrix 1.5
    assert torch.equal(run("sign", inputs(DW), per="row").delta, torch.tensor([[2.0], [1.0]]) * SIGNS)


def test_sign_norm_scale_moves_as_far_as_the_update():
    res = run("sign", inputs(DW), scale="norm")
    assert torch.allclose(res.delta, math.sqrt(14 / 4) * SIGNS) and res.delta.norm() == pytest.approx(DW.norm())
    assert res.rescale == pytest.approx(math.sqrt(3.5) / 1.5)
    row = run("sign", inputs(DW), per="row", scale="norm")
    assert torch.allclose(row.delta, torch.tensor([[math.sqrt(5.0)], [math.sqrt(2.0)]]) * SIGNS)


def test_random_sign_keeps_the_scales_and_draws_seeded_signs():
    dw = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
    ours, ctrl = run("sign", inputs(dw), per="row"), run("random-sign", inputs(dw), per="row")
    assert torch.equal(ctrl.delta.abs(), ours.delta.abs())
    assert 0.3 < float((torch.sign(ctrl.delta) == torch.sign(dw)).float().mean()) < 0.7
    assert torch.equal(ctrl.delta, run("random-sign", inputs(dw), per="row").delta)
    assert not torch.equal(ctrl.delta, run("random-sign", inputs(dw, seed=8), per="row").delta)


def test_sign_cost_is_bits_plus_scales():
    edit = EDITS["sign"]
    assert edit.storage(edit.params(), MatrixSize((10, 10))) == Storage(101, 13 + 4)  # the scale in float32
    assert edit.storage(edit.params(per="row"), MatrixSize((10, 10), itemsize=4)) == Storage(110, 13 + 40)


# ---- dare --------------------------------------------------------------------------------------------
def test_dare_drops_exactly_and_its_control_is_the_same_mask_unscaled():
    dw = torch.arange(1.0, 65.0).reshape(8, 8)
    x = inputs(dw)
    res = run("dare", x, drop=0.75)
    kept = res.delta != 0
    assert int(kept.sum()) == 16 and res.density == 0.25 and res.rescale == 4.0
    assert torch.equal(res.delta[kept], dw[kept] * 4.0)
    name, params = EDITS["dare"].control_for(EDITS["dare"].params(drop=0.75))
    assert name == "mask" and params.source == "random" and params.density == 0.25
    ctrl = EDITS[name].run(x, params)
    assert torch.equal(ctrl.delta * 4.0, res.delta)  # same entries, no rescale
    assert EDITS["dare"].storage(EDITS["dare"].params(drop=0.75), MatrixSize((8, 8))) == Storage(16, 32 + 8)


# ---- sub-rank-1 --------------------------------------------------------------------------------------
def test_sub_rank_1_on_the_update_s_own_pair():
    dw, U, V = planted(12, 9, [3.0, 1.0])
    x = inputs(dw.float())
    fit = run("sub-rank-1", x)
    assert torch.allclose(fit.delta.double(), 3.0 * torch.outer(U[:, 0], V[:, 0]), atol=1e-5) and fit.rescale == 1.0
    norm = run("sub-rank-1", x, scale="norm")
    assert norm.delta.norm() == pytest.approx(math.sqrt(10.0), rel=1e-5)
    assert norm.rescale == pytest.approx(math.sqrt(10.0) / 3.0, rel=1e-5)
    assert run("sub-rank-1", x, scale=-0.5).delta.norm() == pytest.approx(0.5, rel=1e-5)


def test_sub_rank_1_on_the_base_s_pair_fits_one_number():
    A, B = orthonormal(12, 2, 3), orthonormal(9, 2, 4)
    w0 = 5.0 * torch.outer(A[:, 0], B[:, 0]) + torch.outer(A[:, 1], B[:, 1])
    dw = -2.0 * torch.outer(A[:, 0], B[:, 0]) + 0.7 * torch.outer(A[:, 1], B[:, 1])
    res = run("sub-rank-1", inputs(dw.float(), w0.float()), direction="base")
    assert torch.allclose(res.delta.double(), -2.0 * torch.outer(A[:, 0], B[:, 0]), atol=1e-5)
    edit = EDITS["sub-rank-1"]
    assert edit.storage(edit.params(direction="base"), MatrixSize((12, 9))) == Storage(1, 4)  # a float32 scalar
    assert edit.storage(edit.params(), MatrixSize((12, 9))) == Storage(21, 84)  # float32 factors


def test_random_sub_rank_1_has_the_same_scalar_on_a_random_pair():
    dw, U, V = planted(12, 9, [3.0, 1.0])
    x = inputs(dw.float())
    ctrl = run("random-sub-rank-1", x)
    assert torch.linalg.matrix_rank(ctrl.delta) == 1 and ctrl.delta.norm() == pytest.approx(3.0, rel=1e-5)
    assert abs(float(U[:, 0].float() @ ctrl.delta @ V[:, 0].float())) < 2.5  # not the update's own direction
    assert EDITS["sub-rank-1"].control_for(EDITS["sub-rank-1"].params())[0] == "random-sub-rank-1"


# ---- the multiplier α ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method, params", [("rank-k", {"k": 2}), ("sign", {}), ("dare", {"drop": 0.5}),
                                            ("mask", {"source": "magnitude"})])
def test_multiplier_scales_any_edit_on_top_of_its_rescale(method, params):
    dw, _, _ = planted(16, 12, [3.0, 2.0, 1.0])
    x = inputs(dw.float())
    one, two = run(method, x, **params), run(method, x, multiplier=-2.0, **params)
    assert torch.equal(two.delta, one.delta * -2.0) and two.rescale == one.rescale * -2.0
    assert torch.equal(run(method, x, multiplier=1.0, **params).delta, one.delta)
    _, ctrl = EDITS[method].control_for(EDITS[method].params(multiplier=-2.0, **params)) or (None, None)
    assert ctrl is None or ctrl.multiplier == -2.0  # a control moves by the same α
