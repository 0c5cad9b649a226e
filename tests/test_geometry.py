"""Exact facts about the measurements on constructed matrices."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from rankedit.analysis import geometry as g
from rankedit.core.linalg import gram_svd, numerical_rank, top_k_svd
from rankedit.core.masks import bf16_unchanged


def orthonormal(m, r, seed):
    q, _ = torch.linalg.qr(torch.randn(m, r, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_sparsity_bf16_counts_exactly_the_entries_that_change_in_bf16():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(64, 48, generator=gen).to(torch.bfloat16).float()  # bf16-representable base
    big = torch.zeros(64 * 48, dtype=torch.bool)
    big[torch.randperm(64 * 48, generator=gen)[:700]] = True
    tiny = torch.zeros_like(big)
    tiny[torch.randperm(64 * 48, generator=gen)[:900]] = True
    tiny &= ~big
    big, tiny = big.view(64, 48), tiny.view(64, 48)
    w1 = w0.clone()
    w1[big] = w0[big] + 0.05 * w0[big].abs() + 0.01  # many bf16 ulps away: visible in bf16
    w1[tiny] = w0[tiny] * (1 + 2e-4)  # far below bf16's 2^-8 relative step: rounds back
    assert not torch.equal(w0, w1)
    assert g.sparsity_bf16(w0, w1) == 1 - 700 / (64 * 48)
    # the fp32 atol rule sees the sub-resolution changes as well
    changed = (w1 - w0).abs() > 1e-5
    assert g.sparsity_atol(w0, w1, atol=1e-5) == pytest.approx(1 - changed.float().mean().item())
    assert torch.equal(g.bf16_update_mask(w0, w1), big)


def test_bf16_sparsity_matches_papers_relative_test_on_bf16_rounded_updates():
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(200, 100, generator=gen).to(torch.bfloat16).float()
    w1 = (w0 + 1e-3 * torch.randn(200, 100, generator=gen)).to(torch.bfloat16).float()
    rel = (w1 - w0).abs() <= 1e-3 * torch.maximum(w0.abs(), w1.abs())
    assert g.sparsity_bf16(w0, w1) == int(rel.sum()) / rel.numel()


def test_bf16_sparsity_is_not_the_relative_test_for_float32_checkpoints():
    """Not stored in bf16, the cast rounds both sides: a change below half a bf16 step (up to ~0.4% relative,
    above the paper's 1e-3) can round back to the same bf16 value and count as unchanged, and a change far
    below 1e-3 that straddles a rounding boundary counts as changed. docs/science.md says so."""
    gen = torch.Generator().manual_seed(2)
    w0 = torch.randn(200, 100, generator=gen)  # float32 values, not bf16-representable
    w1 = w0 * (1 + 2e-3 * torch.randn(200, 100, generator=gen))
    rel = (w1 - w0).abs() <= 1e-3 * torch.maximum(w0.abs(), w1.abs())
    bf16 = g.sparsity_bf16(w0, w1)
    paper = int(rel.sum()) / rel.numel()
    assert abs(bf16 - paper) > 0.1
    unchanged = bf16_unchanged(w0, w1)
    assert bool((unchanged & ~rel).any()) and bool((~unchanged & rel).any())  # wrong both ways


def test_rank_and_energies_of_a_constructed_rank_r_delta():
    m, n, r = 80, 60, 5
    s = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    dw = (orthonormal(m, r, 1) * s) @ orthonormal(n, r, 2).T
    w0 = torch.randn(m, n, generator=torch.Generator().manual_seed(3))
    w1 = w0 + dw.float()
    out = g.matrix_metrics(w0, w1)
    assert out["rank"] == r
    assert out["rank_fraction"] == r / min(m, n)
    energy = (s**2).sum().item()
    assert out["rank1_energy"] == pytest.approx(25.0 / energy, rel=1e-4)
    assert out["stable_rank"] == pytest.approx(energy / 25.0, rel=1e-4)
    p = s / s.sum()
    assert out["effective_rank"] == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-3)
    # numerical_rank agrees with torch.linalg.matrix_rank's default tolerance
    d32 = dw.float()
    assert numerical_rank(torch.linalg.svdvals(d32), d32.shape) == int(torch.linalg.matrix_rank(d32))


def test_rank1_delta_has_all_energy_in_one_direction():
    u, v = torch.randn(30, 1), torch.randn(1, 20)
    s = torch.linalg.svdvals(u @ v)
    assert g.rank1_energy(s) == pytest.approx(1.0, abs=1e-6)
    assert g.stable_rank(s) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("theta_deg", [0.5, 3.0, 20.0, 60.0])
def test_rotating_top_left_singular_vectors_gives_that_angle(theta_deg):
    m, n, k = 96, 64, 8
    U, V = orthonormal(m, n, 4), orthonormal(n, n, 5)
    s = torch.linspace(10, 1, n, dtype=torch.float64)  # well separated spectrum
    w0 = (U * s) @ V.T
    th = math.radians(theta_deg)
    U1 = U.clone()
    # rotate u_1 towards u_{k+1}: the top-k span turns by exactly theta
    U1[:, 0] = math.cos(th) * U[:, 0] + math.sin(th) * U[:, k]
    U1[:, k] = -math.sin(th) * U[:, 0] + math.cos(th) * U[:, k]
    w1 = (U1 * s) @ V.T
    out = g.matrix_metrics(w0, w1, k=k)
    assert out["k"] == k
    assert out["angle_left_deg"] == pytest.approx(theta_deg, abs=5e-3)
    assert out["angle_right_deg"] == pytest.approx(0.0, abs=5e-3)  # float32 SVD resolution
    ref = np.degrees(scipy.linalg.subspace_angles(U[:, :k].numpy(), U1[:, :k].numpy()))
    ours = g.principal_angles_deg(U[:, :k], U1[:, :k]).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert out["spectral_shift"] == pytest.approx(0.0, abs=1e-5)  # rotation keeps the spectrum


def test_k_is_capped_at_a_quarter_of_the_smaller_dimension():
    assert g.default_k((64, 20)) == 5
    assert g.default_k((4096, 4096)) == 16
    assert g.default_k((3, 3)) == 1


@pytest.mark.parametrize("c", [0.5, 1.01, 2.0])
def test_scaling_the_spectrum_gives_known_spectral_shift(c):
    w0 = torch.randn(50, 40, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert g.spectral_shift(torch.linalg.svdvals(w0), torch.linalg.svdvals(c * w0)) == pytest.approx(abs(c - 1), rel=1e-9)
    s0 = torch.tensor([3.0, 2.0, 1.0])
    s1 = torch.tensor([3.0, 2.0, 2.0])  # only s_3 moves, by 1
    assert g.spectral_shift(s0, s1) == pytest.approx(1 / math.sqrt(14))


def test_overlaps_on_constructed_masks():
    w0 = torch.arange(1, 101, dtype=torch.float32).view(10, 10)  # |w0| ranks entries 1..100
    low = g.low_mask(w0, 0.5)
    assert int(low.sum()) == 50 and bool(low.view(-1)[:50].all())
    upd = torch.zeros(100, dtype=torch.bool)
    upd[[0, 1, 2, 97, 98, 99]] = True  # three low entries, three large entries
    upd = upd.view(10, 10)
    assert g.overlap(upd, low) == 0.5
    pm = g.principal_mask(w0, 0.5)  # w0 is its own best reconstruction here
    assert g.overlap(upd, pm) == 0.5
    assert math.isnan(g.overlap(torch.zeros_like(upd), pm))
    assert int(g.top_fraction_mask(torch.randn(37, 11), 0.1).sum()) == round(0.1 * 37 * 11)


def test_overlap_principal_uses_the_rank_k_reconstruction():
    m = n = 64
    U, V = orthonormal(m, m, 7), orthonormal(n, n, 8)
    s = torch.cat([torch.full((4,), 50.0), torch.full((60,), 0.1)]).double()
    w0 = ((U * s) @ V.T).float()
    w1 = w0.clone()
    w0_k = (U[:, :4] * s[:4]) @ V[:, :4].T
    top = g.top_fraction_mask(w0_k.abs().float(), 0.5)
    w1[top] += 1.0  # update exactly the principal entries
    out = g.matrix_metrics(w0, w1, k=4, alpha=0.5)
    assert out["overlap_principal"] == 1.0
    assert out["overlap_principal_topq"] == 1.0


def test_jaccard_and_independent_expectation():
    a = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0, 1, 0, 0, 0], dtype=torch.bool)
    j, e = g.jaccard(a, b)
    assert j == 2 / 4
    pa = pb = 3 / 8
    assert e == pytest.approx(pa * pb / (pa + pb - pa * pb))


def test_rel_update_norm():
    w0 = torch.ones(4, 4)
    assert g.rel_update_norm(w0, w0 * 1.1) == pytest.approx(0.1)


def test_randomized_top_k_matches_exact_on_decaying_spectrum():
    m, n, k = 1200, 700, 16
    U, V = orthonormal(m, n, 9), orthonormal(n, n, 10)
    s = torch.logspace(1, -3, n, dtype=torch.float64)
    a = ((U * s) @ V.T).float()
    r = top_k_svd(a, k, method="randomized", seed=0)
    e = top_k_svd(a, k, method="exact")
    torch.testing.assert_close(r.S, e.S, rtol=1e-5, atol=1e-5)
    assert g.principal_angles_deg(r.U, e.U).max() < 0.01
    # deterministic for a seed
    r2 = top_k_svd(a, k, method="randomized", seed=0)
    assert torch.equal(r.U, r2.U)


def test_zero_update_gives_undefined_not_numbers():
    w = torch.randn(20, 20)
    out = g.matrix_metrics(w, w.clone())
    assert out["sparsity_bf16"] == 1.0 and out["rank"] == 0
    assert math.isnan(out["rank1_energy"]) and math.isnan(out["overlap_principal"])


@pytest.mark.parametrize("shape", [(40, 120), (120, 40), (64, 64)])
def test_gram_svd_matches_lapack_svd(shape):
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(*shape, generator=gen, dtype=torch.float64) @ torch.diag(torch.logspace(0, -3, shape[1], dtype=torch.float64))
    s_ref = torch.linalg.svdvals(A)
    s, svd = gram_svd(A, 5)
    assert torch.allclose(s, s_ref, rtol=0, atol=1e-7 * float(s_ref[0]))
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    # the same triplets up to sign: |u_i . u_i'| = 1, and A v = s u
    assert torch.allclose((svd.U * U[:, :5]).sum(0).abs(), torch.ones(5, dtype=torch.float64), atol=1e-8)
    assert torch.allclose((svd.V * Vh[:5].T).sum(0).abs(), torch.ones(5, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(A @ svd.V, svd.U * svd.S, atol=1e-10)


def test_gram_svd_of_rank_deficient_and_zero_matrices():
    gen = torch.Generator().manual_seed(4)
    A = torch.randn(30, 3, generator=gen) @ torch.randn(3, 80, generator=gen)
    s, _ = gram_svd(A)
    assert numerical_rank(s, A.shape) == 3 == int(torch.linalg.matrix_rank(A))
    s, svd = gram_svd(torch.zeros(6, 9), 2)
    assert float(s.abs().max()) == 0.0 and bool(torch.isfinite(svd.U).all()) and float(svd.V.abs().max()) == 0.0
    with pytest.raises(ValueError, match="outside"):
        gram_svd(A, 31)


def test_top_fraction_masks_break_ties_by_index():
    s = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])
    assert g.top_fraction_mask(s, 0.4).tolist() == [False, True, True, False, False]
    assert g.top_fraction_cut(s, 0.4) == g.Cut(2.0, 2)
    assert g.top_fraction_mask(s, 0.4, largest=False).tolist() == [True, False, False, False, True]
    assert g.top_fraction_mask(s, 0.8).tolist() == [True, True, True, True, False]
    assert not g.top_fraction_mask(s, 0.0).any() and g.top_fraction_mask(s, 1.0).all()
    bf = torch.randn(64, 48).bfloat16().float().abs()  # bf16 values: many ties
    for frac in (0.1, 0.5, 0.9):
        m = g.top_fraction_mask(bf, frac)
        assert int(m.sum()) == round(frac * bf.numel())
        assert float(bf[m].min()) >= float(bf[~m].max())


def test_kth_smallest_is_the_sorted_value():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5000, generator=gen)
    cases = [x, x.bfloat16().float(), x.abs(), torch.cat([torch.zeros(3000), -torch.zeros(500), x[:1500]]),
             torch.full((100,), 2.5), torch.tensor([float("inf"), -float("inf"), 1.0, -3.0]), x.double()]
    for v in cases:
        s = v.sort().values
        for pos in {0, 1, v.numel() // 10, v.numel() // 2, v.numel() - 2, v.numel() - 1}:
            assert g.kth_smallest(v, pos) == float(s[pos]), (pos, v[:5])
