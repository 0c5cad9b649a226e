"""The across-run report: per-run and mean retention with intervals that cover training noise.

Pure functions of the per-run reports (each a complete single-run report) and
their ScoreResults. ``across_report`` returns the dict the pipeline writes as
OUT/report.json for a plan with several runs (organism seeds, or several tuned
runs of one base); ``markdown_runs`` renders it. Statistics: rankedit.scoring.across_runs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from rankedit.scoring import across_runs as ar
from rankedit.scoring import retention as ev
from rankedit.report.frontier import across_frontier_rows, frontier_markdown
from rankedit.report.rows import COMPARE_METRICS, REFERENCE_LABELS, per_sample

CI_METHOD = ("hierarchical bootstrap: runs resampled with replacement, then problems within each drawn run "
             "(paired across base, tuned and edit); 95% percentile interval")
ONE_RUN_METHOD = ("one-run interval: each replicate draws one run, then its problems with replacement, and takes "
                  "that run's value; 95% percentile interval of this mixture, where a single run of the recipe lands")


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _triples(results: Mapping[str, Any], task: str, labels: tuple[str, ...]) -> list[tuple] | None:
    """Per run, the aligned per-problem scores of ``labels``; None if any run lacks one of them."""
    out = []
    for res in results.values():
        metric = res.primary_metric(task)
        samples = {lab: per_sample(res, lab, task, metric) for lab in labels}
        if any(v is None for v in samples.values()):
            return None
        _, arr = ev.align(samples, list(labels))
        out.append(tuple(arr[lab] for lab in labels))
    return out


def _summary(x: ar.AcrossRuns, per_run: dict) -> dict:
    return {"mean": _num(x.mean), "ci_low": _num(x.ci_low), "ci_high": _num(x.ci_high), "t_low": _num(x.t_low),
            "t_high": _num(x.t_high), "one_run_low": _num(x.one_low), "one_run_high": _num(x.one_high),
            "defined": x.defined, "reason": x.reason, "n_runs": x.n_runs,
            "per_run": per_run}


def across_rows(edits: list[dict], reports: Mapping[str, dict], results: Mapping[str, Any], n_boot: int) -> list[dict]:
    """One row per (edit, task): per-run R (or forgetting) with its interval, and the mean over runs."""
    first = next(iter(reports.values()))
    control = set(first["control_tasks"])
    rows = []
    for e in edits:
        for task in first["tasks"]:
            per = {}
            for name, rep in reports.items():
                r = next((x for x in rep["rows"] if x["edit"] == e["name"] and x["task"] == task), None)
                if r is None:
                    continue
                per[name] = ({"forgetting": r["forgetting"], "ci_low": r["forgetting_ci_low"],
                              "ci_high": r["forgetting_ci_high"]} if task in control else
                             {"retention": r["retention"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                              "defined": r["retention_defined"]})
            row = {"edit": e["name"], "method": e["method"], "of": e["of"], "control_of": e.get("control_of"),
                   "keeps": e["keeps"], "task": task, "control_task": task in control}
            labels = ("base", e["name"]) if task in control else ("base", e["of"], e["name"])
            data = _triples(results, task, labels)
            if data is None or len(per) != len(reports):
                row.update(_summary(ar.AcrossRuns(math.nan, math.nan, math.nan, math.nan, math.nan, (), 0, False,
                                                  "not scored in every run"), per))
            elif task in control:
                row.update(_summary(ar.hierarchical_forgetting(data, n_boot=n_boot), per))
            else:
                defined = [bool(p["defined"]) for p in per.values()]
                row.update(_summary(ar.hierarchical_retention(data, defined, n_boot=n_boot), per))
            rows.append(row)
    return rows


def reference_rows(reports: Mapping[str, dict], results: Mapping[str, Any], n_boot: int) -> list[dict]:
    """Gain (or forgetting) of tuned, second seed and SFT over base, per run and over runs."""
    first = next(iter(reports.values()))
    rows = []
    for label in REFERENCE_LABELS:
        for task in first["tasks"]:
            data = _triples(results, task, ("base", label))
            if data is None:
                continue
            per = {name: {"gain": r["gain"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                          "score": r["score"], "significant": r["significant"]}
                   for name, rep in reports.items() for r in rep["references"]
                   if r["model"] == label and r["task"] == task}
            rows.append({"model": label, "task": task, "control_task": task in first["control_tasks"],
                         **_summary(ar.hierarchical_difference(data, n_boot=n_boot), per)})
    return rows


def conclusions(edits: list[dict], reports: Mapping[str, dict], results: Mapping[str, Any], n_boot: int) -> list[dict]:
    """Claims checked run by run: edit vs its control, R > 0, R < 1 on every trained task.

    A claim holds in a run when that run's paired-bootstrap interval excludes
    the compared value on the claimed side.
    """
    first = next(iter(reports.values()))
    trained = [t for t in first["tasks"] if t not in first["control_tasks"]]
    out = []

    def claim(text, task, intervals, value, side):
        above, below, _ = ar.holds_in_every_run(intervals, value)
        k = above if side == "above" else below
        out.append({"claim": text, "task": task, "holds": k, "runs": len(intervals), "every_run": k == len(intervals)})

    for task in trained:
        for e in edits:
            per = [next((x for x in rep["rows"] if x["edit"] == e["name"] and x["task"] == task), None)
                   for rep in reports.values()]
            if any(r is None or r["retention"] is None for r in per):
                continue
            ivs = [ev.Interval(r["retention"], r["ci_low"], r["ci_high"]) for r in per]
            claim(f"{e['name']} keeps part of the gain (R > 0)", task, ivs, 0.0, "above")
            claim(f"{e['name']} keeps less than the whole gain (R < 1)", task, ivs, 1.0, "below")
            if e.get("control_of"):
                data = _triples(results, task, ("base", e["of"], e["control_of"], e["name"]))
                if data is not None:
                    ivs = [ar.retention_difference(b, t, edit, ctl, n_boot=n_boot) for b, t, edit, ctl in data]
                    claim(f"{e['control_of']} keeps more than its control {e['name']}", task, ivs, 0.0, "above")
    return out


def geometry(reports: Mapping[str, dict]) -> dict:
    """run kind (tuned, sft, sft-matched) -> metric -> mean, sd, range over runs; plus RL-vs-SFT sign counts."""
    kinds: dict[str, dict[str, list]] = {}
    for rep in reports.values():
        for kind, metrics in rep.get("analysis", {}).get("compare", {}).items():
            for m, v in metrics.items():
                kinds.setdefault(kind, {}).setdefault(m, []).append(v)
    spread = {kind: {m: ar.spread(v) for m, v in ms.items()} for kind, ms in kinds.items()}
    signs = {}
    for other in ("sft", "sft-matched"):
        if "tuned" not in kinds or other not in kinds:
            continue
        for m in COMPARE_METRICS:
            a, b = kinds["tuned"].get(m), kinds[other].get(m)
            if a and b and len(a) == len(b) and all(x is not None for x in a + b):
                signs.setdefault(other, {})[m] = {"rl_greater": sum(x > y for x, y in zip(a, b)), "runs": len(a)}
    return {"spread": spread, "rl_vs": signs}


def across_report(plan, reports: Mapping[str, dict], results: Mapping[str, Any], n_boot: int = 2000) -> dict:
    first = next(iter(reports.values()))
    edits = first["edits"]
    rows = across_rows(edits, reports, results, n_boot)
    return {
        "name": plan.name,
        "plan": plan.model_dump(mode="json"),
        "runs": {name: {"path": f"runs/{name}", "models": rep["models"]} for name, rep in reports.items()},
        "tasks": first["tasks"],
        "control_tasks": first["control_tasks"],
        "metrics": first["metrics"],
        "ci_method": CI_METHOD,
        "one_run_method": ONE_RUN_METHOD,
        "edits": [{k: e[k] for k in ("name", "method", "of", "control_of", "keeps")} for e in edits],
        "rows": rows,
        "frontier": across_frontier_rows(edits, rows, reports),
        "references": reference_rows(reports, results, n_boot),
        "conclusions": conclusions(edits, reports, results, n_boot),
        "geometry": geometry(reports),
    }


# ---- Markdown ------------------------------------------------------------------------------
def _iv(v, lo, hi, pct: bool = False) -> str:
    if v is None:
        return "–"
    k, d = (100, 1) if pct else (1, 2)
    s = f"{v * k:+.{d}f}" if pct else f"{v:.{d}f}"
    return s if lo is None or hi is None else s + (f" [{lo * k:+.{d}f}, {hi * k:+.{d}f}]" if pct else
                                                    f" [{lo:.{d}f}, {hi:.{d}f}]")


def _span(lo, hi, pct: bool = False) -> str:
    if lo is None or hi is None:
        return "–"
    return f"[{lo * 100:+.1f}, {hi * 100:+.1f}]" if pct else f"[{lo:.2f}, {hi:.2f}]"


def markdown_runs(report: dict) -> str:
    runs = list(report["runs"])
    control = set(report["control_tasks"])
    lines = [f"# {report['name']}", "", f"{len(runs)} runs: " + ", ".join(f"`{r}` ({report['runs'][r]['path']}/)"
                                                                    for r in runs) + ".", "",
             "Per run: R = (s_edit − s_base) / (s_run − s_base) with its 95% paired-bootstrap interval over the "
             "problems. Mean over runs: R̄ with a 95% interval from a " + report["ci_method"] + "; the t-interval "
             "over the per-run R is given beside it, and the one-run interval (where a single run lands: "
             "one run drawn, then its problems). Forgetting (control tasks) is s_base − s in points: what the model lost there (positive = worse).", ""]
    refs = [r for r in report["references"]]
    if refs:
        lines += ["## Gains of the tuned runs over base", "", "| model | task | " + " | ".join(runs) + " | mean [95%] |",
                  "|---|---|" + "---|" * (len(runs) + 1)]
        for r in refs:
            cells = [_iv(r["per_run"].get(n, {}).get("gain"), r["per_run"].get(n, {}).get("ci_low"),
                         r["per_run"].get(n, {}).get("ci_high"), pct=True) for n in runs]
            lines.append(f"| {r['model']} | {r['task']} | " + " | ".join(cells) + " | "
                         + _iv(r["mean"], r["ci_low"], r["ci_high"], pct=True) + " |")
    for task in report["tasks"]:
        is_control = task in control
        lines += ["", f"## {'Forgetting on' if is_control else 'Retention on'} {task}", "",
                  "| edit | keeps | " + " | ".join(runs) + " | mean [hierarchical 95%] | t-interval | one run lands in |",
                  "|---|---|" + "---|" * (len(runs) + 3)]
        for r in report["rows"]:
            if r["task"] != task:
                continue
            key = "forgetting" if is_control else "retention"
            cells = ["undefined" if r["per_run"].get(n, {}).get("defined") is False else
                     _iv(r["per_run"].get(n, {}).get(key), r["per_run"].get(n, {}).get("ci_low"),
                         r["per_run"].get(n, {}).get("ci_high"), pct=is_control) for n in runs]
            mean = _iv(r["mean"], r["ci_low"], r["ci_high"], pct=is_control) if r["defined"] else "undefined"
            t = _iv(r["mean"], r["t_low"], r["t_high"], pct=is_control) if r["t_low"] is not None else "–"
            one = _span(r.get("one_run_low"), r.get("one_run_high"), pct=is_control) if r["defined"] else "–"
            name = r["edit"] + (f" (control of {r['control_of']})" if r["control_of"] else "")
            lines.append(f"| {name} | {r['keeps']} | " + " | ".join(cells) + f" | {mean} | {t} | {one} |")
    if report["conclusions"]:
        lines += ["", "## What holds in every run", "",
                  "A claim holds in a run when that run's 95% paired-bootstrap interval excludes the compared value.",
                  "", "| claim | task | runs where it holds |", "|---|---|---|"]
        for c in report["conclusions"]:
            mark = " (every run)" if c["every_run"] else ""
            lines.append(f"| {c['claim']} | {c['task']} | {c['holds']}/{c['runs']}{mark} |")
    lines += frontier_markdown(report.get("frontier", []), report["control_tasks"], r_name="R̄")
    geo = report["geometry"]["spread"]
    if geo:
        kinds = list(geo)
        lines += ["", "## Geometry of the updates over runs (mean ± sd of the per-run means over matrices)", "",
                  "| metric | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        metrics = [m for m in (*COMPARE_METRICS, "sparsity_bf16_model") if any(m in geo[k] for k in kinds)]
        for m in metrics:
            cells = []
            for k in kinds:
                s = geo[k].get(m)
                cells.append("–" if not s or s["mean"] is None else
                             f"{s['mean']:.4g}" + (f" ± {s['sd']:.2g}" if s["sd"] is not None else ""))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        for other, ms in report["geometry"]["rl_vs"].items():
            lines += ["", f"RL above {other} in: " + ", ".join(f"{m} {v['rl_greater']}/{v['runs']}"
                                                             for m, v in ms.items()) + "."]
    if report.get("failures"):
        lines += ["", "**Failed:** " + "; ".join(f"{k}: {v}" for k, v in report["failures"].items())]
    figs = report.get("figures", [])
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    return "\n".join(lines) + "\n"
