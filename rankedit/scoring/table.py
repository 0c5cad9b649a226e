"""One results schema: each model's headline score per task, as the report and the model card read it.

A ScoreTable holds, for each model and task, one MetricScore: the task's
primary metric (the one retention uses) with its value, stderr and n. It is
built in memory from a ScoreResult (``from_result``, what `rankedit run`
writes as report.json's "scores") or read back from a file by ``read_table``,
the one loader of both files rankedit writes:

- `rankedit score`'s scores.json: flat rows, one per (model, task, metric),
  and the model paths under "models";
- `rankedit run`'s report.json (and each edit's rankedit_scores.json):
  label -> task -> {value, stderr, n, metric}, with the retention "rows".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rankedit.core.errors import RankeditError

if TYPE_CHECKING:
    from rankedit.scoring.results import ScoreResult


@dataclass(frozen=True)
class MetricScore:
    """One model's score on one task: lm-eval's "metric,filter" key, its value, stderr and n."""

    metric: str
    value: float | None
    stderr: float | None
    n: int | None

    def as_json(self) -> dict:
        """The report's form (key order kept: report.json is compared byte for byte)."""
        return {"value": self.value, "stderr": self.stderr, "n": self.n, "metric": self.metric}


@dataclass
class ScoreTable:
    """label -> task -> MetricScore, with what a file says besides (model paths, retention rows)."""

    scores: dict[str, dict[str, MetricScore]]
    primary_metrics: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)  # label -> the model path the file records
    rows: list[dict] = field(default_factory=list)  # `rankedit run`'s retention rows (rankedit.report.rows)

    @classmethod
    def from_result(cls, result: ScoreResult) -> ScoreTable:
        """The primary metric of each task of each model a ScoreResult holds."""
        scores: dict[str, dict[str, MetricScore]] = {}
        for label, m in result.models.items():
            scores[label] = {}
            for task in m.scores:
                metric = result.primary_metric(task)
                ts = m.scores[task].get(metric)
                if ts is not None:
                    scores[label][task] = MetricScore(metric, ts.value, ts.stderr, ts.n)
        return cls(scores, {t: result.primary_metric(t) for t in result.tasks},
                   {label: m.path for label, m in result.models.items()})

    def as_json(self) -> dict:
        """model -> task -> {value, stderr, n, metric}: report.json's "scores"."""
        return {label: {task: s.as_json() for task, s in tasks.items()} for label, tasks in self.scores.items()}


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _from_rows(raw: list, primary: dict[str, str]) -> dict[str, dict[str, MetricScore]]:
    """scores.json's rows -> label -> task -> the suite's primary metric, else the first one given."""
    by_model: dict[str, dict[str, MetricScore]] = {}
    for r in raw:
        try:
            model, task, metric = str(r["model"]), str(r["task"]), r.get("metric") or "score"
            entry = MetricScore(metric, float(r["value"]), _num(r.get("stderr")), r.get("n"))
        except (KeyError, TypeError, ValueError) as e:
            raise RankeditError(f"malformed row in scores file: {r!r} ({e})") from None
        tasks = by_model.setdefault(model, {})
        if task not in tasks or (metric == primary.get(task) and tasks[task].metric != metric):
            tasks[task] = entry
    return by_model


def _from_block(raw: dict, primary: dict[str, str]) -> dict[str, dict[str, MetricScore]]:
    """report.json's "scores" block -> label -> task -> MetricScore."""
    def one(t: str, v: Any) -> MetricScore:
        v = v or {}
        return MetricScore(v.get("metric") or primary.get(t) or "score", _num(v.get("value")), _num(v.get("stderr")),
                           v.get("n"))

    return {str(m): {str(t): one(t, v) for t, v in tasks.items()} for m, tasks in raw.items()}


def read_table(doc: dict) -> ScoreTable:
    """The ScoreTable of a scores.json or report.json document; a RankeditError when it is neither."""
    if not isinstance(doc, dict) or "scores" not in doc:
        raise RankeditError("scores file holds neither `rankedit score` scores nor a `rankedit run` report (no 'scores' key)")
    raw = doc["scores"]
    primary = doc.get("primary_metrics") if isinstance(doc.get("primary_metrics"), dict) else {}
    models = doc.get("models") if isinstance(doc.get("models"), dict) else {}
    paths = {str(k): str(v["path"]) for k, v in models.items() if isinstance(v, dict) and v.get("path")}
    if isinstance(raw, list):
        scores = _from_rows(raw, primary)
    elif isinstance(raw, dict):
        scores = _from_block(raw, primary)
    else:
        raise RankeditError("scores file: 'scores' must be a list (scores.json) or a mapping (report.json)")
    rows = [r for r in doc.get("rows") or [] if isinstance(r, dict)]
    return ScoreTable(scores, dict(primary), paths, rows)
