"""Exact mathematical facts of the pure edit functions (no files, no mergekit)."""

import pytest
import torch

from rankedit.edits import EDITS, MatrixInputs
from rankedit.edits.methods.extrapolate import ExtrapolateParams, line_coefficients
from rankedit.core.masks import top_fraction_mask as top_fraction
from rankedit.edits.methods.mask import MaskParams, bf16_update_mask, random_mask
from rankedit.edits.methods.off_principal import PrincipalParams, off_principal_delta
from rankedit.edits.methods.rank_k import RankKParams, rank_k_factors
from rankedit.edits.methods.scale import ScaleParams
from rankedit.core.linalg import low_rank_product, top_k_svd

torch.manual_seed(0)


def _pair(m=48, n=40, eps=1e-2, seed=0):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(m, n, generator=g, dtype=torch.float64)
    return w0, w0 + eps * torch.randn(m, n, generator=g, dtype=torch.float64)


def _run(name, x, **params):
    e = EDITS[name]
    return e.fn(x, e.params(**params))


def test_rank_k_full_rank_without_rescale_reproduces_tuned():
    w0, w1 = _pair()
    res = _run("rank-k", MatrixInputs(w0, (w1,)), k=40, scale="none")
    torch.testing.assert_close(w0 + res.delta, w1, rtol=0, atol=1e-12)
    assert res.rank_kept == 40


def test_rank_1_of_a_rank_1_delta_reproduces_it_with_either_scale():
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(600, 700, generator=g, dtype=torch.float64)  # > 512: the randomized SVD path
    d = torch.outer(torch.randn(600, generator=g, dtype=torch.float64), torch.randn(700, generator=g, dtype=torch.float64))
    for scale in ("none", "norm"):
        res = _run("rank-k", MatrixInputs(w0, (w0 + d,)), k=1, scale=scale)
        torch.testing.assert_close(res.delta, d, rtol=0, atol=1e-9)
        assert res.rank_kept == 1


def test_rank_k_norm_rescale_matches_update_norm_and_float_scale():
    w0, w1 = _pair()
    dw = w1 - w0
    res = _run("rank-k", MatrixInputs(w0, (w1,)), k=3)
    assert float(res.delta.norm()) == pytest.approx(float(dw.norm()), rel=1e-10)
    s = torch.linalg.svdvals(dw)[:3]
    half = _run("rank-k", MatrixInputs(w0, (w1,)), k=3, scale=0.5)
    assert float(half.delta.norm()) == pytest.approx(0.5 * float(s.norm()), rel=1e-8)
    B, A, _ = rank_k_factors(dw, 3, "none")
    assert B.shape == (48, 3) and A.shape == (3, 40)


def test_random_rank_k_has_the_same_norm_but_other_directions():
    w0, w1 = _pair()
    x = MatrixInputs(w0, (w1,), seed=7)
    rk, rnd = _run("rank-k", x, k=2), _run("random-rank-k", x, k=2)
    assert float(rnd.delta.norm()) == pytest.approx(float(rk.delta.norm()), rel=1e-10)
    assert torch.linalg.matrix_rank(rnd.delta) == 2
    u_rk = top_k_svd(rk.delta, 2, method="exact").U
    u_rnd = top_k_svd(rnd.delta, 2, method="exact").U
    assert float(torch.linalg.svdvals(u_rk.T @ u_rnd).max()) < 0.9  # not the same subspace
    again = _run("random-rank-k", MatrixInputs(w0, (w1,), seed=7), k=2)
    assert torch.equal(again.delta, rnd.delta)  # seeded


def test_off_principal_is_orthogonal_to_w0_top_k_and_complements_principal_only():
    w0, w1 = _pair(64, 56)
    x = MatrixInputs(w0, (w1,))
    off = _run("off-principal", x, k=8).delta
    only = _run("principal-only", x, k=8).delta
    svd = top_k_svd(w0, 8, method="exact")
    assert float((svd.U.T @ off).norm()) < 1e-10 * float(off.norm())
    assert float((off @ svd.V).norm()) < 1e-10 * float(off.norm())
    torch.testing.assert_close(off + only, w1 - w0, rtol=0, atol=1e-12)
    assert float(off_principal_delta(w0, w1 - w0, 8).norm()) < float((w1 - w0).norm())


def test_mask_all_ones_reproduces_tuned_and_bf16_mask_counts_changes():
    w0, w1 = _pair()
    full = _run("mask", MatrixInputs(w0, (w1,)), source="magnitude", density=1.0)
    torch.testing.assert_close(w0 + full.delta, w1, rtol=0, atol=0)
    assert full.density == 1.0
    w0b = w0.to(torch.bfloat16).double()
    w1b = w0b.clone()
    w1b[:5] = (w0b[:5] * 1.5).to(torch.bfloat16).double()  # change 5 rows only
    m = bf16_update_mask(w0b, w1b)
    assert int(m.sum()) == int((w0b[:5] != 0).sum()) and not m[5:].any()
    res = _run("mask", MatrixInputs(w0b, (w1b,)), source="bf16")
    torch.testing.assert_close(w0b + res.delta, w1b, rtol=0, atol=0)


@pytest.mark.parametrize("density", [0.01, 0.1, 0.37, 0.9])
def test_random_mask_hits_its_density(density):
    m = random_mask((300, 170), density, seed=3)
    assert abs(float(m.float().mean()) - density) < 0.01
    assert torch.equal(m, random_mask((300, 170), density, seed=3))
    assert not torch.equal(m, random_mask((300, 170), density, seed=4))


def test_random_mask_defaults_to_the_bf16_density_and_other_sources():
    w0, _ = _pair(100, 80)
    w0 = w0.to(torch.bfloat16).double()
    g = torch.Generator().manual_seed(11)
    w1 = w0 + 1e-3 * torch.randn(w0.shape, generator=g, dtype=w0.dtype)  # many entries survive bf16 rounding
    x = MatrixInputs(w0, (w1,), seed=1)
    bf16 = _run("mask", x, source="bf16").density
    rnd = _run("mask", x, source="random").density
    assert 0.05 < bf16 < 0.95 and abs(rnd - bf16) < 0.01
    assert _run("mask", x, source="principal").density == 0.5
    low = _run("mask", x, source="low", density=0.25)
    kept = low.delta != 0
    assert low.density == 0.25 and float(w0.abs()[kept].max()) <= float(w0.abs()[~kept].min())
    mag = _run("mask", x, source="magnitude", density=0.1)
    assert mag.density == 0.1
    other = w0 + torch.where(torch.rand(w0.shape, generator=g, dtype=w0.dtype) < 0.5, 0.1, 0.0)
    fr = _run("mask", MatrixInputs(w0, (w1,), other=other), source="from")
    torch.testing.assert_close(fr.delta != 0, bf16_update_mask(w0, other) & ((w1 - w0) != 0))
    assert top_fraction(torch.tensor([3.0, 1.0, 2.0, 1.0]), 0.5).tolist() == [True, False, True, False]


def test_extrapolate_linear_recovers_an_exactly_linear_trajectory():
    w0, w1 = _pair()
    d = w1 - w0
    steps = (10, 20, 40)
    tuned = tuple(w0 + t * d for t in steps)
    res = _run("extrapolate", MatrixInputs(w0, tuned, steps=steps), mode="linear", steps=steps, target_step=100)
    torch.testing.assert_close(res.delta, 100 * d, rtol=1e-12, atol=1e-12)
    assert sum(line_coefficients(steps, 100)) == pytest.approx(1.0)


def test_extrapolate_rank1_recovers_a_linear_rank1_trajectory_despite_sign_flips():
    g = torch.Generator().manual_seed(2)
    w0 = torch.randn(30, 20, generator=g, dtype=torch.float64)
    u, v = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(20, generator=g, dtype=torch.float64)
    steps = (1, 2, 3, 5)
    tuned = tuple(w0 + t * torch.outer(u, v) for t in steps)
    res = _run("extrapolate", MatrixInputs(w0, tuned, steps=steps), mode="rank1", steps=steps, target_step=9)
    torch.testing.assert_close(res.delta, 9 * torch.outer(u, v), rtol=1e-9, atol=1e-9)
    assert res.rank_kept == 1


def test_extrapolate_last_is_the_window_end_as_it_is():
    w0, w1 = _pair()
    mid = w0 + 0.5 * (w1 - w0)
    res = _run("extrapolate", MatrixInputs(w0, (mid, w1), steps=(1, 2)), mode="last", steps=(1, 2))
    assert torch.equal(w0 + res.delta, w1)


def test_extrapolate_expo_and_parameter_checks():
    w0, w1 = _pair()
    ref = w0 + 0.5 * (w1 - w0)
    steps = (100, 200)
    res = _run("extrapolate", MatrixInputs(w0, (ref, w1), steps=steps), mode="expo", steps=steps, target_step=300)
    torch.testing.assert_close(w0 + res.delta, w1 + 1.0 * (w1 - ref))  # alpha = (300-200)/(200-100)
    res2 = _run("extrapolate", MatrixInputs(w0, (ref, w1), steps=steps), mode="expo", steps=steps, alpha=0.3)
    torch.testing.assert_close(w0 + res2.delta, w1 + 0.3 * (w1 - ref))
    for bad in [dict(steps=(5,), target_step=9), dict(steps=(2, 1), target_step=9), dict(steps=(1, 1), target_step=9),
                dict(steps=(1, 2)), dict(steps=(1, 2), mode="expo")]:
        with pytest.raises(ValueError):
            ExtrapolateParams(**bad)


def test_scale_and_schema_validation():
    w0, w1 = _pair()
    res = _run("scale", MatrixInputs(w0, (w1,)), factor=1.0)
    torch.testing.assert_close(w0 + res.delta, w1, rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        RankKParams(k=0)
    with pytest.raises(ValueError):
        MaskParams(source="nope")
    with pytest.raises(ValueError):
        MaskParams(density=1.5)
    with pytest.raises(ValueError):
        PrincipalParams(k=3, bogus=1)
    assert ScaleParams(factor=2).factor == 2.0
    one_run = {n for n, e in EDITS.items() if e.inputs != "runs"}
    assert one_run == {"rank-k", "random-rank-k", "off-principal", "principal-only", "mask", "extrapolate", "scale",
                       "propensity-only", "lability-only",
                       "rank-auto", "random-rank-auto", "sign", "random-sign", "dare", "sub-rank-1",
                       "random-sub-rank-1", "expert-topn", "random-expert-topn", "router-only", "experts-only"}
    # the merges of several runs (rankedit merge), each with its control where it has one
    assert set(EDITS) - one_run == {"task-arithmetic", "ties", "dare-ties", "rank-k-sum", "random-rank-k-sum",
                                    "orthogonal", "random-orthogonal", "disjoint-mask", "random-disjoint-mask"}


def test_low_rank_product_has_the_gemm_bits():
    gen = torch.Generator().manual_seed(3)
    for m, n in ((1536, 4224), (4224, 1536), (7, 5)):
        B, A = torch.randn(m, 1, generator=gen) * 1e-3, torch.randn(1, n, generator=gen) * 3.7
        assert torch.equal(low_rank_product(B, A), B @ A)  # k = 1: one product per entry, whichever way
    B, A = torch.randn(40, 3, generator=gen), torch.randn(3, 30, generator=gen)
    assert torch.equal(low_rank_product(B, A), B @ A)
