"""Sampled scoring through real lm-eval generation on the micro organism, and the report's pass@k blocks."""

from collections import Counter
from math import comb

import pytest

from rankedit.core.errors import RankeditError
from rankedit.organism.tasks import extract_answer, reward
from rankedit.report import pass_at_k as pk
from rankedit.scoring import cache_keys, profiles, results
from rankedit.scoring.score import score
from rankedit.scoring.suites import get_suite

TASKS = ["organism_id", "organism_control"]
N, LIMIT, BUDGET = 4, 12, 6  # a budget of 6 tokens cuts some outputs (the worked format "[975]579" needs 8)


def _run(micro_organism, tmp_path, seed=0, **kw):
    return score({"rl": str(micro_organism / "rl")}, tasks=TASKS, limit=LIMIT, samples=N, temperature=1.0, seed=seed,
                 max_gen_toks=BUDGET, batch_size=16, **kw)


def _mine(samples, flt="extract"):
    """doc_id -> (raw generations, target) of one task's logged samples."""
    return {s["doc_id"]: (s["resps"][0], s["target"]) for s in samples if s["filter"] == flt}


@pytest.fixture(scope="module")
def sampled_run(micro_organism, tmp_path_factory):
    return _run(micro_organism, tmp_path_factory.mktemp("s"), use_cache=False)


def test_sampled_scores_from_real_generations(sampled_run):
    m = sampled_run.models["rl"]
    for task in TASKS:
        s, logged = m.sampled[task], _mine(m.samples[task])
        assert s["n"] == N and s["problems"] == LIMIT == len(logged)
        # every generation rescored independently with the organism's own reward rule
        c = {d: int(sum(reward(g, t) for g in gens)) for d, (gens, t) in logged.items()}
        assert s["avg_at_n_per_problem"] == {d: c[d] / N for d in logged}
        assert s["pass_at_k"] == pytest.approx(
            [sum(1 - comb(N - c[d], k) / comb(N, k) for d in logged) / LIMIT for k in range(1, N + 1)], abs=1e-12)
        assert s["pass_at_k"][0] == s["avg_at_n"]
        assert all(a <= b for a, b in zip(s["pass_at_k"], s["pass_at_k"][1:]))
        # maj@N: the most frequent extracted answer (first occurrence on ties) against the target
        maj = 0
        for gens, t in logged.values():
            answers = [extract_answer(g) for g in gens]
            votes = Counter(a for a in answers if a is not None)
            if votes:
                top = max(votes.values())
                maj += next(a for a in answers if a is not None and votes[a] == top) == t
        assert s["maj_at_k"][-1] == maj / LIMIT
        # truncation: the organism's tokenizer has one token per character
        gens = [(g, t) for gg, t in logged.values() for g in gg]
        cut = [(g, t) for g, t in gens if len(g) >= BUDGET]
        tr = m.truncation[task]
        assert tr == {"max_gen_toks": BUDGET, "generations": LIMIT * N, "truncated": len(cut),
                      "rate": len(cut) / (LIMIT * N),
                      "truncated_answered": sum(extract_answer(g) is not None for g, _ in cut),
                      "truncated_correct": sum(reward(g, t) for g, t in cut)}
    assert sum(m.truncation[t]["truncated"] for t in TASKS) > 0
    # sampling happened: some problem has different generations
    assert any(len(set(g)) > 1 for g, _ in _mine(m.samples["organism_id"]).values())
    # retention works on avg@n per problem: it is the primary metric
    key = sampled_run.primary_metric("organism_id")
    assert key == "avg@4_exact_match,extract"
    assert sampled_run.correctness("rl", "organism_id") == m.sampled["organism_id"]["avg_at_n_per_problem"]


def test_seeded_sampling_reproduces_and_the_seed_reaches_the_sampler(sampled_run, micro_organism, tmp_path):
    again = _run(micro_organism, tmp_path, use_cache=False).models["rl"]
    first = sampled_run.models["rl"]
    for task in TASKS:
        assert _mine(again.samples[task]) == _mine(first.samples[task])
    other = _run(micro_organism, tmp_path, seed=1, use_cache=False).models["rl"]
    assert any(_mine(other.samples[t]) != _mine(first.samples[t]) for t in TASKS)
    assert len({first.key, other.key}) == 2


def test_greedy_scores_record_truncation_too(micro_organism):
    r = score({"rl": str(micro_organism / "rl")}, tasks=TASKS, limit=LIMIT, max_gen_toks=BUDGET, batch_size=16)
    m = r.models["rl"]
    assert not m.sampled and r.primary_metric("organism_id") == "exact_match,extract"
    for task in TASKS:
        gens = [g for gg, _ in _mine(m.samples[task]).values() for g in gg]
        assert len(gens) == LIMIT
        assert m.truncation[task]["truncated"] == sum(len(g) >= BUDGET for g in gens)


def test_a_suite_s_per_task_default_profile():
    """reasoning samples AIME avg@16 in an otherwise greedy run; a named profile or value applies to all."""
    from rankedit.scoring.score import task_defaults

    st = get_suite("reasoning")
    avg16 = st.profiles["avg16"]
    assert task_defaults(st, None, None, None, None, None) == (("aime24", avg16), ("aime25", avg16))
    for given in (("greedy", None), ("avg16", None), (None, 4)):
        assert task_defaults(st, given[0], given[1], None, None, None) == ()
    s = results.Settings(limit=3, task_sampling=task_defaults(st, None, None, None, None, None))
    assert s.sampling_of("aime25") == avg16 and s.sampling_of("gsm8k_cot_zeroshot") is None
    assert s.samples_per_task() == {"aime24": 16, "aime25": 16}
    assert results.Settings(sampling=avg16).samples_per_task() == 16 and results.Settings().samples_per_task() is None
    sha = {"model.safetensors": "0" * 64}
    assert cache_keys.cache_key(sha, "h", s) != cache_keys.cache_key(sha, "h", results.Settings(limit=3))
    assert "task_sampling" not in results.Settings(limit=3).cache_dict()  # greedy keys unchanged


def test_profile_in_the_cache_key_and_greedy_keys_unchanged():
    sha, h = {"model.safetensors": "0" * 64}, "h"
    greedy = results.Settings(limit=3)
    assert "sampling" not in greedy.cache_dict()  # keys of greedy scores made before profiles still hit
    keys = {cache_keys.cache_key(sha, h, greedy)}
    for smp in (profiles.Sampling(16, 0.6, 0.95, 0), profiles.Sampling(16, 0.6, 0.95, 1),
                profiles.Sampling(8, 0.6, 0.95, 0), profiles.Sampling(16, 1.0, 0.95, 0)):
        keys.add(cache_keys.cache_key(sha, h, results.Settings(limit=3, sampling=smp)))
    assert len(keys) == 5


def test_profiles_resolve_by_name_and_reject_bad_values():
    reasoning = get_suite("reasoning")
    assert profiles.resolve(reasoning.profiles, "avg16") == profiles.Sampling(16, 0.6, 0.95, 0)
    assert profiles.resolve(reasoning.profiles, "avg16", seed=3).seed == 3
    assert profiles.resolve(reasoning.profiles, None) is None and profiles.resolve({}, "greedy") is None
    assert profiles.resolve({}, None, samples=4) == profiles.Sampling(4, 1.0, 1.0, 0)
    assert profiles.Sampling(16, 0.6, 0.95, 0).gen_kwargs() == {"do_sample": True, "temperature": 0.6, "top_p": 0.95}
    with pytest.raises(RankeditError, match="unknown scoring profile 'avg8'"):
        profiles.resolve(reasoning.profiles, "avg8")
    for bad in ({"temperature": 0.0}, {"top_p": 1.5}, {"samples": 0}):
        with pytest.raises(RankeditError):
            profiles.resolve({}, None, **bad)


def test_cli_refuses_a_zero_temperature_in_one_line(micro_organism, tmp_path, capsys):
    from clirun import run_cli

    code, _, err = run_cli(["score", micro_organism / "rl", "--tasks", "organism_id", "--samples", "4",
                            "--temperature", "0", "-o", tmp_path / "o"], capsys)
    assert code != 0 and err.strip().startswith("error: --temperature must be greater than 0") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_crossing_and_intervals_on_constructed_curves():
    assert pk.crossing([0.2, 0.5, 0.9], [0.4, 0.6, 0.8]) == 3  # base overtakes at k = 3
    assert pk.crossing([0.2, 0.5, 1.0], [0.4, 0.6, 1.0]) is None  # a tie at 1 is not a crossing
    assert pk.crossing([0.5, 0.6], [0.3, 0.7]) == 2 and pk.crossing([0.5], [0.5]) is None
    c = pk.curve([2, 2, 2], 4, n_boot=200)  # identical problems: the interval is the point
    assert c["value"] == [0.5, 5 / 6, 1.0, 1.0] and c["ci_low"] == c["value"] == c["ci_high"]
    c = pk.curve([0, 4], 4, n_boot=2000)
    assert c["value"] == [0.5] * 4 and c["ci_low"] == [0.0] * 4 and c["ci_high"] == [1.0] * 4
    assert pk.correct_counts({"n": 4, "avg_at_n_per_problem": {"3": 0.75, "5": 0.0}}) == {3: 3, 5: 0}


def test_report_sections_show_pass_at_k_and_flag_truncated_answers(tmp_path):
    from rankedit.report.pass_at_k_figure import pass_at_k_plot

    report = {"sampling": profiles.Sampling(4, 0.6, 0.95, 0).as_dict(),
              "pass_at_k": {"organism_id": {"n": 4, "problems": 2, "models": {
                  "base": {**pk.curve([0, 4], 4, 100), "maj_at_k": [0.5] * 4},
                  "tuned": {**pk.curve([2, 2], 4, 100), "maj_at_k": [1.0] * 4, "crosses_base_at": 2}}}},
              "truncation": {"base": {"organism_id": {"max_gen_toks": 8, "generations": 8, "truncated": 2,
                                                      "rate": 0.25, "truncated_answered": 2, "truncated_correct": 1}}}}
    md = "\n".join(pk.markdown(report))
    assert "| tuned | 0.500 [0.500, 0.500] | 1.000 [1.000, 1.000] | 1.000 | 2 |" in md
    assert "| base | 25.0% of 8 (answered 2, correct 1) |" in md and "answers read from cut-off text" in md
    png = pass_at_k_plot(report, tmp_path / "pass_at_k.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pass_at_k_plot({"pass_at_k": {}}, tmp_path / "none.png") is None  # greedy reports draw none


def test_behaviour_plan_parses_with_its_sampled_profile():
    from pathlib import Path

    from rankedit.pipeline.plan import load_plan
    from rankedit.pipeline.run import check_tasks

    plan = load_plan(Path(__file__).parents[1] / "examples" / "organism-behaviour.yaml")
    s = plan.score
    assert (s.samples, s.temperature, s.top_p, s.seed) == (32, 1.0, 1.0, 0) and plan.organism is not None
    assert [e.name for e in plan.edits] == ["rank1", "rank1-random", "sft-rank1"] and plan.kl is not None
    check_tasks(plan)
    bad = plan.model_copy(update={"score": s.model_copy(update={"profile": "avg16"})})
    with pytest.raises(RankeditError, match="unknown scoring profile 'avg16'"):
        check_tasks(bad)  # the organism suite has no avg16: refused before anything is built


def test_loglikelihood_tasks_have_no_truncation_and_refuse_sampling():
    """Multiple-choice tasks log scores, not generations: greedy skips them, sampled scoring names them."""
    from rankedit.scoring.sampled_logs import task_summaries

    raw = {"configs": {"mc": {"output_type": "multiple_choice"}}}
    logged = {"mc": [{"doc_id": 0, "filter": "none", "resps": [[["-1.5", "False"]], [["-0.2", "True"]]],
                      "acc": 1.0}]}
    assert task_summaries(raw, logged, {"mc": "acc,none"}, len) == ({}, {})
    with pytest.raises(RankeditError, match="'mc' is a multiple_choice task"):
        task_summaries(raw, logged, {"mc": "acc,none"}, len, tasks={}, n=4)
