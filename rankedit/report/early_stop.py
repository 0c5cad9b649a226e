"""Early stopping by extrapolation, scored: the pure part of the report.

A plan's ``extrapolate`` edits form a sweep over window fractions f (the run's
checkpoints up to f of training) and modes; mode ``last`` is the control, the
window's last checkpoint used as it is. Per edit: the relative weight error to
the final checkpoint, ``‖W_edit − W_T‖_F / ‖W_T − W_0‖_F`` over the attention
and MLP matrices, and its retention of the final gain. The speed-up: the
smallest f whose extrapolated model keeps ≥ ``KEEP`` of the gain, beside the
smallest f whose plain checkpoint does (None: no f does).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional

KEEP = 0.95  # the share of the final gain an early stop must keep
CONTROL = "last"  # extrapolate's mode that is the window's last checkpoint as it is


def mean_retention(rows: Iterable[Mapping], edit: str) -> Optional[float]:
    """Mean retention of ``edit`` over the trained tasks where retention is defined (None: none is)."""
    vals = [r["retention"] for r in rows if r["edit"] == edit and not r["control_task"]
            and r.get("retention_defined") and r["retention"] is not None and math.isfinite(r["retention"])]
    return sum(vals) / len(vals) if vals else None


def smallest_fraction(points: Iterable[tuple[float, Optional[float]]], keep: float = KEEP) -> Optional[float]:
    """The smallest f whose retention is at least ``keep``; None when no f reaches it."""
    ok = [f for f, r in points if r is not None and r >= keep]
    return min(ok) if ok else None


def speedup(entries: Iterable[Mapping], keep: float = KEEP) -> dict:
    """From sweep rows (mode, f, retention): the smallest f per mode reaching ``keep``.

    ``plain`` is the control's (mode ``last``); ``extrapolated`` the best over the
    other modes, with the mode that reaches it (the first in row order on a tie).
    ``steps_factor``: 1/f, how many times fewer training steps that stop needs.
    """
    by_mode: dict[str, list[tuple[float, Optional[float]]]] = {}
    for e in entries:
        by_mode.setdefault(e["mode"], []).append((e["f"], e["retention"]))
    modes = {m: smallest_fraction(pts, keep) for m, pts in by_mode.items()}
    plain = modes.pop(CONTROL, None)
    reached = [(f, m) for m, f in modes.items() if f is not None]
    best_f = min(f for f, _ in reached) if reached else None
    best_mode = next((m for m, f in modes.items() if f == best_f), None) if reached else None
    factor = lambda f: None if f is None else 1.0 / f  # noqa: E731
    return {"keep": keep, "modes": modes, "plain": plain, "extrapolated": best_f, "extrapolated_mode": best_mode,
            "steps_factor": {"plain": factor(plain), "extrapolated": factor(best_f)}}


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _stop(f: Optional[float]) -> str:
    return "none" if f is None else f"f = {f:g} ({1 / f:.2g}× fewer steps)"


def early_stop_markdown(block: Optional[dict]) -> list[str]:
    """The report's section: one row per (f, mode), then the speed-up."""
    if not block:
        return []
    sp = block["speedup"]
    lines = ["", "## Early stopping by extrapolation", "",
             "Each edit uses the run's checkpoints up to a fraction f of training. Weight error: "
             "‖W − W_T‖_F / ‖W_T − W_0‖_F over the attention and MLP matrices (T: the final checkpoint); "
             "retention: the mean over trained tasks where it is defined. `last` is the control: the "
             "window's last checkpoint used as it is."
             + (f" alpharl inverts its PLS at accuracy {block['target_accuracy']:.4f} (unless the plan sets "
                "it, the final model's, mean over trained tasks), from the window checkpoints' own scores."
                if block.get("target_accuracy") is not None else ""), "",
             "| f | mode | edit | window end | weight error | retention |", "|---|---|---|---|---|---|"]
    for e in sorted(block["rows"], key=lambda e: (e["f"], e["mode"] != CONTROL, e["mode"])):
        lines.append(f"| {e['f']:g} | {e['mode']} | {e['edit']} | step {e['window_end']} | "
                     f"{_f(e['weight_error'])} | {_f(e['retention'])} |")
    mode = f" ({sp['extrapolated_mode']})" if sp["extrapolated_mode"] else ""
    lines += ["", f"Smallest f keeping ≥ {sp['keep']:.0%} of the final gain: extrapolated{mode} "
                  f"{_stop(sp['extrapolated'])}; plain checkpoint {_stop(sp['plain'])}."]
    return lines
