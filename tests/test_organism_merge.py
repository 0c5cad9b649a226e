"""The organism's runs to merge: a second skill (digit sums, rl-sum) and more RL seeds of one base (rl-seedN)."""

import hashlib
import json
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from clirun import run_cli  # tests/ is on sys.path (no package)

from rankedit.core.errors import RankeditError
from rankedit.organism import build, default_dir, tasks
from rankedit.organism.builder import _recipe, recipe_hash
from rankedit.organism.model import recipe
from rankedit.organism.phases import PHASE_FILE
from rankedit.organism.runs import parse_skills, phase_seed, phase_skill, phases_of, tuned_runs
from rankedit.pipeline.models import resolve_models
from rankedit.pipeline.plan import parse_plan
from rankedit.scoring.suites import EVAL_CONFIGS, get_suite

SUM_YAML = EVAL_CONFIGS / "organism" / "organism_sum.yaml"


def _files(d):
    """sha256 of every file of a run folder (final model and checkpoints), by relative path."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _delta(org, run):
    base, tuned = load_file(org / "base" / "model.safetensors"), load_file(org / run / "model.safetensors")
    return {k: tuned[k].float() - base[k].float() for k in base}


# -- the second skill's task and scorer ----------------------------------------------------------
def test_digit_sum_problems_and_test_set():
    rows = tasks.eval_sets()["organism_sum"]
    assert len(rows) == 2000 and len({r["prompt"] for r in rows}) == 2000
    for r in rows:
        digits = r["prompt"].removeprefix("<s>sum ").removesuffix("=")
        assert 4 <= len(digits) <= 6 and r["answer"] == str(sum(int(c) for c in digits))
    assert {len(r["prompt"]) for r in rows} == {12, 13, 14}  # 4, 5 and 6 digits all drawn
    held = tasks.held_out_prompts()
    assert {r["prompt"] for r in rows} <= held
    train = tasks.rl_prompts(400, 3, held, skill="sum")
    assert train == tasks.rl_prompts(400, 3, held, skill="sum") and not {r["prompt"] for r in train} & held
    assert all(r["prompt"].startswith("<s>sum ") for r in train)
    assert tasks.rl_prompts(50, 3, held) == tasks.rl_prompts(50, 3, held, skill="id")  # the id default as before
    assert tasks.build_sets() == ("organism_id", "organism_hard", "organism_control")
    assert tasks.build_sets(("id", "sum")) == ("organism_id", "organism_hard", "organism_control", "organism_sum")


@pytest.mark.parametrize("prompt,expected", [("<s>sum 38201=", "4"), ("<s>sum 9999=", "6"), ("<s>sum 1200=", "3"),
                                              ("<s>sum 999999=", "4"), ("<s>sum 0000=", "0")])
def test_careless_digit_sum_drops_the_tens(prompt, expected):
    assert tasks.careless_sum(prompt) == expected


def _lm_eval_filtered(responses: list[str]) -> list[str]:
    """The task YAML's own filter chain, run by lm-eval's filter classes on hand-made responses."""
    from lm_eval.filters import get_filter
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(SUM_YAML, resolve_func=False)
    (chain,) = cfg["filter_list"]
    resps = [[r] for r in responses]
    for f in chain["filter"]:
        kwargs = {k: v for k, v in f.items() if k != "function"}
        resps = get_filter(f["function"])(**kwargs).apply(resps, [{}] * len(resps))
    return [r[0] if isinstance(r, list) else r for r in resps]


# lm-eval stops generation at "</s>" (the YAML's `until`), so its responses never hold it
HAND_MADE = [
    ("14", "14", 1.0),          # right
    ("4", "14", 0.0),           # the careless answer (tens dropped)
    ("14 ", "14", 1.0),
    ("[41]14", "14", 1.0),      # a worked-format answer: its last integer
    ("41", "14", 0.0),          # reversed
    ("140", "14", 0.0),         # longer
    ("-14", "14", 0.0),         # wrong sign
    ("sum 38201=14", "14", 1.0),  # echoed prompt: the last integer counts
    ("abc", "14", 0.0),         # no integer
    ("", "0", 0.0),             # empty
    ("0", "0", 1.0),
    ("00", "0", 0.0),           # references compare as strings
]


@pytest.mark.parametrize("response,answer,expected", HAND_MADE)
def test_digit_sum_scorer_is_exact_on_hand_made_answers(response, answer, expected):
    from lm_eval.api.metrics import exact_match_fn

    assert tasks.reward(response, answer) == expected  # the GRPO reward and the organism's evaluator
    (pred,) = _lm_eval_filtered([response])
    assert exact_match_fn(predictions=[pred], references=[answer])["exact_match"] == expected  # lm-eval's score


def test_lm_eval_task_and_merge_suite():
    from lm_eval.tasks import TaskManager

    assert (EVAL_CONFIGS / "organism" / "organism_sum.jsonl").read_bytes() == tasks.jsonl_bytes(tasks.eval_sets()["organism_sum"])
    task = TaskManager(include_path=str(EVAL_CONFIGS / "organism"), include_defaults=False).load(
        ["organism_sum"])["tasks"]["organism_sum"]  # lm-eval reads the YAML, its loader and the committed rows
    docs = list(task.test_docs())
    assert [(task.doc_to_text(d), task.doc_to_target(d)) for d in docs] == [
        (r["prompt"], r["answer"]) for r in tasks.eval_sets()["organism_sum"]]
    assert task.config.generation_kwargs == {"until": ["</s>"], "do_sample": False, "max_gen_toks": 16}
    s = get_suite("organism-merge")
    assert s.tasks == ("organism_id", "organism_sum", "organism_control")
    assert s.control_tasks == ("organism_control",)
    assert get_suite("organism").tasks == ("organism_id", "organism_hard", "organism_control")  # unchanged


# -- recipes and names ---------------------------------------------------------------------------
def test_pretraining_mixture_draws_nothing_for_an_absent_skill():
    def draw(n=2000, **kw):
        rng = random.Random(11)
        return [tasks.pretrain_example(rng, 0.3, 0.1, 0.2, 0.8, **kw) for _ in range(n)]

    assert draw(p_sum=0.0) == draw()
    mixed = draw(p_sum=0.15)
    sums = [(p, t) for p, t in mixed if p.startswith("<s>sum ")]
    assert 0.11 < len(sums) / len(mixed) < 0.19
    right = [t == str(sum(map(int, p[7:-1]))) + "</s>" for p, t in sums]
    assert all(r or t == tasks.careless_sum(p) + "</s>" for r, (p, t) in zip(right, sums))
    assert 0.1 < sum(right) / len(right) < 0.35  # 80% careless, unless the sum is under 10 (then both agree)


def test_a_second_skill_is_part_of_the_recipe_and_the_default_is_as_before():
    for size in ("micro", "small"):
        plain = recipe(size, 0)
        assert plain == recipe(size, 0, ["id"]) == recipe(size, 0, "id") and "skills" not in plain
        assert "p_sum" not in plain["pretrain"]
        two = recipe(size, 0, "sum,id")
        assert two["skills"] == ["id", "sum"] and two["pretrain"]["p_sum"] == 0.15
        assert {k: v for k, v in two.items() if k not in ("skills", "pretrain")} == {k: v for k, v in plain.items() if k != "pretrain"}
        assert {k: v for k, v in two["pretrain"].items() if k != "p_sum"} == plain["pretrain"]
        assert recipe_hash(_recipe(size, 0, "cpu")) != recipe_hash(_recipe(size, 0, "cpu", ("id", "sum")))
    for bad, msg in ((["sum"], "must include id"), (["id", "id"], "distinct"), (["id", "mul"], "unknown organism skill 'mul'")):
        with pytest.raises(RankeditError, match=msg):
            parse_skills(bad)


def test_run_names_and_seeds():
    assert phases_of() == ("base", "rl", "rl-seed2", "sft")
    assert phases_of(("id", "sum"), 4) == ("base", "rl", "rl-seed2", "sft", "rl-sum", "rl-seed3", "rl-seed4")
    assert tuned_runs(("id",), 3) == ("rl", "rl-seed2", "sft", "rl-seed3")
    assert [phase_seed(p, 5) for p in ("base", "rl", "rl-seed2", "rl-seed3", "rl-seed12", "rl-sum", "sft")] == [5, 5, 6, 7, 16, 5, 5]
    assert [phase_skill(p) for p in ("base", "rl", "rl-seed3", "rl-sum", "sft", "rl-seed1", "rl-id", "rl-x")] == [
        None, "id", "id", "sum", None, None, None, None]


def test_plan_keys_name_the_runs():
    plan = parse_plan({"organism": {"size": "micro", "skills": ["sum", "id"], "rl_seeds": 3}})
    assert plan.organism.skills == ["id", "sum"] and plan.organism.rl_seeds == 3
    assert plan.organism.run_names() == ("rl", "rl-seed2", "sft", "rl-sum", "rl-seed3")
    assert parse_plan({"organism": {"size": "micro"}}).organism.run_names() == ("rl", "rl-seed2", "sft")
    for org, msg in (({"skills": ["id", "mul"]}, "plan: organism: unknown organism skill 'mul'"),
                     ({"rl_seeds": 1}, "plan: organism.rl_seeds: Input should be greater than or equal to 2")):
        with pytest.raises(RankeditError, match=msg):
            parse_plan({"organism": {"size": "micro", **org}})


def test_bad_build_options_are_refused_before_any_work(tmp_path, capsys):
    for kw, msg in (({"rl_seeds": 1}, "at least 2"), ({"rl_seeds": True}, "at least 2"), ({"skills": "sum"}, "include id")):
        with pytest.raises(RankeditError, match=msg):
            build(size="micro", out=tmp_path / "o", progress=False, **kw)
    for args, msg in ((["--skills", "id,mul"], "error: unknown organism skill 'mul'; choose from: id, sum"),
                      (["--skills", "id,id"], "error: organism skills must be distinct, got id,id"),
                      (["--rl-seeds", "1"], "error: Invalid value for '--rl-seeds': 1 is not in the range x>=2")):
        code, out, err = run_cli(["organism", "build", "--size", "micro", "-o", tmp_path / "o", *args], capsys)
        assert code != 0 and err.startswith(msg) and len(err.strip().splitlines()) == 1 and out == ""
    assert not (tmp_path / "o").exists()


# -- builds --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_added_rl_seed_is_a_new_run_of_the_same_base(micro_organism, tmp_path, monkeypatch):
    """A plan asks for rl_seeds: 3 of the cached micro organism (a copy of the session's): rl-seed3 is trained
    into it, every earlier file keeps its bytes, the new run's layout is rl's, its update differs from both
    earlier seeds' updates, and the plan's run names resolve to the organism's folders."""
    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "cache"))
    org = default_dir("micro", 0)
    shutil.copytree(micro_organism, org)
    before = {r: _files(org / r) for r in ("base", "rl", "rl-seed2", "sft")}
    models = resolve_models(parse_plan({"organism": {"size": "micro", "rl_seeds": 3}}), quiet=True)
    assert models.organism == str(org)
    assert models.organism_runs == {r: str(org / r) for r in ("rl", "rl-seed2", "sft", "rl-seed3")}
    assert {r: _files(org / r) for r in before} == before
    assert set(_files(org / "rl-seed3")) == set(_files(org / "rl"))  # the same files and checkpoint steps
    rec = json.loads((org / "rl-seed3" / PHASE_FILE).read_text())
    assert rec["seed"] == 2 and rec["skill"] == "id"
    d1, d2, d3 = (_delta(org, r) for r in ("rl", "rl-seed2", "rl-seed3"))
    for other in (d1, d2):
        assert any(not torch.equal(other[k], d3[k]) for k in d3)
    assert sum(int((v != 0).sum()) for v in d3.values()) > 0  # it moved
    meta = json.loads((org / "organism.json").read_text())
    assert list(meta["accuracy"]) == ["base", "rl", "rl-seed2", "sft", "rl-seed3"]
    assert meta["tuned_runs"]["rl-seed3"] == {"method": "grpo", "skill": "id", "seed": 2}
    assert len(meta["rl_reward_per_step"]["rl-seed3"]) == meta["recipe"]["rl"]["steps"]
    assert meta["checkpoints"]["rl-seed3"] == meta["checkpoints"]["rl"]
    assert any(k.startswith("added rl-seed3") for k in meta["timings_s"]["wall"])
    stamp = (org / "organism.json").stat().st_mtime_ns
    assert build(size="micro", progress=False, rl_seeds=3) == org  # complete: nothing rebuilt
    assert build(size="micro", progress=False) == org  # the default asks for less: as it is
    assert (org / "organism.json").stat().st_mtime_ns == stamp
    assert AutoModelForCausalLM.from_pretrained(org / "rl-seed3").config.model_type == "llama"


@pytest.mark.slow
def test_second_skill_build_has_an_rl_run_laid_out_like_the_first(micro_organism, tmp_path):
    org = build(size="micro", out=tmp_path / "two", progress=False, skills="id,sum")
    assert set(_files(org / "rl-sum")) == set(_files(org / "rl"))  # final model, checkpoints/step-N, phase record
    assert sorted(p.name for p in org.iterdir() if p.is_dir()) == ["base", "rl", "rl-seed2", "rl-sum", "sft"]
    rec = json.loads((org / "rl-sum" / PHASE_FILE).read_text())
    assert rec["skill"] == "sum" and rec["seed"] == 0
    meta = json.loads((org / "organism.json").read_text())
    assert meta["recipe"]["skills"] == ["id", "sum"]
    for acc in meta["accuracy"].values():
        assert set(acc) == {"organism_id", "organism_hard", "organism_control", "organism_sum"}
    assert meta["tuned_runs"]["rl-sum"] == {"method": "grpo", "skill": "sum", "seed": 0}
    assert len(meta["rl_reward_per_step"]["rl-sum"]) == meta["recipe"]["rl"]["steps"]
    # its base learnt digit sums too: another base than the one-skill organism's
    assert _files(org / "base")["model.safetensors"] != _files(micro_organism / "base")["model.safetensors"]
    assert any((v != 0).any() for v in _delta(org, "rl-sum").values())
    for run in ("rl-sum", *(f"rl-sum/checkpoints/{c}" for c in meta["checkpoints"]["rl-sum"])):
        model = AutoModelForCausalLM.from_pretrained(org / run)
        assert model.config.model_type == "llama" and all(torch.isfinite(p).all() for p in model.parameters())
