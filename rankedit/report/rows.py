"""The pipeline's report: retention rows from scores and edit manifests, as JSON and Markdown.

Pure functions of a ScoreResult, the edits' manifests and the analysis
summaries; the pipeline writes what they return. One row per (edit, task):
on a task the tuned run trained, the edit's gain retention with its paired
bootstrap interval; on a control task, forgetting (s_base - s_edit: points lost, positive = worse)
with its interval. Definitions in docs/science.md, "Scores"; arithmetic in rankedit.scoring.retention.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from rankedit.analysis.metrics import view
from rankedit.report.findings import findings_paragraph
from rankedit.report.frontier import frontier_markdown
from rankedit.report.pass_at_k import markdown as pass_at_k_markdown
from rankedit.report.kl_report import kl_markdown
from rankedit.scoring import retention as ev
from rankedit.scoring.table import ScoreTable
from rankedit.core.cache_dir import cache_root
from rankedit.core.errors import RankeditError

REFERENCE_LABELS = ("tuned", "other_tuned", "sft")
# analysis metrics worth a line in the RL-vs-SFT table, in reading order (their records say which)
COMPARE_METRICS = view("compare")


def _nan_to_none(x):
    return None if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))) else x


def per_sample(result, label: str, task: str, metric: str) -> dict[int, float] | None:
    if label not in result.models or task not in result.models[label].scores:
        return None
    ts = result.models[label].scores[task].get(metric)
    return ts.per_sample if ts is not None and ts.per_sample else None


def edit_rows(result, edits: list[dict], n_boot: int = 2000) -> list[dict]:
    """One row per (edit, task). ``edits``: dicts with name, method, params, of, control_of, manifest summary."""
    rows = []
    control = set(result.suite.control_tasks)
    for e in edits:
        for task in result.tasks:
            metric = result.primary_metric(task)
            row: dict[str, Any] = {
                "edit": e["name"], "method": e["method"], "of": e["of"], "control_of": e.get("control_of"),
                "task": task, "metric": metric, "control_task": task in control,
                "score": None, "retention": None, "ci_low": None, "ci_high": None, "retention_defined": None,
                "reason": None, "gain": None, "gain_ci_low": None, "gain_ci_high": None,
                "forgetting": None, "forgetting_ci_low": None, "forgetting_ci_high": None, "n": None,
                "energy_kept": e.get("energy_kept"), "density": e.get("density"),
                # the edit as written (what was scored): its energy and how far rounding moved it
                "energy_kept_stored": e.get("energy_kept_stored"), "stored_delta_error": e.get("stored_delta_error"),
            }
            rows.append(row)
            samples = {lab: per_sample(result, lab, task, metric) for lab in ("base", e["of"], e["name"])}
            if samples[e["name"]] is None:
                row["reason"] = "edit not scored" if e["name"] not in result.models else "no per-problem scores"
                continue
            row["score"] = result.get(e["name"], task, metric).value
            if samples["base"] is None:
                row["reason"] = "base not scored"
                continue
            if task in control:
                ids, arr = ev.align({"base": samples["base"], "edit": samples[e["name"]]})
                f = ev.forgetting(arr["base"], arr["edit"], n_boot=n_boot)
                row.update(forgetting=f.value, forgetting_ci_low=f.ci_low, forgetting_ci_high=f.ci_high, n=len(ids))
                continue
            if samples[e["of"]] is None:
                row["reason"] = f"{e['of']} not scored"
                continue
            ids, arr = ev.align({"base": samples["base"], "ref": samples[e["of"]], "edit": samples[e["name"]]})
            r = ev.retention(arr["base"], arr["ref"], arr["edit"], n_boot=n_boot)
            row.update(retention=_nan_to_none(r.value), ci_low=_nan_to_none(r.ci_low), ci_high=_nan_to_none(r.ci_high),
                       retention_defined=r.defined, reason=r.reason, gain=r.gain_edit.value,
                       gain_ci_low=r.gain_edit.ci_low, gain_ci_high=r.gain_edit.ci_high, n=r.n)
    return rows


def reference_rows(result, n_boot: int = 2000) -> list[dict]:
    """Gain (or, on control tasks, forgetting) of the tuned, second-seed and SFT runs over base."""
    rows = []
    control = set(result.suite.control_tasks)
    for label in REFERENCE_LABELS:
        if label not in result.models:
            continue
        for task in result.tasks:
            metric = result.primary_metric(task)
            b, m = per_sample(result, "base", task, metric), per_sample(result, label, task, metric)
            row = {"model": label, "task": task, "metric": metric, "control_task": task in control,
                   "score": result.get(label, task, metric).value if m is not None else None,
                   "gain": None, "ci_low": None, "ci_high": None, "significant": None, "n": None}
            if b is not None and m is not None:
                ids, arr = ev.align({"base": b, "m": m})
                g = ev.gain(arr["base"], arr["m"], n_boot=n_boot)
                row.update(gain=g.value, ci_low=g.ci_low, ci_high=g.ci_high, significant=g.excludes_zero, n=len(ids))
            rows.append(row)
    return rows


def scores_block(result) -> dict:
    """model -> task -> {value, stderr, n, metric}: the primary metric of each task (``rankedit.scoring.table``)."""
    return ScoreTable.from_result(result).as_json()


def compare_block(summaries: Mapping[str, dict]) -> dict:
    """run -> metric -> mean over matrices, for the RL-vs-SFT table."""
    return {run: {k: s.get("mean", {}).get(k) for k in COMPARE_METRICS if k in s.get("mean", {})}
            | {"sparsity_bf16_model": s.get("model", {}).get("sparsity_bf16")}
            for run, s in summaries.items()}


# ---- Markdown ------------------------------------------------------------------------------
def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(v, lo, hi, digits: int = 2, pct: bool = False) -> str:
    if v is None:
        return "–"
    k = 100 if pct else 1
    return f"{v * k:+.{digits}f} [{lo * k:+.{digits}f}, {hi * k:+.{digits}f}]" if pct else \
        f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def shown_path(ref: str, out: str | os.PathLike | None = None) -> str:
    """A model as report.md names it: a Hub id as given, a cached model below ``$RANKEDIT_CACHE``,
    any other local folder relative to OUT (report.json keeps the absolute paths)."""
    p = Path(ref)
    if not p.is_absolute():
        return ref
    try:
        return "$RANKEDIT_CACHE/" + p.resolve().relative_to(cache_root().resolve()).as_posix()
    except (ValueError, OSError):
        pass
    return os.path.relpath(p, out) if out is not None else ref


def markdown(report: dict, out: str | os.PathLike | None = None) -> str:
    tasks = report["tasks"]
    control = set(report["control_tasks"])
    trained = [t for t in tasks if t not in control]
    lines = [f"# {report['name']}", ""] + findings_paragraph(report)
    shown = {k: shown_path(v, out) for k, v in report["models"].items() if v}
    lines += [f"Base `{shown['base']}` → tuned `{shown['tuned']}`"
              + (f"; SFT `{shown['sft']}`" if shown.get("sft") else "") + ".", ""]
    lines += ["Scores are lm-eval's " + ", ".join(f"`{report['metrics'][t]}` on {t}" for t in tasks) + ". "
              "R = (s_edit − s_base) / (s_run − s_base) with a 95% paired-bootstrap interval over the same "
              "problems (undefined when the run's own gain is not significant). Forgetting = s_base − s on "
              "control tasks: the points a model lost there (positive = worse). Energy kept = ‖E‖/‖ΔW‖ of the edit E as computed; on disk = ‖E'‖/‖ΔW‖ of the "
              "edit as written, E' = round(W0 + E) − W0, which is what was scored.", ""]

    head = ["model", "keeps", "energy kept", "on disk"] + [f"{t}" for t in tasks] + [f"R {t}" for t in trained] + \
        [f"forgetting {t}" for t in control if t in tasks]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sc = report["scores"]
    refs = {(r["model"], r["task"]): r for r in report["references"]}
    # the tuned run is R's reference (1) only on a task where its gain makes R defined
    undefined = {t for t in trained if (rs := [r for r in report["rows"] if r["task"] == t and r.get("of", "tuned") == "tuned"])
                 and all(r.get("retention_defined") is False for r in rs)}
    for label in ("base", *REFERENCE_LABELS):
        if label not in report["scores"]:
            continue
        cells = [f"**{label}**", "the whole update" if label != "base" else "–"] + \
            (["1.000", "1.000"] if label != "base" else ["–", "–"])
        cells += [_f(sc.get(label, {}).get(t, {}).get("value")) for t in tasks]
        cells += [("undefined" if t in undefined else "1 (reference)") if label == "tuned" else "–" for t in trained]
        for t in tasks:
            if t in control:
                r = refs.get((label, t))  # a reference holds its gain there; its forgetting is the gain negated
                cells.append(_ci(-r["gain"], -r["ci_high"], -r["ci_low"], 1, pct=True) if r and r["gain"] is not None
                             else "–")
        lines.append("| " + " | ".join(cells) + " |")
    by_edit: dict[str, list[dict]] = {}
    for r in report["rows"]:
        by_edit.setdefault(r["edit"], []).append(r)
    for e in report["edits"]:
        rows = {r["task"]: r for r in by_edit.get(e["name"], [])}
        name = e["name"] + (f" (control of {e['control_of']})" if e.get("control_of") else "")
        name += " [of SFT]" if e["of"] == "sft" else ""
        cells = [name, e["keeps"], _f(e.get("energy_kept")), _f(e.get("energy_kept_stored"))]
        cells += [_f(rows[t]["score"]) if t in rows else "–" for t in tasks]
        for t in trained:
            r = rows.get(t)
            cells.append(_ci(r["retention"], r["ci_low"], r["ci_high"]) if r and r["retention"] is not None
                         else ("undefined" if r and r["retention_defined"] is False else "–"))
        for t in tasks:
            if t in control:
                r = rows.get(t)
                cells.append(_ci(r["forgetting"], r["forgetting_ci_low"], r["forgetting_ci_high"], 1, pct=True)
                             if r and r["forgetting"] is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines += undefined_lines(report["rows"])
    if report.get("failures"):
        lines += ["", "**Failed:** " + "; ".join(f"{k}: {v}" for k, v in report["failures"].items())]
    lines += frontier_markdown(report.get("frontier", []), report["control_tasks"])
    lines += pass_at_k_markdown(report)
    lines += kl_markdown(report)

    cmp = report.get("analysis", {}).get("compare")
    if cmp:
        runs = list(cmp)
        lines += ["", "## Geometry of the updates (means over attention and MLP matrices)", ""]
        notes = report["analysis"].get("notes", {})
        lines += ["| metric | " + " | ".join(f"{r}{' (' + notes[r] + ')' if r in notes else ''}" for r in runs) + " |",
                  "|---|" + "---|" * len(runs)]
        metrics = [m for m in (*COMPARE_METRICS, "sparsity_bf16_model") if any(cmp[r].get(m) is not None for r in runs)]
        for m in metrics:
            lines.append(f"| {m} | " + " | ".join(_f(cmp[r].get(m), 4) for r in runs) + " |")
    for run, a in report.get("analysis", {}).get("adapters", {}).items():
        held = "every measured rank is within it" if a["bound_holds"] else \
            f"measured ranks above it on {len(a['over_bound'])} matrices"
        lines += ["", f"{run} is a LoRA adapter ({a['path']}): rank(ΔW) <= r (at most {a['r_max']}) by "
                      f"construction on its {a['targeted_matrices']} targeted matrices; {held}."]
    figs = report.get("figures", [])
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    return "\n".join(lines) + "\n"


def undefined_lines(rows: list[dict]) -> list[str]:
    """Why R is undefined, one line per (task, reference run) with the edits it concerns.

    The reason (the reference run's gain and its interval) is the same for every
    edit of that run on that task, so it is said once, naming the task and the run."""
    why: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        if r.get("control_task") or r["retention"] is not None or not r.get("reason"):
            continue
        why.setdefault((r["task"], r["of"], r["reason"]), []).append(r["edit"])
    if not why:
        return []
    lines = ["", "Retention undefined:"]
    for (task, of, reason), edits in sorted(why.items()):
        lines.append(f"- on {task}, against the {of} run ({', '.join(edits)}): {reason}")
    return lines


def check_columns(rows: list[dict]) -> None:
    """The documented columns are present in every row (a guard against silent schema drift)."""
    need = ("edit", "task", "score", "retention", "ci_low", "ci_high", "forgetting")
    for r in rows:
        missing = [k for k in need if k not in r]
        if missing:
            raise RankeditError(f"internal: report row lacks {', '.join(missing)}")
