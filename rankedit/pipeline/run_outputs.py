"""``rankedit run``'s outputs: OUT/report.json, OUT/report.md, the figures, and each edit's
scores and analysis (for ``rankedit push``). The driver alone writes them, atomically,
whichever executor built and scored the models.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rankedit.files.atomic import atomic_write_text
from rankedit.files.inventory import register
from rankedit.core.names import (ANALYSIS_SUMMARY, EDIT_ANALYSIS, EDIT_SCORES, FIG_EARLY_STOP, FIG_MERGES, REPORT_HTML,
                                 REPORT_JSON, REPORT_MD)
from rankedit.core import machine
from rankedit.edits.registry import describe
from rankedit.files.patch import patch_size
from rankedit.pipeline.early_stop_stage import early_stop_block
from rankedit.pipeline.trajectory_stage import trajectory_markdown
from rankedit.report import rows as rep
from rankedit.report.early_stop import early_stop_markdown
from rankedit.report.early_stop_figure import early_stop_plot
from rankedit.report.run_figures import report_plots
from rankedit.report.frontier import edit_size, frontier_rows, matrix_facts, with_exact_patch
from rankedit.report.merges import (interference_prediction, merge_markdown, merge_retention_plot, merge_rows,
                                    prediction_markdown)
from rankedit.report.pass_at_k import pass_at_k_block, truncation_block
from rankedit.core.resources import shipped_dir
from rankedit.report.html import captions, report_html

if TYPE_CHECKING:
    from rankedit.pipeline.models import Models
    from rankedit.pipeline.plan import Plan


def write_report(plan: Plan, models: Models, edits: dict[str, dict], result, failures: dict,
                 summaries: dict, notes: dict, out: Path, timings: dict, kl: dict | None = None,
                 trajectory: dict | None = None, interference: dict | None = None) -> dict:
    """Write OUT/report.json and report.md (atomically), the figures, and each edit's own files."""
    # shapes and dtypes of the edited matrices, from the base's header: the edits' sizes where a manifest lacks them
    facts = matrix_facts(models.base, sorted({m["name"] for info in edits.values() for m in info.get("matrices", [])}))
    edit_info = []
    for e in plan.builds:
        info = edits[e.name]
        edit_info.append({"name": e.name, "method": e.method, "of": e.of, "control_of": e.control_of,
                          "params": info["params"], "keeps": describe(e.method, info["params"]),
                          "path": info["path"], "energy_kept": info["summary"].get("energy_kept"),
                          "density": info["summary"].get("density"),
                          "energy_kept_stored": info["summary"].get("energy_kept_stored"),
                          "stored_delta_error": info["summary"].get("stored_delta_error"),
                          **edit_size(e.method, info["params"], info["summary"], info.get("matrices", []), facts)})
    rows = rep.edit_rows(result, edit_info, n_boot=plan.score.n_boot)
    rep.check_columns(rows)
    control_tasks = [t for t in result.suite.control_tasks if t in result.tasks]
    references = rep.reference_rows(result, n_boot=plan.score.n_boot)
    frontier = frontier_rows(edit_info, rows, result.tasks, control_tasks)
    if frontier:  # the lossless point: the tuned run as an exact patch of its base, beside every lossy edit
        frontier = with_exact_patch(frontier, references, patch_size(models.base, models.tuned), result.tasks,
                                    control_tasks)
    report = {
        "name": plan.name,
        "plan": plan.model_dump(mode="json"),
        "models": {"base": models.base, "tuned": models.tuned, "other_tuned": models.other_tuned, "sft": models.sft},
        "tasks": result.tasks,
        "control_tasks": [t for t in result.suite.control_tasks if t in result.tasks],
        "metrics": {t: result.primary_metric(t) for t in result.tasks},
        "scores": rep.scores_block(result),
        "rows": rows,
        "references": references,
        "sampling": result.settings.sampling.as_dict() if result.settings.sampling else None,
        # the suite's tasks sampled by default in an otherwise greedy run (reasoning's AIME: avg@16)
        "task_sampling": {t: s.as_dict() for t, s in result.settings.task_sampling},
        "pass_at_k": pass_at_k_block(result, n_boot=plan.score.n_boot),
        "truncation": truncation_block(result),
        "edits": edit_info,
        "frontier": frontier,
        "analysis": {"runs": {r: f"analysis/{r}" for r in summaries}, "compare": rep.compare_block(summaries),
                     "notes": notes,
                     # LoRA-trained runs: the rank bound that holds by construction (rankedit.files.adapter)
                     "adapters": {r: s["adapter"] for r, s in summaries.items() if "adapter" in s}},
        "failures": failures,
        "timings_s": timings,
        # where and when it was measured: README findings quote them, and times only compare on one machine
        "machine": machine.describe(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    if plan.merges:  # each merge against each of its runs (rankedit.report.rows.merge_rows)
        report["merges"] = merge_rows(result, [{"name": m.name, "runs": m.runs} for m in plan.merges],
                                      n_boot=plan.score.n_boot)
        if interference is not None:  # which figure of the runs, measured before merging, predicts the loss
            report["interference"] = interference
            report["merge_prediction"] = interference_prediction(
                [m.model_dump() for m in plan.merges], report["merges"], interference["pairs"], n_boot=plan.score.n_boot)
    if kl:  # the plan's `kl:` stage (rankedit.pipeline.kl_stage); its section and figure read it
        report["kl"] = kl
    if trajectory is not None:
        report["trajectory"] = trajectory
    stop = early_stop_block(plan, models, edits, rows)
    if stop is not None:
        report["early_stop"] = stop
    figures = report_plots(report, out)
    if report.get("merges") and merge_retention_plot(report, out / FIG_MERGES):
        figures.append(FIG_MERGES)
    if stop is not None and early_stop_plot(stop, out / FIG_EARLY_STOP):
        figures.append(FIG_EARLY_STOP)
    register(*(out / f for f in figures))
    figures += trajectory["figures"] if trajectory else []
    for run in [*summaries, *(["merged-runs"] if interference is not None else [])]:
        for png in sorted((out / "analysis" / run).glob("*.png")):
            figures.append(f"analysis/{run}/{png.name}")
    report["figures"] = figures
    atomic_write_text(out / REPORT_JSON, json.dumps(report, indent=2, allow_nan=False) + "\n")
    md = rep.markdown(report, out) + "\n".join(
        merge_markdown(report.get("merges", [])) + prediction_markdown(report.get("merge_prediction"))
        + trajectory_markdown(trajectory) + early_stop_markdown(stop) + [""])
    atomic_write_text(out / REPORT_MD, md)
    write_html(out, md, figures, report["name"])
    _attach_to_edits(report, summaries, out)
    return report


def _attach_to_edits(report: dict, summaries: dict, out: Path) -> None:
    """Each edit dir gets the scores and analysis ``rankedit push`` puts on its model card.

    The scores file is a report.json restricted to this edit and the two models
    it is measured against (base, and the run whose update it edits as "tuned").
    """
    for e in report["edits"]:
        d, sc = Path(e["path"]), report["scores"]
        if e["name"] in sc:
            own = {"base": sc.get("base", {}), "tuned": sc.get(e["of"], {}), e["name"]: sc[e["name"]]}
            doc = {"name": report["name"], "scores": own,
                   "primary_metrics": report["metrics"], "control_tasks": report["control_tasks"],
                   "rows": [r for r in report["rows"] if r["edit"] == e["name"]]}
            atomic_write_text(d / EDIT_SCORES, json.dumps(doc, indent=2) + "\n")
        if e["of"] in summaries:
            atomic_write_text(d / EDIT_ANALYSIS, (out / "analysis" / e["of"] / ANALYSIS_SUMMARY).read_text())


def write_html(out: Path, md: str, figures: list[str], title: str) -> None:
    """OUT/report.html: report.md with its figures embedded and captioned (``rankedit.report.html``)."""
    caps = captions((shipped_dir("docs") / "figures.md").read_text())
    atomic_write_text(out / REPORT_HTML, report_html(md, {f: (out / f).read_bytes() for f in figures}, caps, title))
