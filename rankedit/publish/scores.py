"""The scores a model card shows, read from a `rankedit score` or `rankedit run` file.

A `rankedit run` report already carries gain retention with its interval. A
`rankedit score` scores.json carries only each model's mean, but `rankedit
score -o OUT` also writes every model's per-problem samples under OUT/LABEL/;
when the file scores the base and the tuned model beside this checkpoint,
retention and forgetting are computed from those samples with the same
paired bootstrap (`rankedit.report.rows.edit_rows`) the run uses, so the card
shows the same numbers `rankedit run` would.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePath

from rankedit.core.errors import RankeditError
from rankedit.scoring.table import ScoreTable, read_table
from rankedit.core.names import LM_EVAL_RESULTS
from rankedit.publish.folder import read_json
from rankedit.report.rows import edit_rows
from rankedit.scoring.raw_files import load_raw
from rankedit.scoring.results import ModelScores, ScoreResult, Settings, parse_results
from rankedit.scoring.suites import Suite

TUNED = "__tuned__"  # the tuned model's label inside the rebuilt result (edit_rows calls the base "base")


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _find(labels: list[str], candidates: list[str], aliases: dict[str, list[str]] | None = None) -> str | None:
    """The one label among ``labels`` naming one of ``candidates``.

    A label matches by itself or by one of its ``aliases`` (the model path
    scores.json records for it), exactly, else by last path part when that
    is unambiguous.
    """
    names_of = {lab: [lab, *((aliases or {}).get(lab) or [])] for lab in labels}
    for c in candidates:
        for lab, names in names_of.items():
            if c and any(_same(n, c) for n in names):
                return lab
    tails = {PurePath(c.rstrip("/")).name for c in candidates if c}
    hits = {lab for lab, names in names_of.items() if any(PurePath(n.rstrip("/")).name in tails for n in names)}
    return hits.pop() if len(hits) == 1 else None


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def select_scores(doc: dict | ScoreTable, model: list[str], base: list[str], tuned: list[str]) -> dict | None:
    """Pick this checkpoint's scores out of a `scores.json` or `report.json` document (read by
    :func:`rankedit.scoring.table.read_table`), or out of a ScoreTable already read.

    ``model``, ``base`` and ``tuned`` are the names this checkpoint and its
    inputs may go by (path, label). Returns ``{"label", "tasks": [...]}`` with
    one entry per task: value, stderr, n, the base and tuned scores when
    known, and gain retention with its interval and forgetting when the
    document is a `rankedit run` report. None when the document has no scores.
    """
    table = doc if isinstance(doc, ScoreTable) else read_table(doc)
    by_model = table.scores
    if not by_model:
        return None
    aliases = {lab: [path] for lab, path in table.paths.items()}
    # retention rows: a report's own, or computed for a scores.json by retention_rows
    rows = table.rows

    labels = sorted(set(by_model) | {str(r.get("edit")) for r in rows if r.get("edit") is not None})
    base_lab = _find(list(by_model), base + ["base"], aliases)
    tuned_lab = _find(list(by_model), tuned + ["tuned"], aliases)
    label = _find(labels, model, aliases)
    if label is None:
        others = [lab for lab in labels if lab not in (base_lab, tuned_lab)]
        if len(others) == 1:  # a file about exactly one edit: that one
            label = others[0]
        else:
            raise RankeditError(f"scores file has no entry for this checkpoint; name it with --label (one of: {', '.join(others) or 'none'})")

    def value_of(lab: str | None, task: str) -> float | None:
        s = by_model.get(lab, {}).get(task) if lab else None
        return s.value if s else None

    own = by_model.get(label, {})
    row_by_task = {str(r.get("task")): r for r in rows if str(r.get("edit")) == label}
    tasks = []
    for task in sorted(set(own) | set(row_by_task)):
        s = own.get(task)
        r = row_by_task.get(task, {})
        value = s.value if s and s.value is not None else _num(r.get("score"))
        if value is None:
            continue
        lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
        tasks.append({
            "task": task, "metric": s.metric if s else "score", "value": value, "stderr": s.stderr if s else None,
            "n": s.n if s else None, "base": value_of(base_lab, task), "tuned": value_of(tuned_lab, task),
            "retention": _num(r.get("retention")), "ci": (lo, hi) if lo is not None and hi is not None else None,
            "forgetting": _num(r.get("forgetting")),
            "in_report": bool(r),
        })
    return {"label": label, "base_label": base_lab, "tuned_label": tuned_lab, "tasks": tasks} if tasks else None


def _scores_of(doc: dict, folder: Path, label: str) -> dict | None:
    """task -> metric -> TaskScore (with per-problem scores) of ``label``, or None when its samples are not there."""
    entry = (doc.get("models") or {}).get(label)
    results = entry.get("results") if isinstance(entry, dict) else None
    if not isinstance(results, str):
        return None
    d = (folder / results).parent
    if not (d / LM_EVAL_RESULTS).is_file() or not any(d.glob("samples_*.jsonl")):
        return None
    return parse_results(load_raw(d))


def retention_rows(doc: dict, folder: Path, label: str, base_label: str, tuned_label: str,
                   n_boot: int = 2000) -> list[dict]:
    """`rankedit run`'s retention rows for ``label`` from a scores.json in ``folder``; [] without samples."""
    scores = {lab: _scores_of(doc, folder, lab) for lab in (base_label, tuned_label, label)}
    if any(v is None for v in scores.values()):
        return []
    suite = Suite(name=str(doc.get("suite") or "scores"), description="", tasks=tuple(doc.get("tasks") or ()),
                  control_tasks=tuple(doc.get("control_tasks") or ()),
                  primary_metrics=dict(doc.get("primary_metrics") or {}))
    names = {base_label: "base", tuned_label: TUNED, label: label}
    models = {names[lab]: ModelScores(names[lab], "", {}, "", True, s, {}) for lab, s in scores.items()}
    result = ScoreResult(suite=suite, settings=Settings(), models=models)
    return edit_rows(result, [{"name": label, "method": "", "of": TUNED}], n_boot=n_boot)


def card_scores(path: Path, names: list[str], base_names: list[str], tuned_names: list[str]) -> dict | None:
    """This checkpoint's scores for the card (see :func:`select_scores`), retention included
    whenever the file allows it."""
    doc = read_json(path, "scores file")
    table = read_table(doc)
    sel = select_scores(table, names, base_names, tuned_names)
    if sel is None or not isinstance(doc.get("scores"), list) or not (sel["base_label"] and sel["tuned_label"]):
        return sel
    rows = retention_rows(doc, path.parent, sel["label"], sel["base_label"], sel["tuned_label"])
    if not rows:
        return sel
    table.rows = rows
    return select_scores(table, [sel["label"]], base_names, tuned_names)
