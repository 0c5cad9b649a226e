"""The search of ``rankedit compress``: the smallest budget on a grid whose retention meets a target (pure).

The budgets of a family are an ascending grid (rank-k: k = 1, 2, ...; a mask: kept
fractions). Retention is assumed to grow with the budget, so the search is a
bisection over the grid's indices. It first gallops from the small end (indices 0, 1,
3, 7, ...: gains that live in a few directions are found in one or two probes),
then bisects between the largest failing and the smallest passing index. At most
``max_evals`` budgets are probed; when the cap stops it first, the smallest passing
budget seen is the answer and ``resolved`` is False (a smaller one may also pass).

A probe is judged on the point estimate (``target="point"``) or on the lower bound
of its interval (``target="lower"``: the budget keeps ``keep`` of the gain with 95%
confidence). An undefined retention (None or NaN) never meets the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

TARGETS = ("point", "lower")
MAX_EVALS = 8


@dataclass(frozen=True)
class Probe:
    index: int  # position on the grid
    budget: object  # the grid's value there
    value: Optional[float]  # retention's point estimate
    ci_low: Optional[float]  # the lower bound of its interval
    meets: bool


@dataclass
class Search:
    probes: list[Probe] = field(default_factory=list)  # in the order they were evaluated
    winner: Optional[Probe] = None  # the smallest budget found to meet the target
    resolved: bool = False  # True: the budget just below the winner was probed and fails (or the winner is the first)

    @property
    def evals(self) -> int:
        return len(self.probes)


def judged(value: Optional[float], ci_low: Optional[float], keep: float, target: str) -> bool:
    """Whether a retention (point, lower bound) meets ``keep`` on the chosen ``target``."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    x = value if target == "point" else ci_low
    return x is not None and not math.isnan(x) and x >= keep


def smallest_meeting(grid: Sequence, evaluate: Callable[[object], tuple[Optional[float], Optional[float]]],
                     keep: float, target: str = "point", max_evals: int = MAX_EVALS) -> Search:
    """Gallop then bisect ``grid`` for its smallest budget whose ``evaluate(budget) -> (point, lower)``
    meets ``keep`` on ``target``; at most ``max_evals`` calls of ``evaluate``, none twice."""
    if max_evals < 1:
        raise ValueError(f"max_evals must be at least 1, got {max_evals}")
    n = len(grid)
    s = Search()
    if n == 0:
        return s
    lo, hi = -1, None  # the largest failing index, the smallest passing one

    def probe(i: int) -> bool:
        value, ci_low = evaluate(grid[i])
        p = Probe(i, grid[i], value, ci_low, judged(value, ci_low, keep, target))
        s.probes.append(p)
        return p.meets

    i = 0
    while s.evals < max_evals:  # gallop: 0, 1, 3, 7, ... and the last index
        if probe(i):
            hi = i
            break
        lo = i
        if i == n - 1:
            return s  # even the largest budget falls short
        i = min(2 * i + 1, n - 1)
    while hi is not None and hi - lo > 1 and s.evals < max_evals:
        mid = (lo + hi) // 2
        if probe(mid):
            hi = mid
        else:
            lo = mid
    if hi is not None:
        s.winner = next(p for p in s.probes if p.index == hi)
        s.resolved = hi - lo == 1
    return s
