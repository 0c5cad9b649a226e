"""pass@k curves with bootstrap intervals, where base and another model cross, and truncation (pure).

From a sampled score (``rankedit.scoring.sampled``): each problem's c of n
correct samples gives its exact pass@k for k = 1..n; a task's curve is the
mean over problems, and its 95% interval a percentile bootstrap over problems
(the same resampled problems for every k and every model, as for retention).
A model *crosses* base at the first k where the sign of (model - base) turns
against its sign at k = 1 (base overtaking a tuned model at large k); ties,
e.g. both at 1.0, are not a crossing.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from rankedit.scoring.retention import bootstrap_indices, percentiles
from rankedit.scoring.sampled import pass_at_k_curve


def correct_counts(sampled_task: Mapping) -> dict[int, int]:
    """doc_id -> c, the number of correct samples, from a task's sampled summary."""
    n = sampled_task["n"]
    return {int(d): round(float(v) * n) for d, v in sampled_task["avg_at_n_per_problem"].items()}


def curve(counts: Sequence[int], n: int, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """pass@k for k = 1..n with its bootstrap interval over problems."""
    per = np.array([pass_at_k_curve(n, c) for c in counts], dtype=np.float64)  # problems x k
    reps = per[bootstrap_indices(len(counts), n_boot, seed)].mean(axis=1)  # n_boot x k
    ci = [percentiles(reps[:, j], alpha) for j in range(n)]
    return {"k": list(range(1, n + 1)), "value": per.mean(axis=0).tolist(),
            "ci_low": [lo for lo, _ in ci], "ci_high": [hi for _, hi in ci]}


def crossing(base: Sequence[float], model: Sequence[float]) -> int | None:
    """The first k (1-based) where model - base changes sign against k = 1; None if it never does."""
    d = [m - b for b, m in zip(base, model)]
    if not d or d[0] == 0:
        return None
    for k, x in enumerate(d, start=1):
        if x * d[0] < 0:
            return k
    return None


def pass_at_k_block(result, n_boot: int = 2000) -> dict:
    """task -> {n, models: label -> curve (+ maj@k, crosses_base_at)} for every sampled model.

    Problems are those every sampled model has (the curves are then paired)."""
    out: dict[str, dict] = {}
    for task in result.tasks:
        sampled = {lab: m.sampled[task] for lab, m in result.models.items() if task in m.sampled}
        if not sampled:
            continue
        n = next(iter(sampled.values()))["n"]
        counts = {lab: correct_counts(s) for lab, s in sampled.items()}
        docs = sorted(set.intersection(*(set(c) for c in counts.values())))
        if not docs:
            continue
        models = {lab: {**curve([counts[lab][d] for d in docs], n, n_boot), "maj_at_k": s["maj_at_k"]}
                  for lab, s in sampled.items()}
        if "base" in models:
            for lab, c in models.items():
                if lab != "base":
                    c["crosses_base_at"] = crossing(models["base"]["value"], c["value"])
        out[task] = {"n": n, "problems": len(docs), "models": models}
    return out


def truncation_block(result) -> dict:
    """label -> task -> truncation counts (every score, greedy too)."""
    return {lab: dict(m.truncation) for lab, m in result.models.items() if m.truncation}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(report: Mapping) -> list[str]:
    """The pass@k and truncation sections of report.md."""
    lines: list[str] = []
    for task, blk in (report.get("pass_at_k") or {}).items():
        # the run's profile, or the suite's default for this task (reasoning's AIME in a greedy run)
        prof = report.get("sampling") or (report.get("task_sampling") or {}).get(task)
        n = blk["n"]
        ks = sorted({1, min(4, n), min(16, n), n})
        if not lines:
            lines += ["", "## pass@k (sampled)", "",
                      f"Each problem sampled n = {n} times ({prof['temperature']:g} temperature, top_p "
                      f"{prof['top_p']:g}, seed {prof['seed']}). pass@k is the unbiased estimator averaged over "
                      "problems, with a 95% bootstrap interval over problems; avg@n = pass@1. \"crosses base\": "
                      "the first k where the model's lead over base (or deficit) reverses."]
        lines += ["", f"**{task}** ({blk['problems']} problems)", "",
                  "| model | " + " | ".join(f"pass@{k}" for k in ks) + f" | maj@{n} | crosses base at k |",
                  "|---|" + "---|" * (len(ks) + 2)]
        for lab, c in blk["models"].items():
            cells = [f"{c['value'][k - 1]:.3f} [{c['ci_low'][k - 1]:.3f}, {c['ci_high'][k - 1]:.3f}]" for k in ks]
            cross = "–" if lab == "base" else (str(c.get("crosses_base_at")) if c.get("crosses_base_at") else "no")
            lines.append(f"| {lab} | " + " | ".join(cells) + f" | {c['maj_at_k'][-1]:.3f} | {cross} |")
    trunc = report.get("truncation") or {}
    if trunc:
        tasks = list(dict.fromkeys(t for per in trunc.values() for t in per))
        lines += ["", "## Truncated generations", "",
                  "Share of generations that used the whole token budget (max_gen_toks), per model and task; "
                  "in brackets, how many of them still had an answer extracted and how many of those were "
                  "scored correct: answers read from cut-off text, which a larger budget could change.", "",
                  "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for lab, per in trunc.items():
            cells = []
            for t in tasks:
                c = per.get(t)
                cells.append("–" if c is None else
                             f"{_pct(c['rate'])} of {c['generations']}"
                             + (f" (answered {c['truncated_answered']}, correct {c['truncated_correct']})"
                                if c["truncated"] else ""))
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    return lines
