"""Sampled scores and truncation counts from lm-eval's logged samples (the I/O edge of ``scoring.sampled``).

Per task, on the filter of its primary metric:

- greedy: the one generation per problem, its logged answer (``filtered_resps``)
  and its logged metric value give the truncation counts;
- sampled (``repeats: n``): lm-eval scores only the first of the n generations
  (its ``take_first`` filter), so each generation is re-scored here with the
  task's own filter pipeline (without ``take_first``) and its own
  ``process_results``, which gives avg@n, pass@k and maj@k.

Token counts come from re-encoding each logged generation with the model's
tokenizer; the budget is the task's ``max_gen_toks`` as lm-eval ran it.
"""

from __future__ import annotations

from typing import Callable, Hashable, Mapping

from rankedit.core.errors import RankeditError
from rankedit.scoring.results import TaskScore, avg_key
from rankedit.scoring.sampled import Problem, generations, logged_problems, summarize, truncation_counts

HF_DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's hf and vllm backends when neither task nor run sets it
NO_ANSWER = ("[invalid]", "")  # lm-eval's regex filter fallback, and an empty extraction


def max_gen_toks(raw: Mapping, task: str) -> int:
    """The generation budget lm-eval used for ``task`` (its saved config, overrides included)."""
    gk = ((raw.get("configs") or {}).get(task) or {}).get("generation_kwargs") or {}
    return int(gk.get("max_gen_toks") or HF_DEFAULT_MAX_GEN_TOKS)


def token_counter(path: str) -> Callable[[str], int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _answer(a) -> Hashable | None:
    return None if a is None or (isinstance(a, str) and a.strip() in NO_ANSWER) else (
        a if isinstance(a, Hashable) else repr(a))


def greedy_problems(samples, metric: str, count_tokens) -> list[Problem]:
    """One-sample problems from the logged greedy answers and metric values (one filter's records)."""
    out = []
    for s in samples:
        (g,) = generations(s)
        fr = s.get("filtered_resps") or [None]
        out.append(Problem(int(s["doc_id"]), (_answer(fr[0]),), (bool(s.get(metric)),), (count_tokens(g),)))
    return out


def _per_generation_filter(task, flt: str) -> Callable[[str], Hashable | None]:
    """The task's filter pipeline ``flt`` applied to one generation, its final take_first left out."""
    from lm_eval.filters.selection import TakeFirstFilter

    ens = next((f for f in getattr(task, "_filters", []) if f.name == flt), None)
    if ens is None:
        raise RankeditError(f"task {task.config.task!r} has no filter {flt!r} to re-score sampled generations")
    steps = [f() for f in ens.filters]
    steps = [f for f in steps if not isinstance(f, TakeFirstFilter)]

    def extract(text: str):
        resps = [[text]]
        for f in steps:
            resps = list(f.apply(resps, [None]))
        a = resps[0]
        return _answer(a[0] if isinstance(a, list) else a)
    return extract


def _per_generation_metric(task, metric: str) -> Callable[[Hashable | None, Mapping], bool]:
    def correct(answer, sample) -> bool:
        given = NO_ANSWER[0] if answer is None else answer
        v = task.process_results(sample["doc"], [given]).get(metric)
        if v not in (0, 1, True, False):
            raise RankeditError(f"sampled scores need a 0/1 metric; {task.config.task!r} {metric} gave {v!r}")
        return bool(v)
    return correct


def task_summaries(raw: Mapping, samples: Mapping[str, list], primary: Mapping[str, str], count_tokens,
                   tasks: Mapping | None = None, n: int | Mapping[str, int] | None = None) -> tuple[dict, dict]:
    """(task -> sampled summary, task -> truncation counts) for the tasks with logged samples.

    ``primary``: task -> "metric,filter"; ``tasks``: lm-eval's built Task objects by
    name, needed only for sampled runs (``n``: for every task, or per sampled task)."""
    sampled, trunc = {}, {}
    every = n
    for task, logged in samples.items():
        n = every.get(task) if isinstance(every, Mapping) else every
        if task not in primary or not logged:
            continue
        kind = ((raw.get("configs") or {}).get(task) or {}).get("output_type", "generate_until")
        if kind != "generate_until":  # loglikelihood tasks generate nothing: no samples, nothing to truncate
            if n is not None:
                raise RankeditError(f"{task!r} is a {kind} task: sampled scoring needs generate_until tasks")
            continue
        metric, _, flt = primary[task].partition(",")
        recs = [s for s in logged if s.get("filter", "none") == flt]
        budget = max_gen_toks(raw, task)
        if n is None:
            problems = greedy_problems(recs, metric, count_tokens)
        else:
            if tasks is None or task not in tasks:
                raise RankeditError(f"cannot re-score the sampled generations of {task!r}: task not loaded")
            problems = logged_problems(recs, _per_generation_filter(tasks[task], flt),
                                       _per_generation_metric(tasks[task], metric), count_tokens)
            summary = summarize(problems, budget)
            if summary["n"] != n:
                raise RankeditError(f"{task!r}: expected {n} generations per problem, lm-eval logged {summary['n']}")
            sampled[task] = {"metric": primary[task], **summary}
        trunc[task] = {"max_gen_toks": budget, **truncation_counts(problems, budget)}
    return sampled, trunc


def avg_scores(sampled: Mapping[str, dict]) -> dict[str, TaskScore]:
    """task -> the avg@n TaskScore (per-problem avg@n: what retention's paired bootstrap resamples)."""
    out = {}
    for task, s in sampled.items():
        per = {int(k): float(v) for k, v in s["avg_at_n_per_problem"].items()}
        key = avg_key(s["metric"], s["n"])
        vals = list(per.values())
        m = len(vals)
        se = (sum((v - s["avg_at_n"]) ** 2 for v in vals) / (m - 1) / m) ** 0.5 if m > 1 else None
        out[task] = TaskScore(task, key, s["avg_at_n"], se, m, per)
    return out


def attach(ms, primary_metrics: Mapping[str, str], n: int | Mapping[str, int] | None, tasks: Mapping | None) -> None:
    """Fill ``ms.sampled`` and ``ms.truncation`` of one ModelScores; a sampled run also gets, per task,
    the avg@n score (which ScoreResult.primary_metric then prefers)."""
    primary = {}
    for task, metrics in ms.scores.items():
        want = primary_metrics.get(task)
        primary[task] = want if want in metrics else next(iter(metrics))
    ms.sampled, ms.truncation = task_summaries(ms.raw, ms.samples, primary, token_counter(ms.path), tasks, n)
    for task, ts in avg_scores(ms.sampled).items():
        ms.scores[task][ts.metric] = ts
