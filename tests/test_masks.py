"""One implementation of each mask (rankedit.core.masks): the tie rule, and the analysis and the edits agreeing."""

import pytest
import torch

from rankedit.analysis import geometry as g
from rankedit.core import masks
from rankedit.core.svd import EXACT_MAX_DIM
from rankedit.edits import MatrixInputs
from rankedit.edits.methods.mask import MaskParams, make_mask, mask


def reference(scores: torch.Tensor, frac: float, largest: bool) -> torch.Tensor:
    """The tie rule spelled out: a stable sort, then the first round(frac * numel) entries."""
    flat = scores.reshape(-1)
    order = torch.argsort(flat, descending=largest, stable=True)
    out = torch.zeros(flat.numel(), dtype=torch.bool)
    out[order[: round(frac * flat.numel())]] = True
    return out.reshape(scores.shape)


def test_ties_go_to_the_lowest_flat_indices():
    s = torch.tensor([[3.0, 1.0, 3.0], [3.0, 2.0, 1.0]])
    assert masks.top_fraction_mask(s, 1 / 3).tolist() == [[True, False, True], [False, False, False]]
    assert masks.top_fraction_mask(s, 0.5).tolist() == [[True, False, True], [True, False, False]]
    assert masks.top_fraction_mask(s, 1 / 6, largest=False).tolist() == [[False, True, False], [False, False, False]]
    assert masks.top_fraction_mask(s, 0.5, largest=False).tolist() == [[False, True, False], [False, True, True]]
    assert masks.top_fraction_cut(s, 1 / 3) == masks.Cut(3.0, 2)  # two of the three 3s
    # signed zeros compare equal, so they tie (by index) too
    z = torch.tensor([0.0, -0.0, 0.0, -0.0])
    assert masks.top_fraction_mask(z, 0.5).tolist() == [True, True, False, False]
    assert masks.top_fraction_mask(z, 0.25, largest=False).tolist() == [True, False, False, False]


@pytest.mark.parametrize("largest", [True, False])
def test_every_cut_mask_equals_a_stable_sort_on_heavily_tied_scores(largest):
    gen = torch.Generator().manual_seed(5)
    bf = torch.randn(96, 80, generator=gen).bfloat16().float()  # bf16 values: many ties
    few = torch.randint(0, 4, (50, 30), generator=gen).float()  # four values only
    for scores in (bf, bf.abs(), few):
        for frac in (0.0, 0.01, 0.1, 1 / 3, 0.5, 0.9, 1.0):
            assert torch.equal(masks.top_fraction_mask(scores, frac, largest), reference(scores, frac, largest))
    w0 = bf.bfloat16()  # the low mask reads bf16 weights as they are stored
    assert torch.equal(masks.low_mask(w0, 0.3), reference(w0.float().abs(), 0.3, largest=False))


def _tied(shape, seed):
    """A W0 whose rank-k reconstruction has four distinct magnitudes only (in exact arithmetic), and whose
    top half cuts through one of them: which tied entries M_p keeps is decided by the tie rule, and by the
    rounding of the decomposition, so two decompositions of W0 give two masks."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randint(0, 2, (shape[0],), generator=gen).float() * 2 - 1
    v = torch.randint(0, 2, (shape[1],), generator=gen).float() * 2 - 1
    w0 = torch.outer(u, v)
    w0[:, : int(shape[1] * 0.6)] *= 2
    w0[: shape[0] // 3] *= 3
    w1 = w0 + 1e-2 * torch.randn(shape, generator=gen)
    return w0, w1


@pytest.mark.parametrize("shape,k", [((48, 40), 2), ((64, 176), 8), ((320, 520), 4), ((520, 320), 16)])
def test_overlap_principal_scores_the_mask_the_principal_edit_applies(shape, k):
    w0, w1 = _tied(shape, seed=shape[0])
    if min(shape) > EXACT_MAX_DIM:
        assert k <= min(shape) // 8  # sizes where edit_svd would take its randomized path
    parts = g.base_parts(w0, k, 0.5)
    scores = masks.principal_scores(parts.svd)
    analysed = masks.cut_mask(scores, parts.principal)
    assert masks.count(scores == parts.principal.threshold) > parts.principal.ties > 0  # the tie rule decides

    x = MatrixInputs(w0=w0, tuned=(w1,), seed=3)
    p = MaskParams(source="principal", density=0.5, k=k)
    applied = make_mask(x, p)
    assert torch.equal(applied, analysed)
    assert int(applied.sum()) == w0.numel() // 2
    dw = w1 - w0
    assert torch.equal(mask(x, p).delta, dw * applied)

    upd = masks.bf16_update_mask(w0, w1)
    assert g.matrix_metrics(w0, w1, k=k, alpha=0.5)["overlap_principal"] == g.overlap(upd, applied)


def test_the_principal_edit_states_exact_decomposition_facts():
    w0, w1 = _tied((320, 520), seed=1)  # rank 1: s_1 > s_2 = 0 is a clean gap at k = 1, none at k = 2
    x = MatrixInputs(w0=w0, tuned=(w1,))
    r1 = mask(x, MaskParams(source="principal", k=1))
    assert (r1.svd_error, r1.svd_identifiable) == (0.0, True)
    r2 = mask(x, MaskParams(source="principal", k=2))
    assert (r2.svd_error, r2.svd_identifiable) == (0.0, False)


def test_kth_smallest_above_the_window_size_is_the_sorted_value(monkeypatch):
    """Large tensors go through the sampled window; every way out of it (the answer inside, a
    window of one tied value, a crowded window, a misleading sample) gives the sorted value."""
    gen = torch.Generator().manual_seed(3)
    n = masks.WINDOW_MIN + 12345
    x = torch.randn(n, generator=gen)
    cases = {
        "normal": x, "bf16 |x|": x.bfloat16().float().abs(), "four values": torch.randint(0, 4, (n,), generator=gen).float(),
        "mostly zeros": torch.cat([torch.zeros(n - 700), torch.rand(700, generator=gen)]),
        "bf16 tensor": x.bfloat16(), "uniform": torch.rand(n, generator=gen),
    }
    ways = []
    real = masks._kth_in_window
    monkeypatch.setattr(masks, "_kth_in_window", lambda f, p: ways.append(real(f, p) is not None) or real(f, p))
    for name, v in cases.items():
        s = v.float().sort().values
        for pos in {0, 1, n // 10, n // 2, n - 700, n - 2, n - 1, *torch.randint(0, n, (6,), generator=gen).tolist()}:
            assert masks.kth_smallest(v, pos) == float(s[pos]), (name, pos)
    assert any(ways) and not all(ways)  # both the window and the fallback were taken

    # a sample that lands far from the answer (all of it drawn from the bottom) falls back, still exact
    v = torch.rand(n, generator=gen)
    monkeypatch.setattr(masks.torch, "randint", lambda lo, hi, size, generator=None: torch.arange(size[0]) % 50)
    s = v.sort().values
    assert masks.kth_smallest(v, n - 3) == float(s[n - 3])
