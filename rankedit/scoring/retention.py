"""Gain retention and forgetting, with paired-bootstrap intervals (pure functions).

Inputs are per-problem scores (1/0 correctness, or any per-sample metric) of
several models on the *same* problems, in the same order; see ``align`` to
build them from lm-eval's logged samples keyed by doc_id. Definitions
(docs/science.md, "Scores"):

- gain of a model over base: ``s_model - s_base`` (s = mean score);
- retention of an edit: ``R = (s_edit - s_base) / (s_tuned - s_base)``,
  undefined (NaN, ``defined=False``) unless the tuned gain is significant,
  i.e. its 95% paired-bootstrap interval lies strictly above 0;
- forgetting on a control task: ``s_base - s_model`` there (points lost; positive = worse).

Intervals are percentile intervals of a paired bootstrap: each replicate draws
n problem indices with replacement and evaluates every model on those same
problems, so the problem-to-problem variation shared by the models cancels.
Everything is seeded: the same inputs give the same intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from rankedit.core.errors import RankeditError


@dataclass(frozen=True)
class Interval:
    """A point estimate with its (1 - alpha) bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class Retention:
    """Gain retention of an edit. ``value``/CI are NaN when ``defined`` is False."""

    value: float
    ci_low: float
    ci_high: float
    defined: bool
    reason: str | None  # why it is undefined (None when defined)
    gain_tuned: Interval  # s_tuned - s_base with its interval
    gain_edit: Interval  # s_edit - s_base with its interval
    n: int  # number of paired problems


def as_scores(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise RankeditError(f"{name}: expected a 1-D array of per-problem scores, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise RankeditError(f"{name}: per-problem scores contain NaN or Inf")
    return a


def check_paired(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    n = next(iter(lengths.values()))
    if len(set(lengths.values())) != 1:
        raise RankeditError(f"paired scores need the same problems: lengths differ ({lengths})")
    if n == 0:
        raise RankeditError("no problems to score (empty per-problem arrays)")
    return n


def bootstrap_indices(n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) problem indices drawn with replacement; shared by every model in a comparison."""
    if n_boot < 1:
        raise RankeditError(f"n_boot must be at least 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentiles(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise RankeditError(f"alpha must be in (0, 1), got {alpha}")


def paired_difference(base, model, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """``mean(model) - mean(base)`` over the same problems, with its paired-bootstrap interval."""
    check_alpha(alpha)
    b, m = as_scores(base, "base"), as_scores(model, "model")
    n = check_paired(base=b, model=m)
    d = m - b
    reps = d[bootstrap_indices(n, n_boot, seed)].mean(axis=1)
    lo, hi = percentiles(reps, alpha)
    return Interval(float(d.mean()), lo, hi)


def gain(base, tuned, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """The tuned model's gain over base; significant when ``gain(...).ci_low > 0``."""
    return paired_difference(base, tuned, n_boot, seed, alpha)


def forgetting(base, model, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """Forgetting on a control task: ``s_base - s_model`` there (what the model lost; positive = worse), with
    its paired-bootstrap interval: exactly the negated gain, its interval's ends swapped and negated."""
    return paired_difference(model, base, n_boot, seed, alpha)


def retention(base, tuned, edit, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Retention:
    """Gain retention ``R = (s_edit - s_base) / (s_tuned - s_base)`` with a paired-bootstrap interval.

    The tuned gain's interval comes from the same replicates. R is undefined
    (NaN) unless that interval lies strictly above zero. Replicates whose
    tuned gain is exactly zero give no ratio and are left out of R's interval.
    """
    check_alpha(alpha)
    b, t, e = as_scores(base, "base"), as_scores(tuned, "tuned"), as_scores(edit, "edit")
    n = check_paired(base=b, tuned=t, edit=e)
    idx = bootstrap_indices(n, n_boot, seed)
    dt, de = t - b, e - b
    rep_t, rep_e = dt[idx].mean(axis=1), de[idx].mean(axis=1)
    g_t = Interval(float(dt.mean()), *percentiles(rep_t, alpha))
    g_e = Interval(float(de.mean()), *percentiles(rep_e, alpha))
    level = round(100 * (1 - alpha))
    if not g_t.ci_low > 0:
        why = "lower" if g_t.ci_high < 0 else "not significant"
        reason = (f"tuned gain {why}: {g_t.value:+.4f}, {level}% CI [{g_t.ci_low:+.4f}, {g_t.ci_high:+.4f}] "
                  f"does not lie above 0 (n={n})")
        if not (b.any() or t.any()):  # a task neither model can do at all: say so, not only that the gain is 0
            reason = f"base and tuned both score 0 on all {n} problems, so there is no gain to keep: {reason}"
        return Retention(math.nan, math.nan, math.nan, False, reason, g_t, g_e, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(rep_t != 0, rep_e / np.where(rep_t != 0, rep_t, 1.0), np.nan)
    lo, hi = percentiles(ratios, alpha)
    return Retention(g_e.value / g_t.value, lo, hi, True, None, g_t, g_e, n)


def align(per_model: Mapping[str, Mapping[int, float]], models: Sequence[str] | None = None
          ) -> tuple[list[int], dict[str, np.ndarray]]:
    """Pair models' per-problem scores by doc_id: (common doc_ids sorted, label -> array in that order).

    Problems missing for any model are dropped (e.g. a different --limit); no
    common problem at all is an error.
    """
    models = list(models) if models is not None else list(per_model)
    missing = [m for m in models if m not in per_model]
    if missing:
        raise RankeditError(f"no per-problem scores for: {', '.join(missing)}")
    common = set(per_model[models[0]])
    for m in models[1:]:
        common &= set(per_model[m])
    if not common:
        raise RankeditError(f"models share no scored problems (doc_ids): {', '.join(models)}")
    ids = sorted(common)
    return ids, {m: np.array([float(per_model[m][i]) for i in ids], dtype=np.float64) for m in models}
