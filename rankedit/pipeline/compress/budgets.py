"""The families ``rankedit compress`` searches: each edit's budget axis, its grid and its parameters (pure).

- rank-k: k, every integer from 1 to the smallest matrix's short side;
- rank-auto: its energy threshold τ (each matrix keeps the fewest directions holding τ of ‖ΔW‖²);
- mask (magnitude top-p) and dare: the kept fraction of ΔW's entries, on a fixed ladder of fractions;
- sign and sub-rank-1: a fixed size, so one candidate each (there is no budget to search).

Every candidate otherwise takes its edit's defaults, as ``rankedit edit`` would, except that rank-k and
rank-auto are extractions: the truncated SVD (``scale: none``, the best rank-k approximation of ΔW), as
``--as-lora`` and ``--artifact`` write them; AlphaRL's ‖ΔW‖ rescale is an edit, not an extraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from rankedit.core.errors import RankeditError

# kept fractions of ΔW's entries (mask, dare): roughly logarithmic, so a handful of probes covers 0.1% to all
FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
# energy thresholds τ of rank-auto: the share of each matrix's ‖ΔW‖² its kept directions hold
ENERGIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


@dataclass(frozen=True)
class Family:
    name: str  # the edit method
    axis: str  # what the budget is, in words
    grid: Callable[[int], Sequence]  # the budgets, smallest first, given the smallest matrix's short side
    params: Callable[[object], dict]  # a budget -> the edit's parameters
    label: Callable[[object], str]  # a budget -> its short name in tables ("k=4")
    fixed: bool = False  # one size only: a single candidate, nothing to search


def _fixed(name: str) -> Family:
    return Family(name, "fixed size (one candidate)", lambda short: (None,), lambda b: {}, lambda b: "fixed", fixed=True)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("rank-k", "k, singular directions per matrix", lambda short: range(1, short + 1),
           lambda k: {"k": int(k), "scale": "none"}, lambda k: f"k={k}"),
    Family("rank-auto", "energy τ each matrix's kept directions hold", lambda short: ENERGIES,
           lambda t: {"energy": t, "scale": "none"}, lambda t: f"energy={t:g}"),
    Family("mask", "kept fraction of ΔW's entries (largest |ΔW|)", lambda short: FRACTIONS,
           lambda d: {"source": "magnitude", "density": d}, lambda d: f"kept={d:g}"),
    Family("dare", "kept fraction of ΔW's entries (random, rescaled)", lambda short: FRACTIONS,
           lambda d: {"drop": round(1 - d, 9)}, lambda d: f"kept={d:g}"),
    _fixed("sign"),
    _fixed("sub-rank-1"),
)}
DEFAULT_FAMILIES = ("rank-k", "mask", "sign", "sub-rank-1")


def families(names: Sequence[str] | None) -> list[Family]:
    """The named families (default ``DEFAULT_FAMILIES``), each once, in the order given."""
    chosen = list(dict.fromkeys(names or DEFAULT_FAMILIES))
    unknown = [n for n in chosen if n not in FAMILIES]
    if unknown:
        raise RankeditError(f"unknown family {unknown[0]!r}; choose among {', '.join(FAMILIES)}")
    return [FAMILIES[n] for n in chosen]
