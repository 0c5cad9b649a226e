"""all_finite (min and max of the tensor, NaN-propagating) finds every NaN and Inf, wherever it sits:
in the vectorised body of the reduction, its tail, a thread's share, or a non-contiguous view."""

import pytest
import torch

from rankedit.core.threads import torch_threads
from rankedit.files.checkpoint import all_finite

DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_finds_every_nan_and_inf(dtype):
    x = torch.randn(64, 48).to(dtype)
    x[0, 0], x[0, 1], x[0, 2] = torch.finfo(dtype).max, -torch.finfo(dtype).max, torch.finfo(dtype).tiny / 4
    assert all_finite(x) and all_finite(x.T)  # x.T: not contiguous
    for bad in (float("inf"), -float("inf"), float("nan"), -float("nan")):
        y = x.clone()
        y[5, 7] = bad
        assert not all_finite(y) and not all_finite(y.T)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_bad_entry_is_found_at_every_position(dtype, threads):
    with torch_threads(threads):
        for n in [*range(1, 70), 255, 256, 257, 4099]:
            x = torch.randn(n).to(dtype)
            assert all_finite(x)
            positions = range(n) if n < 70 else (0, 1, n // 3, n // 2, n - 2, n - 1)
            for p in positions:
                for bad in (float("nan"), float("inf"), -float("inf")):
                    y = x.clone()
                    y[p] = bad
                    assert not all_finite(y), (n, p, bad)


def test_nan_payloads_and_edge_cases():
    x = torch.zeros(1000, dtype=torch.bfloat16)
    for bits in (0x7F81, 0x7FFF, -1, -127):  # quiet and signalling NaNs, positive and negative
        y = x.clone()
        y.view(torch.int16)[611] = bits
        assert not all_finite(y), bits
    assert all_finite(torch.empty(0, dtype=torch.bfloat16))
    big = torch.zeros(5_000_003, dtype=torch.bfloat16)
    big[-1] = float("nan")
    assert not all_finite(big)
    f8 = torch.tensor([1.0, float("nan")]).to(torch.float8_e4m3fn)
    assert not all_finite(f8) and all_finite(f8[:1])
