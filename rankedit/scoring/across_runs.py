"""Retention across training runs (seeds): intervals that cover training noise too (pure functions).

The paired bootstrap of ``rankedit.scoring.retention`` resamples the test problems of
one run, so its interval covers evaluation noise only. With R runs (seeds of
the organism, or several tuned runs of one base) the mean retention
``R̄ = mean_r R_r`` gets two intervals (docs/science.md, "Intervals across
training seeds"):

- the **hierarchical bootstrap** (the headline): each replicate draws R runs
  with replacement, then, inside every drawn run, its problems with
  replacement (paired across base, tuned and edit), recomputes each drawn
  run's R and averages them;
- the **t-interval** over the per-run point estimates R_r (R ≥ 3), which
  ignores evaluation noise and assumes normal run-to-run variation.

Both are about the *mean*. Where *one* run of the recipe lands (a new seed,
scored the same way) is a wider interval: the **one-run interval**, the
percentiles of a mixture in which each replicate draws one run, then that
run's problems with replacement, and takes that run's R. A single seed's R
(``make demo`` is seed 0) belongs inside it, not inside the mean's interval.

"Holds in every run" means: the per-run paired-bootstrap interval of the
compared quantity excludes the compared value, on the same side, in all R runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from rankedit.scoring import retention as ev
from rankedit.core.errors import RankeditError

Triple = tuple[Sequence[float], Sequence[float], Sequence[float]]  # base, tuned, edit per-problem scores


@dataclass(frozen=True)
class AcrossRuns:
    """Mean retention over runs with its hierarchical-bootstrap and t intervals (NaN where undefined)."""

    mean: float
    ci_low: float  # hierarchical bootstrap
    ci_high: float
    t_low: float  # t-interval over per-run R (NaN for fewer than 3 runs)
    t_high: float
    per_run: tuple[float, ...]
    n_runs: int
    defined: bool
    reason: str | None
    one_low: float = math.nan  # one-run interval: where a single run's value lands
    one_high: float = math.nan


def _arrays(runs: Sequence[Triple]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per run: (tuned - base, edit - base) per problem, checked."""
    if not runs:
        raise RankeditError("no runs to combine")
    out = []
    for i, (b, t, e) in enumerate(runs):
        b, t, e = (ev.as_scores(x, f"run {i} {n}") for x, n in ((b, "base"), (t, "tuned"), (e, "edit")))
        ev.check_paired(base=b, tuned=t, edit=e)
        out.append((t - b, e - b))
    return out


def t_interval(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """Student-t interval of the mean of ``values``; NaN for fewer than 3 values (too few to say)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3 or not np.all(np.isfinite(v)):
        return math.nan, math.nan
    half = stats.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def hierarchical_retention(runs: Sequence[Triple], per_run_defined: Sequence[bool] | None = None,
                           n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> AcrossRuns:
    """R̄ over runs with a two-level bootstrap interval (runs, then problems within each run).

    ``per_run_defined``: whether each run's own retention is defined (its tuned
    gain significant). R̄ is undefined unless it is defined in every run: a mean
    over the runs that happened to learn would flatter the edit.
    """
    ev.check_alpha(alpha)
    diffs = _arrays(runs)
    per_run = tuple(float(de.mean() / dt.mean()) if dt.mean() != 0 else math.nan for dt, de in diffs)
    defined = list(per_run_defined) if per_run_defined is not None else [math.isfinite(r) for r in per_run]
    if not all(defined):
        bad = [i for i, d in enumerate(defined) if not d]
        reason = f"retention undefined in run(s) {', '.join(map(str, bad))} (no significant tuned gain there)"
        return AcrossRuns(math.nan, math.nan, math.nan, math.nan, math.nan, per_run, len(diffs), False, reason)
    lo, hi = _two_level(diffs, n_boot, seed, alpha)
    t_lo, t_hi = t_interval(per_run, alpha)
    return AcrossRuns(float(np.mean(per_run)), lo, hi, t_lo, t_hi, per_run, len(diffs), True, None,
                      *_one_run(diffs, n_boot, seed, alpha))


def hierarchical_difference(runs: Sequence[tuple[Sequence[float], Sequence[float]]], n_boot: int = 2000,
                            seed: int = 0, alpha: float = 0.05) -> AcrossRuns:
    """Mean over runs of ``s_model - s_base`` (a gain), with the same two-level intervals."""
    ev.check_alpha(alpha)
    diffs = []
    for i, (b, m) in enumerate(runs):
        b, m = ev.as_scores(b, f"run {i} base"), ev.as_scores(m, f"run {i} model")
        ev.check_paired(base=b, model=m)
        diffs.append((None, m - b))
    if not diffs:
        raise RankeditError("no runs to combine")
    per_run = tuple(float(d.mean()) for _, d in diffs)
    lo, hi = _two_level(diffs, n_boot, seed, alpha)
    t_lo, t_hi = t_interval(per_run, alpha)
    return AcrossRuns(float(np.mean(per_run)), lo, hi, t_lo, t_hi, per_run, len(diffs), True, None,
                      *_one_run(diffs, n_boot, seed, alpha))


def hierarchical_forgetting(runs: Sequence[tuple[Sequence[float], Sequence[float]]], n_boot: int = 2000,
                           seed: int = 0, alpha: float = 0.05) -> AcrossRuns:
    """Mean over runs of forgetting on a control task, ``s_base - s_model`` (points lost; positive = worse):
    ``hierarchical_difference`` with the two sides exchanged, its intervals the gain's negated."""
    return hierarchical_difference([(m, b) for b, m in runs], n_boot, seed, alpha)


def _ratio_of_means(num: np.ndarray, den: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    """Per row of ``idx``: mean(num[idx]) / mean(den[idx]) (NaN where the denominator is 0), or mean(num[idx])."""
    mn = num[idx].mean(axis=1)
    if den is None:
        return mn
    md = den[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(md != 0, mn / np.where(md != 0, md, 1.0), np.nan)


def _one_run(diffs: list[tuple[np.ndarray | None, np.ndarray]], n_boot: int, seed: int,
             alpha: float) -> tuple[float, float]:
    """Percentile interval of one run's value: each replicate draws one run, then its problems with replacement.

    An equal mixture of the runs' own bootstrap distributions; a separate
    generator (seed + 1) so the mean's interval is unchanged by it.
    """
    rng = np.random.default_rng(seed + 1)
    picks = rng.integers(0, len(diffs), size=n_boot)
    reps = np.empty(n_boot)
    for r, (den, num) in enumerate(diffs):
        rows = np.flatnonzero(picks == r)
        if rows.size:
            reps[rows] = _ratio_of_means(num, den, rng.integers(0, num.size, size=(rows.size, num.size)))
    return ev.percentiles(reps, alpha)


def _two_level(diffs: list[tuple[np.ndarray | None, np.ndarray]], n_boot: int, seed: int,
               alpha: float) -> tuple[float, float]:
    """Percentile interval of the run mean of mean(num) / mean(den) (or of mean(num) when den is None).

    Each replicate draws the runs with replacement, then each drawn slot's
    problems with replacement: a run drawn twice gets two independent problem draws.
    """
    rng = np.random.default_rng(seed)
    n_runs = len(diffs)
    picks = rng.integers(0, n_runs, size=(n_boot, n_runs))
    reps = np.empty((n_boot, n_runs))
    for j in range(n_runs):
        for r in range(n_runs):
            rows = np.flatnonzero(picks[:, j] == r)
            if rows.size == 0:
                continue
            den, num = diffs[r]
            reps[rows, j] = _ratio_of_means(num, den, rng.integers(0, num.size, size=(rows.size, num.size)))
    return ev.percentiles(reps.mean(axis=1), alpha)


def retention_difference(base, tuned, edit, other, n_boot: int = 2000, seed: int = 0,
                         alpha: float = 0.05) -> ev.Interval:
    """R_edit - R_other within one run, with a paired-bootstrap interval (the same problems for all four).

    Used to say whether an edit beats its control in a run. NaN when the tuned
    gain of a replicate is zero.
    """
    ev.check_alpha(alpha)
    b, t, e, o = (ev.as_scores(x, n) for x, n in ((base, "base"), (tuned, "tuned"), (edit, "edit"), (other, "other")))
    n = ev.check_paired(base=b, tuned=t, edit=e, other=o)
    dt, dd = t - b, e - o
    if dt.mean() == 0:
        return ev.Interval(math.nan, math.nan, math.nan)
    idx = ev.bootstrap_indices(n, n_boot, seed)
    mt, md = dt[idx].mean(axis=1), dd[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = np.where(mt != 0, md / np.where(mt != 0, mt, 1.0), np.nan)
    return ev.Interval(float(dd.mean() / dt.mean()), *ev.percentiles(reps, alpha))


def holds_in_every_run(intervals: Sequence[ev.Interval], value: float = 0.0) -> tuple[int, int, str]:
    """(runs where the interval lies above ``value``, runs where it lies below, verdict word).

    The verdict is "above" / "below" only when every run agrees, else "mixed".
    """
    above = sum(1 for i in intervals if i.ci_low > value)
    below = sum(1 for i in intervals if i.ci_high < value)
    n = len(intervals)
    return above, below, "above" if n and above == n else "below" if n and below == n else "mixed"


def spread(values: Sequence[float | None]) -> dict:
    """mean, standard deviation (ddof=1) and range of a metric over runs; None entries are skipped."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}
