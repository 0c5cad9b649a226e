"""Retention across runs: the hierarchical bootstrap and the t-interval on data with known answers."""

import math

import numpy as np
import pytest

from rankedit.scoring import across_runs as ar
from rankedit.scoring.retention import Interval, retention


def _run(r: float, n: int = 40):
    """A run whose every problem has tuned gain 1 and edit gain r: no evaluation noise, R = r exactly."""
    base = np.zeros(n)
    return base, base + 1.0, base + r


def test_identical_runs_without_evaluation_noise_give_a_zero_width_interval():
    res = ar.hierarchical_retention([_run(0.5), _run(0.5), _run(0.5)], n_boot=500)
    assert res.defined and res.mean == pytest.approx(0.5)
    assert res.ci_low == pytest.approx(0.5) and res.ci_high == pytest.approx(0.5)
    assert res.t_low == pytest.approx(0.5) and res.t_high == pytest.approx(0.5)


def test_run_to_run_variation_alone_gives_the_bootstrap_of_the_run_mean():
    # Means of 3 draws with replacement from {0.2, 0.5, 0.8}: P(all 0.2) = 1/27 = 3.7% > 2.5%,
    # so the 2.5th and 97.5th percentiles are exactly 0.2 and 0.8.
    res = ar.hierarchical_retention([_run(0.2), _run(0.5), _run(0.8)], n_boot=4000, seed=3)
    assert res.mean == pytest.approx(0.5)
    assert res.per_run == pytest.approx((0.2, 0.5, 0.8))
    assert res.ci_low == pytest.approx(0.2) and res.ci_high == pytest.approx(0.8)
    # t-interval: 0.5 ± t(0.975, 2) · 0.3 / √3 = 0.5 ± 4.3027 · 0.17321
    half = 4.302652729911275 * 0.3 / math.sqrt(3)
    assert res.t_low == pytest.approx(0.5 - half, abs=1e-9) and res.t_high == pytest.approx(0.5 + half, abs=1e-9)


def test_evaluation_noise_widens_the_interval_beyond_the_per_run_spread():
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(3):
        b = rng.integers(0, 2, 300).astype(float)
        t = np.maximum(b, rng.integers(0, 2, 300))  # gains on about a quarter of problems
        e = np.where(rng.random(300) < 0.5, t, b)  # keeps about half of them
        runs.append((b, t, e))
    res = ar.hierarchical_retention(runs, n_boot=2000)
    assert res.defined and min(res.per_run) > 0.2 and max(res.per_run) < 0.8
    assert res.ci_low < min(res.per_run) and res.ci_high > max(res.per_run)
    assert ar.hierarchical_retention(runs, n_boot=2000) == res  # seeded


def test_one_run_interval_is_the_mixture_of_the_runs():
    # Without evaluation noise each replicate's value is its drawn run's R: a mixture with mass 1/3 at
    # each of 0.2, 0.5, 0.8, so the 2.5th and 97.5th percentiles are exactly 0.2 and 0.8.
    res = ar.hierarchical_retention([_run(0.2), _run(0.5), _run(0.8)], n_boot=4000, seed=3)
    assert (res.one_low, res.one_high) == pytest.approx((0.2, 0.8))
    same = ar.hierarchical_retention([_run(0.5)] * 3, n_boot=500)
    assert (same.one_low, same.one_high) == pytest.approx((0.5, 0.5))


def test_one_run_interval_holds_a_single_outlying_run_the_mean_interval_does_not():
    # Nine runs at 0.5 and one at 0.9: one run in ten lands at 0.9 (10% > 2.5%), so the one-run
    # interval is exactly [0.5, 0.9]; the mean of ten draws reaches 0.9 only if all ten are the outlier.
    runs = [_run(0.5)] * 9 + [_run(0.9)]
    res = ar.hierarchical_retention(runs, n_boot=4000, seed=1)
    assert (res.one_low, res.one_high) == pytest.approx((0.5, 0.9))
    assert res.ci_high < 0.7 and not res.ci_low <= 0.9 <= res.ci_high


def test_one_run_interval_of_a_single_run_is_its_own_bootstrap():
    rng = np.random.default_rng(5)
    b = rng.integers(0, 2, 400).astype(float)
    t = np.maximum(b, rng.integers(0, 2, 400))
    e = np.where(rng.random(400) < 0.5, t, b)
    one = ar.hierarchical_retention([(b, t, e)], n_boot=4000)
    own = retention(b, t, e, n_boot=4000)  # that run's own paired bootstrap (another generator)
    assert one.one_low == pytest.approx(own.ci_low, abs=0.03) and one.one_high == pytest.approx(own.ci_high, abs=0.03)
    assert one.one_low < one.per_run[0] < one.one_high


def test_one_run_interval_of_a_difference():
    runs = [(np.zeros(30), np.full(30, g)) for g in (0.1, 0.1, 0.1, 0.3)]  # gains of 10, 10, 10 and 30 points
    res = ar.hierarchical_difference(runs, n_boot=4000)
    assert (res.one_low, res.one_high) == pytest.approx((0.1, 0.3))


def test_undefined_in_one_run_makes_the_mean_undefined():
    res = ar.hierarchical_retention([_run(0.5), _run(0.5)], per_run_defined=[True, False])
    assert not res.defined and math.isnan(res.mean) and "run(s) 1" in res.reason


def test_t_interval_needs_three_runs():
    assert all(math.isnan(x) for x in ar.t_interval([0.1, 0.2]))


def test_retention_difference_of_an_edit_and_its_control():
    b, t, e = _run(0.6)
    _, _, c = _run(0.1)
    d = ar.retention_difference(b, t, e, c, n_boot=300)
    assert d.value == pytest.approx(0.5) and d.ci_low == pytest.approx(0.5) and d.ci_high == pytest.approx(0.5)


@pytest.mark.parametrize("intervals, verdict", [
    ([Interval(0.5, 0.1, 0.9)] * 3, (3, 0, "above")),
    ([Interval(0.5, 0.1, 0.9), Interval(0.1, -0.2, 0.4)], (1, 0, "mixed")),
    ([Interval(-0.5, -0.9, -0.1)] * 2, (0, 2, "below")),
])
def test_holds_in_every_run(intervals, verdict):
    assert ar.holds_in_every_run(intervals) == verdict


def test_spread_over_runs():
    s = ar.spread([1.0, 2.0, None, 3.0])
    assert s == {"mean": 2.0, "sd": 1.0, "min": 1.0, "max": 3.0, "n": 3}


def test_hierarchical_difference_of_forgetting():
    runs = [(np.zeros(30), np.full(30, -0.1)), (np.zeros(30), np.full(30, -0.3)), (np.zeros(30), np.full(30, -0.2))]
    res = ar.hierarchical_difference(runs, n_boot=3000, seed=1)
    assert res.mean == pytest.approx(-0.2) and res.ci_low == pytest.approx(-0.3) and res.ci_high == pytest.approx(-0.1)
    # forgetting is s_base - s_model: the models lost 0.1, 0.3 and 0.2, so it is positive, every interval negated
    f = ar.hierarchical_forgetting(runs, n_boot=3000, seed=1)
    assert f.mean == pytest.approx(0.2) and f.ci_low == pytest.approx(0.1) and f.ci_high == pytest.approx(0.3)
    assert (f.t_low, f.t_high) == pytest.approx((-res.t_high, -res.t_low))
    assert (f.one_low, f.one_high) == pytest.approx((-res.one_high, -res.one_low))
