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

from pathlib import Path

from rankedit.publish import card as cardlib

TUNED = "__tuned__"  # the tuned model's label inside the rebuilt result (edit_rows calls the base "base")


def _scores_of(doc: dict, folder: Path, label: str) -> dict | None:
    """task -> metric -> TaskScore (with per-problem scores) of ``label``, or None when its samples are not there."""
    from rankedit.scoring.score import load_raw, parse_results

    entry = (doc.get("models") or {}).get(label)
    results = entry.get("results") if isinstance(entry, dict) else None
    if not isinstance(results, str):
        return None
    d = (folder / results).parent
    if not (d / "results.json").is_file() or not any(d.glob("samples_*.jsonl")):
        return None
    return parse_results(load_raw(d))


def retention_rows(doc: dict, folder: Path, label: str, base_label: str, tuned_label: str,
                   n_boot: int = 2000) -> list[dict]:
    """`rankedit run`'s retention rows for ``label`` from a scores.json in ``folder``; [] without samples."""
    from rankedit.report.rows import edit_rows
    from rankedit.scoring.score import ModelScores, ScoreResult, Settings
    from rankedit.scoring.suites import Suite

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
    """This checkpoint's scores for the card (see :func:`rankedit.publish.card.select_scores`), retention included
    whenever the file allows it."""
    from rankedit.publish.hub import _read_json

    doc = _read_json(path, "scores file")
    sel = cardlib.select_scores(doc, names, base_names, tuned_names)
    if sel is None or not isinstance(doc.get("scores"), list) or not (sel["base_label"] and sel["tuned_label"]):
        return sel
    rows = retention_rows(doc, path.parent, sel["label"], sel["base_label"], sel["tuned_label"])
    if not rows:
        return sel
    return cardlib.select_scores({**doc, "rows": rows}, [sel["label"]], base_names, tuned_names)
