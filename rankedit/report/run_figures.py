"""PNG figures of the pipeline report: scores, retention per edit, and the size-vs-gain frontier
(``frontier_figure``)."""

from __future__ import annotations
from rankedit.core.names import FIG_FRONTIER, FIG_KL_FORGETTING, FIG_PASS_AT_K, FIG_RETENTION, FIG_SCORES
from rankedit.report.frontier_figure import frontier_plot
from rankedit.report.kl_report import kl_forgetting_plot
from rankedit.report.pass_at_k_figure import pass_at_k_plot

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

_EDIT, _CONTROL, _RUN = "#1f5aa6", "#b0b0b0", "#444444"


def _trained_rows(report: dict) -> dict[str, list[dict]]:
    """task -> rows with a defined retention, in the plan's edit order."""
    out: dict[str, list[dict]] = {}
    for r in report["rows"]:
        if not r["control_task"] and r["retention"] is not None:
            out.setdefault(r["task"], []).append(r)
    return out


def retention_per_edit(report: dict, path: Path) -> Path | None:
    by_task = _trained_rows(report)
    if not by_task:
        return None
    edits = [e["name"] for e in report["edits"]]
    controls = {e["name"] for e in report["edits"] if e.get("control_of")}
    tasks = list(by_task)
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(edits) * max(1, len(tasks) * 0.6) + 1.8))
    offsets = np.linspace(-0.18, 0.18, len(tasks)) if len(tasks) > 1 else [0.0]
    markers = "osD^v"
    for ti, task in enumerate(tasks):
        for r in by_task[task]:
            y = edits.index(r["edit"]) + offsets[ti]
            lo, hi = r["retention"] - r["ci_low"], r["ci_high"] - r["retention"]
            c = _CONTROL if r["edit"] in controls else _EDIT
            ax.errorbar(r["retention"], y, xerr=[[max(lo, 0)], [max(hi, 0)]], fmt=markers[ti % 5], color=c,
                        ecolor=c, capsize=3, label=task if r is by_task[task][0] else None,
                        mfc="white" if r["edit"] in controls else c)
    return _finish_retention_axes(fig, ax, edits, controls, len(tasks) > 1, path,
                                  "gain retention R = (s_edit − s_base) / (s_tuned − s_base), 95% paired-bootstrap interval",
                                  f"{report['name']}: how much of the tuned gain each edit keeps")


def _finish_retention_axes(fig, ax, edits: list[str], controls: set, legend: bool, path: Path, xlabel: str,
                           title: str) -> Path:
    """The frame both retention figures share: R = 0 and R = 1 lines, one row per edit, then save."""
    ax.axvline(0, color="black", lw=0.8)
    ax.axvline(1, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(edits)), [f"{e} (control)" if e in controls else e for e in edits])
    ax.set_ylabel("edit")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    if legend:
        ax.legend(title="task", fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# lm-eval's metric names in words, for axis labels (the raw name stays in brackets)
METRIC_WORDS = {"exact_match": "exact-match accuracy", "acc": "accuracy", "acc_norm": "length-normalised accuracy",
                "pass@1": "pass@1", "f1": "F1", "bleu": "BLEU"}
_REFERENCES = ("base", "tuned", "other_tuned", "sft")


def metric_words(metric: str) -> str:
    """``exact_match,extract`` -> "exact-match accuracy (lm-eval exact_match, filter extract)"."""
    name, _, filt = metric.partition(",")
    words = METRIC_WORDS.get(name, name.replace("_", " "))
    raw = f"lm-eval {name}" + (f", filter {filt}" if filt and filt != "none" else "")
    return f"{words} ({raw})"


def scores_per_model(report: dict, path: Path) -> Path | None:
    """Every model's score on every task, with lm-eval's standard error: the raw numbers behind R.

    A task on which every model scored exactly 0 gets no panel; the title names it."""
    models = [m for m in report["scores"] if report["scores"][m]]
    value = {(m, t): report["scores"][m].get(t, {}).get("value") for m in models for t in report["tasks"]}
    zero = [t for t in report["tasks"] if all(not value[(m, t)] for m in models)]
    tasks = [t for t in report["tasks"] if t not in zero]
    if not models or not tasks:
        return None
    controls = {e["name"] for e in report["edits"] if e.get("control_of")}
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks) + 2, 0.32 * len(models) + 2.2), sharey=True,
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        vals = [report["scores"][m].get(task, {}) for m in models]
        x = [v.get("value", np.nan) for v in vals]
        err = [v.get("stderr") or 0.0 for v in vals]
        # runs dark, edits blue, controls hollow in blue: the same code as the retention figures
        face = [_RUN if m in _REFERENCES else "white" if m in controls else _EDIT for m in models]
        edge = [_RUN if m in _REFERENCES else _EDIT for m in models]
        ax.barh(range(len(models)), x, xerr=err, color=face, edgecolor=edge, linewidth=1.2, capsize=2)
        base = report["scores"].get("base", {}).get(task, {}).get("value")
        if base is not None:
            ax.axvline(base, color="black", lw=0.8, ls=":")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(metric_words(report["metrics"].get(task, "score")), fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(models)), models, fontsize=8)
    axes[0][0].set_ylabel("model", fontsize=8)  # the panels share it
    axes[0][0].invert_yaxis()
    handles = [Patch(facecolor=_RUN, edgecolor=_RUN, label="base and whole runs"),
               Patch(facecolor=_EDIT, edgecolor=_EDIT, label="edits"),
               Patch(facecolor="white", edgecolor=_EDIT, label="controls")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    skipped = f"\nno panel for {', '.join(zero)}: every model scored 0 there" if zero else ""
    fig.suptitle(f"{report['name']}: scores (± lm-eval's standard error; dotted line: base){skipped}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_plots(report: dict, out: Path) -> list[str]:
    made = [scores_per_model(report, out / FIG_SCORES), retention_per_edit(report, out / FIG_RETENTION),
            frontier_plot(report, out / FIG_FRONTIER), pass_at_k_plot(report, out / FIG_PASS_AT_K),
            kl_forgetting_plot(report, out / FIG_KL_FORGETTING)]
    return [p.name for p in made if p is not None]


def retention_across_runs(report: dict, path: Path) -> Path | None:
    """Per edit: every run's R (small hollow marks), the mean over runs with its hierarchical interval, and
    the one-run interval shaded behind it."""
    rows = [r for r in report["rows"] if not r["control_task"]]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if not rows or not any(r["mean"] is not None for r in rows):
        return None
    edits = [e["name"] for e in report["edits"]]
    controls = {e["name"] for e in report["edits"] if e.get("control_of")}
    runs = list(report["runs"])
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(edits) * max(1, len(tasks) * 0.6) + 1.9))
    offsets = np.linspace(-0.2, 0.2, len(tasks)) if len(tasks) > 1 else [0.0]
    markers = "osD^v"
    for ti, task in enumerate(tasks):
        for r in (x for x in rows if x["task"] == task):
            y = edits.index(r["edit"]) + offsets[ti]
            c = _CONTROL if r["edit"] in controls else _EDIT
            per = [r["per_run"][n]["retention"] for n in runs if r["per_run"].get(n, {}).get("retention") is not None]
            ax.plot(per, [y + 0.14] * len(per), "v", color=c, ms=5, mfc="white", alpha=0.9)  # each run, just below
            if r["mean"] is None:
                continue
            if r.get("one_run_low") is not None and r.get("one_run_high") is not None:  # where one run lands
                ax.plot([r["one_run_low"], r["one_run_high"]], [y, y], color=c, lw=7, alpha=0.18,
                        solid_capstyle="butt")
            ax.errorbar(r["mean"], y, xerr=[[max(r["mean"] - r["ci_low"], 0)], [max(r["ci_high"] - r["mean"], 0)]],
                        fmt=markers[ti % 5], color=c, ecolor=c, capsize=3, mfc="white" if r["edit"] in controls else c,
                        label=task if ti == tasks.index(task) and r is next(x for x in rows if x["task"] == task) else None)
    return _finish_retention_axes(fig, ax, edits, controls, len(tasks) > 1, path,
                                  "gain retention R: mean over runs with its hierarchical-bootstrap 95% interval; "
                                  "▽ each run's R;\nshaded: where one run lands (one-run 95% interval)",
                                  f"{report['name']}: retention over {len(runs)} runs")


def runs_plots(report: dict, out: Path) -> list[str]:
    made = [retention_across_runs(report, out / FIG_RETENTION), frontier_plot(report, out / FIG_FRONTIER, r_name="R̄")]
    return [p.name for p in made if p is not None]
