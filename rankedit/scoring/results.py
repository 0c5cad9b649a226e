"""What `rankedit score` found, in memory: typed records, and lm-eval's output parsed into them (pure).

A ScoreResult holds, for each model and task, every metric lm-eval reported
(value, stderr, n) and the per-problem scores keyed by lm-eval's ``doc_id``,
which ``rankedit.scoring.retention`` pairs across models for retention intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from rankedit.core.errors import RankeditError
from rankedit.scoring.profiles import Sampling
from rankedit.scoring.suites import Suite

AVG_PREFIX = "avg@"


def avg_key(metric_key: str, n: int) -> str:
    """The "metric,filter" key of avg@n of lm-eval's ``metric_key``, e.g. "avg@16_exact_match,extract"."""
    metric, _, flt = metric_key.partition(",")
    return f"{AVG_PREFIX}{n}_{metric},{flt}"


_SKIP_KEYS = {"alias", "name", "sample_len", "samples", " "}


@dataclass
class TaskScore:
    """One metric of one task for one model, as lm-eval reported it."""

    task: str
    metric: str  # lm-eval's "metric,filter" key, e.g. "exact_match,strict-match"
    value: float
    stderr: float | None
    n: int
    per_sample: dict[int, float] = field(default_factory=dict, repr=False)  # doc_id -> score; empty for groups


@dataclass
class ModelScores:
    label: str
    path: str
    sha256: dict[str, str]
    key: str  # cache key
    cached: bool
    scores: dict[str, dict[str, TaskScore]]  # task -> metric -> TaskScore
    raw: dict = field(repr=False)  # lm-eval's results JSON (without samples)
    samples: dict[str, list] = field(repr=False, default_factory=dict)  # lm-eval's logged samples per task
    # task -> rankedit.scoring.sampled.summarize's dict (sampled profiles), and the truncation counts (all profiles)
    sampled: dict[str, dict] = field(repr=False, default_factory=dict)
    truncation: dict[str, dict] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Everything besides model and tasks that changes what lm-eval generates."""

    backend: str = "hf"
    batch_size: int | str = 8
    limit: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    max_gen_toks: int | None = None
    apply_chat_template: bool = False
    num_fewshot: int | None = None
    sampling: Sampling | None = None  # None: greedy
    # (task, sampling) of the tasks a suite samples by default while the run is otherwise greedy
    task_sampling: tuple[tuple[str, Sampling], ...] = ()

    def cache_dict(self) -> dict:
        d = asdict(self)
        d["device"] = self.device.split(":")[0]  # which GPU does not matter, CPU vs GPU might
        if self.sampling is None:
            del d["sampling"]  # greedy keys stay what they were before sampled profiles existed
        if not self.task_sampling:
            del d["task_sampling"]
        return d

    def sampling_of(self, task: str) -> Sampling | None:
        """How ``task`` is scored: the run's sampling, the suite's default for the task, or None (greedy)."""
        return self.sampling or dict(self.task_sampling).get(task)

    def samples_per_task(self) -> int | dict[str, int] | None:
        """n for every task (a sampled run), n per sampled task (task defaults), or None (greedy)."""
        if self.sampling is not None:
            return self.sampling.samples
        return {t: s.samples for t, s in self.task_sampling} or None


@dataclass
class ScoreResult:
    """Scores of several models on one suite; the pipeline's view of ``rankedit score``."""

    suite: Suite
    settings: Settings
    models: dict[str, ModelScores]  # label -> scores, in the order given
    failures: dict[str, str] = field(default_factory=dict)  # label -> one-line reason
    out: Path | None = None

    @property
    def tasks(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.models.values():
            seen.update(dict.fromkeys(m.scores))
        return list(seen)

    def primary_metric(self, task: str) -> str:
        """The metric used for retention on ``task``: the suite's choice, else the first reported."""
        for m in self.models.values():
            metrics = m.scores.get(task)
            if metrics:
                want = self.suite.primary_metrics.get(task)
                key = want if want in metrics else next(k for k in metrics if not k.startswith(AVG_PREFIX))
                sampling = self.settings.sampling_of(task)
                avg = avg_key(key, sampling.samples) if sampling else None
                return avg if avg in metrics else key  # sampled: avg@n of that metric
        raise RankeditError(f"no scores for task {task!r}; scored tasks: {', '.join(self.tasks) or 'none'}")

    def get(self, label: str, task: str, metric: str | None = None) -> TaskScore:
        if label not in self.models:
            why = f" (it failed: {self.failures[label]})" if label in self.failures else ""
            raise RankeditError(f"no scores for model {label!r}{why}")
        metric = metric or self.primary_metric(task)
        try:
            return self.models[label].scores[task][metric]
        except KeyError:
            raise RankeditError(f"model {label!r} has no score for task {task!r}, metric {metric!r}") from None

    def correctness(self, label: str, task: str, metric: str | None = None) -> dict[int, float]:
        """doc_id -> per-problem score (1/0 for exact match) of ``label`` on ``task``."""
        return self.get(label, task, metric).per_sample

    def rows(self) -> list[dict]:
        """One row per (model, task, metric): the ``scores`` list of scores.json."""
        return [
            {"model": label, "task": ts.task, "metric": ts.metric, "value": ts.value, "stderr": ts.stderr, "n": ts.n}
            for label, m in self.models.items()
            for metrics in m.scores.values()
            for ts in metrics.values()
        ]


# ---- parsing lm-eval's output ------------------------------------------------------
def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, (int, float)) and math.isfinite(float(x)):
        return float(x)
    return None


def per_sample_scores(samples: Iterable[Mapping]) -> dict[str, dict[int, float]]:
    """lm-eval's logged samples of one task -> "metric,filter" -> {doc_id: score}.

    Each logged sample holds one document under one filter, with the metric
    values it produced; metrics that are not one number per document (e.g.
    corpus-level BLEU inputs) are left out.
    """
    out: dict[str, dict[int, float]] = {}
    for s in samples:
        flt = s.get("filter", "none")
        for metric in s.get("metrics", []):
            v = _number(s.get(metric))
            if v is not None:
                out.setdefault(f"{metric},{flt}", {})[int(s["doc_id"])] = v
    return out


def parse_results(results: Mapping) -> dict[str, dict[str, TaskScore]]:
    """lm-eval's results dict (``simple_evaluate``'s return, or its saved JSON plus samples)
    -> task -> "metric,filter" -> TaskScore, groups included (without per-problem scores)."""
    samples = results.get("samples") or {}
    n_samples = results.get("n-samples") or {}
    parsed: dict[str, dict[str, TaskScore]] = {}
    for task, row in (results.get("results") or {}).items():
        per = per_sample_scores(samples.get(task, []))
        metrics: dict[str, TaskScore] = {}
        for key, val in row.items():
            if key in _SKIP_KEYS or "," not in key or "_stderr," in key:
                continue
            value = _number(val)
            if value is None:
                continue
            metric, flt = key.split(",", 1)
            stderr = _number(row.get(f"{metric}_stderr,{flt}"))
            ps = per.get(key, {})
            n = len(ps) or int(row.get("sample_len") or (n_samples.get(task) or {}).get("effective") or 0)
            metrics[key] = TaskScore(task, key, value, stderr, n, ps)
        if metrics:
            parsed[task] = metrics
    # a group's n is the sum over its scored subtasks
    for group, subtasks in (results.get("group_subtasks") or {}).items():
        for ts in parsed.get(group, {}).values():
            if ts.n == 0:
                ts.n = sum(next(iter(parsed[s].values())).n for s in subtasks if s in parsed)
    return parsed
