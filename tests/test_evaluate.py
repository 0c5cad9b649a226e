"""Retention, forgetting and paired-bootstrap arithmetic against hand-computed cases."""

import math

import numpy as np
import pytest

from rankedit.scoring import retention as ev
from rankedit.core.errors import RankeditError


def test_retention_value_is_the_ratio_of_gains():
    base = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])   # 0.2
    tuned = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0])  # 0.8
    edit = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])   # 0.5
    r = ev.retention(base, tuned, edit, n_boot=4000)
    assert r.defined and r.reason is None and r.n == 10
    assert r.value == pytest.approx((0.5 - 0.2) / (0.8 - 0.2))
    assert r.gain_tuned.value == pytest.approx(0.6) and r.gain_edit.value == pytest.approx(0.3)
    assert r.ci_low < 0.5 < r.ci_high


@pytest.mark.parametrize("which,expected", [("tuned", 1.0), ("base", 0.0), ("half", 0.5)])
def test_retention_interval_collapses_when_every_replicate_has_the_same_ratio(which, expected):
    rng = np.random.default_rng(3)
    base = (rng.random(50) < 0.3).astype(float)
    tuned = np.maximum(base, (rng.random(50) < 0.6).astype(float))  # never worse, clearly better
    edit = {"tuned": tuned, "base": base, "half": (base + tuned) / 2}[which]
    r = ev.retention(base, tuned, edit)
    assert r.defined
    # each replicate's ratio is mean(e*-b*)/mean(t*-b*) = expected exactly
    assert (r.value, r.ci_low, r.ci_high) == pytest.approx((expected, expected, expected))


def test_tuned_gain_not_significant_gives_undefined_retention():
    # base 0/3, tuned 2/3. Resampled tuned mean = k/3, k ~ Binomial(3, 2/3):
    # P(k=0) = 1/27 = 3.7% > 2.5%, so the 95% interval of the gain starts at 0.
    r = ev.retention([0, 0, 0], [1, 1, 0], [1, 0, 0], n_boot=20000)
    assert not r.defined and math.isnan(r.value) and math.isnan(r.ci_low) and math.isnan(r.ci_high)
    assert r.gain_tuned.ci_low == 0.0 and r.gain_tuned.ci_high == 1.0
    assert "not significant" in r.reason


def test_a_task_neither_model_can_do_says_so():
    r = ev.retention([0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], n_boot=200)
    assert not r.defined and math.isnan(r.value)
    assert r.reason.startswith("base and tuned both score 0 on all 4 problems, so there is no gain to keep: "
                               "tuned gain not significant: +0.0000")
    # one right answer of either model is a gain that is merely not significant, worded as before
    assert ev.retention([0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], n_boot=200).reason.startswith("tuned gain")


def test_tuned_gain_significant_by_hand():
    # base 0/4, tuned 3/4: k ~ Binomial(4, 3/4), P(k=0) = 0.4% and P(k<=1) = 5.1%,
    # so the 2.5% quantile is k=1 (gain 0.25); P(k=4) = 31.6%, so the 97.5% quantile is 1.
    g = ev.gain([0, 0, 0, 0], [1, 1, 1, 0], n_boot=20000)
    assert (g.value, g.ci_low, g.ci_high) == (0.75, 0.25, 1.0)
    assert g.excludes_zero
    r = ev.retention([0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], n_boot=20000)
    assert r.defined and r.value == 1.0


def test_tuned_worse_than_base_is_undefined():
    r = ev.retention([1] * 20, [0] * 20, [1] * 20)
    assert not r.defined and "lower" in r.reason
    assert r.gain_tuned.value == -1.0


def test_forgetting_by_hand():
    # forgetting = s_base - s_model: d = [0, 0, 1, 1]; resampled mean = k/4, k ~ Binomial(4, 1/2),
    # P(k=0) = P(k=4) = 6.25%. The model lost half the control problems: +0.5, positive = worse
    f = ev.forgetting([1, 1, 1, 1], [1, 1, 0, 0], n_boot=20000)
    assert (f.value, f.ci_low, f.ci_high) == (0.5, 0.0, 1.0)
    assert not f.excludes_zero
    # a model that improved on the control task has negative forgetting: the gain negated, interval and all
    g = ev.gain([0, 0, 1, 1], [1, 1, 1, 1], n_boot=20000)
    f = ev.forgetting([0, 0, 1, 1], [1, 1, 1, 1], n_boot=20000)
    assert (f.value, f.ci_low, f.ci_high) == (-g.value, -g.ci_high, -g.ci_low) == (-0.5, -1.0, 0.0)


def test_bootstrap_spread_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    n = 400
    base = (rng.random(n) < 0.4).astype(float)
    model = np.where(rng.random(n) < 0.2, 1 - base, base)
    d = model - base
    g = ev.paired_difference(base, model, n_boot=4000, seed=1)
    half_width = 1.96 * d.std() / math.sqrt(n)  # plug-in standard error of a mean
    assert g.value == pytest.approx(d.mean())
    assert (g.ci_high - g.ci_low) / 2 == pytest.approx(half_width, rel=0.1)


def test_seeded_and_paired():
    rng = np.random.default_rng(1)
    b, t, e = (rng.random((3, 60)) < [[0.3], [0.7], [0.5]]).astype(float)
    assert ev.retention(b, t, e, seed=5) == ev.retention(b, t, e, seed=5)
    # pairing: a model equal to base has a zero-width interval, whatever the problems
    z = ev.paired_difference(b, b)
    assert (z.value, z.ci_low, z.ci_high) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("args,msg", [
    (([1, 0], [1, 0, 1], [0, 0]), "lengths differ"),
    (([], [], []), "no problems"),
    (([1, float("nan")], [1, 1], [1, 1]), "NaN"),
    (([[1, 0]], [[1, 1]], [[0, 1]]), "1-D"),
])
def test_bad_inputs_raise_clear_errors(args, msg):
    with pytest.raises(RankeditError, match=msg):
        ev.retention(*args)


def test_align_pairs_by_doc_id_and_drops_unshared_problems():
    ids, arr = ev.align({"base": {0: 0, 1: 1, 2: 0, 5: 1}, "tuned": {2: 1, 0: 1, 1: 1}})
    assert ids == [0, 1, 2]
    assert arr["base"].tolist() == [0, 1, 0] and arr["tuned"].tolist() == [1, 1, 1]
    with pytest.raises(RankeditError, match="share no"):
        ev.align({"a": {0: 1}, "b": {1: 1}})
    with pytest.raises(RankeditError, match="no per-problem scores for: c"):
        ev.align({"a": {0: 1}}, ["a", "c"])
