"""Scores of n sampled generations per problem: avg@n, pass@k, maj@k and the truncation rate (pure).

Definitions (docs/science.md, "Sampled scores"):

- avg@n: per problem, the share of its n samples that are correct; a task's
  avg@n is the mean over problems. The per-problem values are what the paired
  bootstrap of retention resamples.
- pass@k (k = 1..n): the unbiased estimator of Chen et al. (2021),
  ``1 - C(n-c, k) / C(n, k)`` per problem with c of n samples correct,
  averaged over problems. Computed exactly in integers and rounded once.
- maj@k: correctness of the most frequent extracted answer among the first k
  samples; ties go to the answer that occurs first among them. Samples with no
  extracted answer (None) do not vote; a problem with no vote scores 0.
- truncation: a generation is truncated when it used the whole token budget,
  ``n_tokens >= max_gen_toks``. lm-eval 0.4.13 logs neither a stop reason nor
  token counts (its samples hold the decoded text, stop sequence and EOS cut
  off), so the I/O edge re-encodes each raw response with the model's
  tokenizer; a re-encoding can only merge tokens, so the rate is a lower bound
  (exact for the organism's character tokenizer).

lm-eval 0.4.13 with ``repeats: n`` sends one request per document and logs, per
(document, filter), ``resps = [[r_1, ..., r_n]]`` (the raw generations) and
``filtered_resps`` (what the filter made of them); ``generations`` reads the former.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Callable, Hashable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the probability that k of the n samples, drawn without
    replacement, hold at least one of the c correct ones. Exact integers, one rounding."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    total = comb(n, k)
    return (total - comb(n - c, k)) / total  # int / int is correctly rounded


def pass_at_k_curve(n: int, c: int) -> list[float]:
    """pass@k for k = 1..n of one problem."""
    return [pass_at_k(n, c, k) for k in range(1, n + 1)]


def avg_at_n(correct: Sequence[bool]) -> float:
    """Share of correct samples of one problem."""
    if not correct:
        raise ValueError("avg@n of no samples")
    return sum(bool(x) for x in correct) / len(correct)


def majority(answers: Sequence[Hashable | None]) -> int | None:
    """Index of the first sample carrying the most frequent non-None answer (ties: first occurrence), or None."""
    counts: dict = {}
    first: dict = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        counts[a] = counts.get(a, 0) + 1
        first.setdefault(a, i)
    if not counts:
        return None
    best = max(counts.values())
    return min(first[a] for a, c in counts.items() if c == best)


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int) -> float:
    """1.0 when the majority answer of the first k samples is correct (0.0 with no answer at all)."""
    if len(answers) != len(correct) or not 1 <= k <= len(answers):
        raise ValueError(f"maj@{k} of {len(answers)} answers and {len(correct)} correctness values")
    i = majority(answers[:k])
    return 0.0 if i is None else float(bool(correct[i]))


def is_truncated(n_tokens: int, max_gen_toks: int) -> bool:
    """The generation used its whole budget (so it did not stop at a stop sequence or EOS)."""
    return n_tokens >= max_gen_toks


def truncation_rate(token_counts: Sequence[int], max_gen_toks: int) -> float:
    if not token_counts:
        raise ValueError("truncation rate of no generations")
    return sum(is_truncated(t, max_gen_toks) for t in token_counts) / len(token_counts)


@dataclass(frozen=True)
class Problem:
    """The n samples of one problem: extracted answers (None: nothing extracted), correctness, token counts."""

    doc_id: int
    answers: tuple[Hashable | None, ...]
    correct: tuple[bool, ...]
    n_tokens: tuple[int, ...] | None = None

    def __post_init__(self):
        lens = {len(self.answers), len(self.correct)} | ({len(self.n_tokens)} if self.n_tokens is not None else set())
        if len(lens) != 1 or not self.answers:
            raise ValueError(f"problem {self.doc_id}: answers, correctness and token counts differ in number or are empty")


def summarize(problems: Sequence[Problem], max_gen_toks: int | None = None) -> dict:
    """Task-level sampled scores: avg@n (and per problem), pass@k and maj@k for k = 1..n, truncation.

    Every problem must have the same n (lm-eval's ``repeats`` gives that).
    ``truncated_correct``: share of truncated generations whose answer was scored correct
    (answers extracted from cut-off text, which report.md flags).
    """
    if not problems:
        raise ValueError("no problems")
    ns = {len(p.correct) for p in problems}
    if len(ns) != 1:
        raise ValueError(f"problems have different sample counts {sorted(ns)}")
    n = ns.pop()
    per = {p.doc_id: avg_at_n(p.correct) for p in problems}
    curves = [pass_at_k_curve(n, sum(p.correct)) for p in problems]
    m = len(problems)
    out = {
        "n": n,
        "problems": m,
        "avg_at_n": sum(per.values()) / m,
        "avg_at_n_per_problem": per,
        "pass_at_k": [sum(c[k] for c in curves) / m for k in range(n)],
        "maj_at_k": [sum(maj_at_k(p.answers, p.correct, k) for p in problems) / m for k in range(1, n + 1)],
    }
    if max_gen_toks is not None and all(p.n_tokens is not None for p in problems):
        flags = [(is_truncated(t, max_gen_toks), ok) for p in problems for t, ok in zip(p.n_tokens, p.correct)]
        cut = [ok for t, ok in flags if t]
        out["truncation_rate"] = len(cut) / len(flags)
        out["truncated_correct"] = sum(cut) / len(cut) if cut else None
    return out


def truncation_counts(problems: Sequence[Problem], max_gen_toks: int) -> dict:
    """Generations, how many hit the budget, and how many of those still had an answer extracted
    (``truncated_answered``) and scored correct (``truncated_correct``): answers read from cut-off text."""
    flags = [(is_truncated(t, max_gen_toks), a is not None, ok)
             for p in problems for t, a, ok in zip(p.n_tokens or (), p.answers, p.correct)]
    if not flags or any(p.n_tokens is None for p in problems):
        raise ValueError("truncation counts need the token count of every generation")
    cut = [(a, ok) for t, a, ok in flags if t]
    return {"generations": len(flags), "truncated": len(cut), "rate": len(cut) / len(flags),
            "truncated_answered": sum(a for a, _ in cut), "truncated_correct": sum(ok for _, ok in cut)}


def generations(sample: Mapping) -> list[str]:
    """The n raw generations of one logged lm-eval sample (``resps = [[r_1, ..., r_n]]``)."""
    resps = sample.get("resps")
    if not isinstance(resps, list) or len(resps) != 1 or not isinstance(resps[0], list):
        raise ValueError(f"sample {sample.get('doc_id')}: expected resps = [[r_1, ..., r_n]] (one generate_until "
                         f"request), got {type(resps).__name__}")
    return [str(r) for r in resps[0]]


def logged_problems(samples: Sequence[Mapping], extract: Callable[[str], Hashable | None],
                    correct: Callable[[Hashable | None, Mapping], bool],
                    count_tokens: Callable[[str], int] | None = None) -> list[Problem]:
    """One Problem per document from lm-eval's logged samples of one task.

    The logged samples repeat each document once per filter; the raw generations
    are the same under every filter, so the first record of a doc_id is used.
    ``extract``: the answer in one generation (the task's filter, without its
    take_first); ``correct(answer, sample)``: the task's metric on one answer.
    """
    seen: dict[int, Problem] = {}
    for s in samples:
        doc_id = int(s["doc_id"])
        if doc_id in seen:
            continue
        gens = generations(s)
        answers = tuple(extract(g) for g in gens)
        seen[doc_id] = Problem(doc_id, answers, tuple(bool(correct(a, s)) for a in answers),
                               None if count_tokens is None else tuple(count_tokens(g) for g in gens))
    return [seen[d] for d in sorted(seen)]
