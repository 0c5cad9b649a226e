"""Checkpoint.get(check_finite=True)'s test of the exponent bits, on every float format."""

import pytest
import torch

from rankedit.files.checkpoint import all_finite


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_all_finite_finds_every_nan_and_inf(dtype):
    x = torch.randn(64, 48).to(dtype)
    x[0, 0], x[0, 1], x[0, 2] = torch.finfo(dtype).max, -torch.finfo(dtype).max, torch.finfo(dtype).tiny / 4
    assert all_finite(x) and all_finite(x.T)  # x.T: not contiguous, torch.isfinite's path
    for bad in (float("inf"), -float("inf"), float("nan")):
        y = x.clone()
        y[5, 7] = bad
        assert not all_finite(y) and not all_finite(y.T)
