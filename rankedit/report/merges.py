"""The report's merges: each merge against each of its runs, the interference figure that predicts what a
merge loses, and a figure of both (pure functions over the scores and the analysis; the pipeline writes them).

- ``merge_rows``: R of the merge against each run it holds, per trained task (the run's own gain the reference).
- ``interference_prediction``: over the plan's merges (controls apart), the Spearman rank correlation between
  each interference figure of the merged runs (``rankedit.analysis.interference``, pooled over matrices) and
  the merge's loss, 1 − its worst R, with a bootstrap interval over merges.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rankedit.report.rows import per_sample  # noqa: E402
from rankedit.scoring import retention as ev  # noqa: E402

def _nan_to_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _ci(v, lo, hi) -> str:
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


PREDICTORS = ("cosine", "subspace_overlap_left", "subspace_overlap_right", "jaccard", "sign_conflict", "rank1_overlap")


def merge_rows(result, merges: list[dict], n_boot: int = 2000) -> list[dict]:
    """A merge against each of its runs: one row per (merge, task, run) on the trained tasks, R of the merge
    with the run's own gain as the reference (``merges``: dicts with name and runs, the plan's run labels)."""
    rows = []
    control = set(result.suite.control_tasks)
    for m in merges:
        for task in (t for t in result.tasks if t not in control):
            metric = result.primary_metric(task)
            for run in m["runs"]:
                row = {"merge": m["name"], "task": task, "run": run, "retention": None, "ci_low": None,
                       "ci_high": None, "retention_defined": None, "reason": None, "n": None}
                rows.append(row)
                samples = {lab: per_sample(result, lab, task, metric) for lab in ("base", run, m["name"])}
                missing = [lab for lab, v in samples.items() if v is None]
                if missing:
                    row["reason"] = f"{missing[0]} not scored"
                    continue
                ids, arr = ev.align({"base": samples["base"], "ref": samples[run], "merge": samples[m["name"]]})
                r = ev.retention(arr["base"], arr["ref"], arr["merge"], n_boot=n_boot)
                row.update(retention=_nan_to_none(r.value), ci_low=_nan_to_none(r.ci_low), ci_high=_nan_to_none(r.ci_high),
                           retention_defined=r.defined, reason=r.reason, n=r.n)
    return rows


def worst_retention(rows: list[dict], merge: str) -> dict | None:
    """The merge's lowest defined R over its trained tasks and runs (the row), or None where none is defined."""
    defined = [r for r in rows if r["merge"] == merge and r["retention_defined"]]
    return min(defined, key=lambda r: r["retention"]) if defined else None


def merge_markdown(rows: list[dict]) -> list[str]:
    """report.md's section on merges: R against each run, per task, and each merge's worst."""
    if not rows:
        return []
    lines = ["", "## Merges against each of their runs", "",
             "R = (s_merge − s_base) / (s_run − s_base) on each trained task, against each run the merge holds, "
             "with its 95% paired-bootstrap interval; worst: the lowest defined R of the merge.", "",
             "| merge | task | run | R [95%] | worst R |", "|---|---|---|---|---|"]
    for r in rows:
        worst = worst_retention(rows, r["merge"])
        shown = _ci(r["retention"], r["ci_low"], r["ci_high"]) if r["retention_defined"] else f"undefined ({r['reason']})"
        w = f"{worst['retention']:.2f} ({worst['task']}, {worst['run']})" if worst else "undefined"
        lines.append(f"| {r['merge']} | {r['task']} | {r['run']} | {shown} | {w} |")
    return lines


def ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (Spearman's convention)."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    r[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tied = a == v
        r[tied] = r[tied].mean()
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks (NaN where either side is constant)."""
    rx, ry = ranks(x), ranks(y)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((dx ** 2).sum() * (dy ** 2).sum()))
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


def spearman_interval(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0,
                      alpha: float = 0.05) -> dict:
    """Spearman's rho with a percentile bootstrap interval over the pairs (resamples where it is undefined
    are left out; the interval is None with fewer than 3 pairs)."""
    n = len(x)
    rho = spearman(x, y) if n >= 2 else float("nan")
    out = {"rho": _nan_to_none(rho), "ci_low": None, "ci_high": None, "n": n}
    if n < 3 or math.isnan(rho):
        return out
    idx = ev.bootstrap_indices(n, n_boot, seed)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    reps = np.array([spearman(xa[i], ya[i]) for i in idx])
    reps = reps[~np.isnan(reps)]
    if len(reps):
        out["ci_low"], out["ci_high"] = ev.percentiles(reps, alpha)
    return out


def interference_prediction(merges: Sequence[Mapping], rows: list[dict], pairs: Mapping[str, Mapping],
                            n_boot: int = 2000) -> dict:
    """Which interference figure predicts a merge's loss: per figure, Spearman's rho between the merged runs'
    figure (a merge of more than two runs: the mean over its pairs) and 1 − the merge's worst R, over the
    merges that are not controls and whose worst R is defined. ``pairs``: analyze's ``interference.pairs``
    ("A|B" -> {"overall": figures}) of the runs, named as the merges name them."""
    xs: dict[str, list[float]] = {f: [] for f in PREDICTORS}
    used, losses = [], []
    for m in merges:
        worst = worst_retention(rows, m["name"])
        if m.get("control_of") or worst is None:
            continue
        runs = list(m["runs"])
        keys = [f"{a}|{b}" if f"{a}|{b}" in pairs else f"{b}|{a}" for i, a in enumerate(runs) for b in runs[i + 1:]]
        if not all(k in pairs for k in keys):
            continue
        used.append(m["name"])
        losses.append(1.0 - worst["retention"])
        for f in PREDICTORS:
            vals = [pairs[k]["overall"].get(f) for k in keys]
            xs[f].append(float(np.mean(vals)) if all(v is not None and not math.isnan(v) for v in vals) else math.nan)
    out = {"merges": used, "loss": losses, "figures": {}}
    for f in PREDICTORS:
        ok = [i for i, v in enumerate(xs[f]) if not math.isnan(v)]
        out["figures"][f] = spearman_interval([xs[f][i] for i in ok], [losses[i] for i in ok], n_boot=n_boot)
    best = [(abs(v["rho"]), f) for f, v in out["figures"].items()
            if v["rho"] is not None and v["ci_low"] is not None and (v["ci_low"] > 0 or v["ci_high"] < 0)]
    out["predictor"] = max(best)[1] if best else None
    return out


def prediction_markdown(pred: Mapping | None) -> list[str]:
    if not pred or not pred["merges"]:
        return []
    lines = ["", "### Which interference figure predicts the loss", "",
             f"Spearman's rho between each figure of the merged runs and the merge's loss (1 − worst R), over "
             f"{len(pred['merges'])} merges (controls apart), with a 95% bootstrap interval over merges.", "",
             "| figure | rho [95%] | merges |", "|---|---|---|"]
    for f, v in pred["figures"].items():
        rho = "undefined" if v["rho"] is None else (
            f"{v['rho']:+.2f}" + (f" [{v['ci_low']:+.2f}, {v['ci_high']:+.2f}]" if v["ci_low"] is not None else ""))
        lines.append(f"| {f} | {rho} | {v['n']} |")
    lines += ["", f"Predictor: {pred['predictor']} (its interval excludes 0)." if pred["predictor"] else
              "No figure's interval excludes 0: with these merges none predicts the loss."]
    return lines


def merge_retention_plot(report: Mapping, path: Path) -> Path | None:
    """Per merge (controls beside what they control): R against each of its runs on each trained task, with
    the 95% intervals."""
    rows = [r for r in report.get("merges", []) if r["retention_defined"]]
    if not rows:
        return None
    names = list(dict.fromkeys(r["merge"] for r in report["merges"]))
    controls = {e["name"] for e in report["edits"] if e.get("control_of")}
    series = list(dict.fromkeys((r["task"], r["run"]) for r in rows))
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(names) * max(1, len(series) * 0.5) + 1.8))
    offsets = np.linspace(-0.25, 0.25, len(series)) if len(series) > 1 else [0.0]
    markers = "osD^v<>"
    for si, (task, run) in enumerate(series):
        for r in (x for x in rows if (x["task"], x["run"]) == (task, run)):
            y = names.index(r["merge"]) + offsets[si]
            c = "#b0b0b0" if r["merge"] in controls else "#1f5aa6"
            ax.errorbar(r["retention"], y, xerr=[[r["retention"] - r["ci_low"]], [r["ci_high"] - r["retention"]]],
                        fmt=markers[si % len(markers)], color=c, ms=5, capsize=2)
        ax.plot([], [], markers[si % len(markers)], color="#1f5aa6", label=f"{task}, against {run}")
    ax.plot([], [], "s", color="#b0b0b0", label="a control")
    ax.axvline(1.0, color="#444444", lw=0.8, ls="--")
    ax.axvline(0.0, color="#444444", lw=0.8)
    ax.set_yticks(range(len(names)), [n + (" (control)" if n in controls else "") for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("R: share of the run's gain the merge keeps (1 = the run's score; 95% interval)")
    ax.set_ylabel("merge")
    ax.set_title("Each merge against each of its runs")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
