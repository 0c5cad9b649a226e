"""Sampled scores on constructed samples: the exact pass@k estimator, maj@k, avg@n and truncation counting."""

from fractions import Fraction
from itertools import combinations

import pytest

from rankedit.scoring.sampled import (
    Problem, avg_at_n, generations, is_truncated, logged_problems, maj_at_k, majority, pass_at_k, pass_at_k_curve,
    summarize, truncation_rate,
)


@pytest.mark.parametrize("n", [1, 4, 6])
def test_pass_at_k_is_the_share_of_k_subsets_holding_a_correct_sample(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(samples, k))
            want = Fraction(sum(any(s) for s in subsets), len(subsets))
            assert pass_at_k(n, c, k) == float(want), (n, c, k)


def test_pass_at_k_closed_forms_and_large_n():
    assert pass_at_k(5, 2, 1) == 0.4 and pass_at_k(5, 2, 2) == 0.7 and pass_at_k(5, 2, 4) == 1.0
    # c = 1: 1 - C(n-1, k) / C(n, k) = k / n exactly, for n far beyond float's range of C(n, k)
    assert pass_at_k(2000, 1, 1000) == 0.5 and pass_at_k(256, 1, 1) == 1 / 256
    assert pass_at_k(2000, 0, 7) == 0.0 and pass_at_k(2000, 2000, 1) == 1.0
    # tiny values keep their digits: C(n-c,k)/C(n,k) near 1 is not subtracted in floats
    assert pass_at_k(10**6, 1, 1) == 1e-6
    assert pass_at_k_curve(3, 1) == [1 / 3, 2 / 3, 1.0]
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_maj_at_k_votes_over_the_first_k_and_breaks_ties_by_first_occurrence():
    answers = ["7", "3", "3", "7", "5"]
    correct = [a == "7" for a in answers]
    assert [maj_at_k(answers, correct, k) for k in range(1, 6)] == [1.0, 1.0, 0.0, 1.0, 1.0]
    # k = 2: 7 and 3 tie, 7 came first; k = 4: 7 and 3 tie at two votes each, 7 came first
    assert majority(["3", "7", "7", "3"]) == 0 and majority(["5", "7", "7"]) == 1
    # no extracted answer: no vote; nothing to vote on scores 0
    assert maj_at_k([None, None, "3"], [False, False, True], 2) == 0.0
    assert maj_at_k([None, None, "3"], [False, False, True], 3) == 1.0
    assert majority([None]) is None


def test_avg_at_n_and_truncation_counting():
    assert avg_at_n([True, False, False, True]) == 0.5
    assert truncation_rate([16, 3, 16, 10], 16) == 0.5
    assert is_truncated(17, 16) and not is_truncated(15, 16)


def test_summary_of_two_problems():
    p1 = Problem(0, ("1", "2", "2", "2"), (True, False, False, False), (4, 16, 16, 2))
    p2 = Problem(3, ("9",) * 4, (True,) * 4, (16, 1, 1, 1))
    s = summarize([p1, p2], max_gen_toks=16)
    assert s["n"] == 4 and s["avg_at_n"] == 0.625 and s["avg_at_n_per_problem"] == {0: 0.25, 3: 1.0}
    # p1: 1/4, 1 - C(3,2)/C(4,2) = 1/2, 1 - C(3,3)/C(4,3) = 3/4, 1; p2: always 1
    assert s["pass_at_k"] == [0.625, 0.75, 0.875, 1.0]
    # p1's majority: k=1 "1" (right), k=2 tie "1"/"2" -> "1", k=3,4 "2" (wrong); p2 always right
    assert s["maj_at_k"] == [1.0, 1.0, 0.5, 0.5]
    # 3 of 8 generations used the whole budget; of those, one (p2's first) was scored correct
    assert s["truncation_rate"] == 3 / 8 and s["truncated_correct"] == 1 / 3
    with pytest.raises(ValueError, match="different sample counts"):
        summarize([p1, Problem(1, ("1",), (True,))])
    with pytest.raises(ValueError):
        Problem(2, ("1", "2"), (True,))


def _logged(doc_id, gens, target, filters=("extract", "none")):
    """lm-eval 0.4.13's logged records of one document under repeats: one per filter."""
    return [{"doc_id": doc_id, "target": target, "arguments": [["prompt", {"max_gen_toks": 8}]],
             "resps": [list(gens)], "filtered_resps": [gens[0]], "filter": f, "metrics": ["exact_match"],
             "exact_match": 0.0} for f in filters]


def test_problems_from_logged_samples_use_each_document_once():
    import re

    def extract(text):
        found = re.findall(r"-?\d+", text)
        return found[-1] if found else None

    samples = _logged(1, ["so 12", "13", "no idea"], "12") + _logged(0, ["x 5", "5", "5 6"], "5")
    probs = logged_problems(samples, extract, lambda a, s: a == s["target"], count_tokens=len)
    assert [p.doc_id for p in probs] == [0, 1]
    assert probs[0].answers == ("5", "5", "6") and probs[0].correct == (True, True, False)
    assert probs[1].answers == ("12", "13", None) and probs[1].correct == (True, False, False)
    assert probs[1].n_tokens == (5, 2, 7)
    assert generations(samples[0]) == ["so 12", "13", "no idea"]
    with pytest.raises(ValueError, match="resps"):
        generations({"doc_id": 4, "resps": ["a", "b"]})
