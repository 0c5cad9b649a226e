"""rankedit score on real lm-eval runs: a tiny local task, tiny Llamas whose answers are known.

The models are random-init Llamas with a char-level tokenizer, rigged so that
greedy decoding always writes one chosen digit (the last MLP's bias dominates
the residual stream, and lm_head reads only that direction). Their exact score
on the tiny task is therefore known from the data, per problem.
"""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from rankedit.scoring import retention as evaluate

from rankedit.scoring import cache_keys, failures, lm_eval_run, raw_files, results, suites, lm_eval_tasks as tasks
from rankedit.scoring import score as scoring
from rankedit.core.errors import RankeditError
from rankedit.scoring.suites import EVAL_CONFIGS, SUITES, get_suite
from rankedit.testing.char_tokenizer import char_tokenizer

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_arith"
TASK = "rankedit_tiny_arith"
LIMIT = 20
ANSWERS = [json.loads(l)["answer"] for l in (TINY / "tiny_arith.jsonl").read_text().splitlines()][:LIMIT]
CHARS = list("0123456789+-=\n ")


def _tokenizer():
    return char_tokenizer(CHARS)


def constant_model(out: Path, digit: int | None, seed: int = 0) -> Path:
    """A tiny Llama that always writes ``digit`` (None: left random)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, vocab = _tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(vocab), max_position_embeddings=64, mlp_bias=True,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg)
    if digit is not None:
        with torch.no_grad():
            mlp = model.model.layers[-1].mlp
            mlp.down_proj.weight.zero_()
            mlp.down_proj.bias.zero_()
            mlp.down_proj.bias[0] = 1e4
            model.lm_head.weight.zero_()
            model.lm_head.weight[vocab[str(digit)], 0] = 1.0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A private score cache and three models: always-3, always-7, random."""
    root = tmp_path_factory.mktemp("scoring")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RANKEDIT_CACHE", str(root / "cache"))
        models = {"m3": constant_model(root / "m3", 3), "m7": constant_model(root / "m7", 7),
                  "rnd": constant_model(root / "rnd", None)}
        yield root, models


def _score(models, out, **kw):
    kw.setdefault("limit", LIMIT)
    return scoring.score(models, tasks=kw.pop("tasks", [TASK]), out=out, include_paths=kw.pop("include_paths", [TINY]),
                         batch_size=4, device="cpu", **kw)


@pytest.fixture(scope="module")
def scored(env):
    root, models = env
    t = time.time()
    res = _score(models, root / "out")
    return res, time.time() - t


def test_scores_match_the_known_answers_per_problem(scored):
    res, _ = scored
    for label, digit in (("m3", "3"), ("m7", "7")):
        expect = np.array([a == digit for a in ANSWERS], dtype=float)
        ts = res.get(label, TASK, "exact_match,extract")
        assert ts.n == LIMIT and ts.value == pytest.approx(expect.mean())
        # lm-eval's stderr of a mean: sample standard deviation / sqrt(n)
        assert ts.stderr == pytest.approx(expect.std(ddof=1) / math.sqrt(LIMIT))
        assert res.correctness(label, TASK, "exact_match,extract") == {i: expect[i] for i in range(LIMIT)}
        # "3333" is not a single digit: the strict filter scores it 0 everywhere
        assert res.get(label, TASK, "exact_match,strict").value == 0.0
    assert res.get("rnd", TASK).value == 0.0
    assert res.primary_metric(TASK) == "exact_match,extract"
    assert 0 < res.get("m3", TASK).value and res.get("m3", TASK).value != res.get("m7", TASK).value


def test_outputs_on_disk(scored):
    res, _ = scored
    out = res.out
    doc = json.loads((out / "scores.json").read_text())
    rows = {(r["model"], r["metric"]): r for r in doc["scores"]}
    assert set(rows) == {(m, k) for m in ("m3", "m7", "rnd") for k in ("exact_match,extract", "exact_match,strict")}
    assert rows[("m3", "exact_match,extract")]["value"] == res.get("m3", TASK).value
    assert set(rows[("m3", "exact_match,extract")]) == {"model", "task", "metric", "value", "stderr", "n"}
    assert doc["failures"] == {} and doc["primary_metrics"] == {TASK: "exact_match,extract"}
    assert "| m3 | rankedit_tiny_arith | exact_match,extract |" in (out / "scores.md").read_text()
    # lm-eval's own results JSON and samples per model, parseable back into the same scores
    raw = raw_files.load_raw(out / "m3")
    assert raw["results"][TASK]["exact_match,extract"] == res.get("m3", TASK).value
    assert len(raw["samples"][TASK]) == 2 * LIMIT  # one logged sample per problem and filter
    assert results.parse_results(raw)[TASK]["exact_match,extract"].per_sample == res.correctness("m3", TASK)


def test_parse_fresh_lm_eval_output_directly(env):
    """parse_results on simple_evaluate's own return value, not a JSON round trip."""
    _, models = env
    st = suites.custom_suite([TASK], [TINY])
    tm = tasks.task_manager(st)
    raw = lm_eval_run.run_lm_eval(models["m7"], st, tm, results.Settings(limit=10, batch_size=2))
    parsed = results.parse_results(raw)
    expect = {i: float(a == "7") for i, a in enumerate(ANSWERS[:10])}
    assert parsed[TASK]["exact_match,extract"].per_sample == expect
    assert parsed[TASK]["exact_match,extract"].value == pytest.approx(sum(expect.values()) / 10)
    assert set(parsed[TASK]) == {"exact_match,extract", "exact_match,strict"}


def test_rerun_is_served_from_the_cache_without_lm_eval(env, scored, monkeypatch):
    root, models = env
    first, _ = scored

    def no_lm_eval(*a, **k):
        raise AssertionError("lm-eval ran although the scores were cached")

    monkeypatch.setattr(lm_eval_run, "run_lm_eval", no_lm_eval)
    t = time.time()
    again = _score(models, root / "out-again")
    assert time.time() - t < 5
    assert all(m.cached for m in again.models.values())
    assert again.rows() == first.rows()
    assert again.correctness("m3", TASK) == first.correctness("m3", TASK)
    # a different setting is a different key: now lm-eval must run (and is refused here)
    with pytest.raises(failures.ScoringFailed, match="lm-eval failed"):
        _score({"m3": models["m3"]}, root / "out-limit", limit=LIMIT - 1)


def test_cache_key_covers_model_files_tasks_and_settings(env):
    _, models = env
    from rankedit.files.checkpoint import Checkpoint

    sha3, sha7 = (cache_keys.model_fingerprint(Checkpoint(models[m])) for m in ("m3", "m7"))
    assert "model.safetensors" in sha3 and "tokenizer.json" in sha3 and "config.json" in sha3
    st = suites.custom_suite([TASK], [TINY])
    h = cache_keys.task_config_hash(st, builtin=False)
    s = results.Settings(limit=LIMIT)
    keys = {
        cache_keys.cache_key(sha3, h, s),
        cache_keys.cache_key(sha7, h, s),
        cache_keys.cache_key(sha3, cache_keys.task_config_hash(suites.custom_suite([TASK, "x"], [TINY]), False), s),
        cache_keys.cache_key(sha3, h, results.Settings(limit=LIMIT, max_gen_toks=64)),
        cache_keys.cache_key(sha3, h, results.Settings(limit=LIMIT, apply_chat_template=True)),
        cache_keys.cache_key(sha3, h, results.Settings(limit=LIMIT, backend="vllm")),
    }
    assert len(keys) == 6
    assert cache_keys.cache_key(sha3, h, s) == cache_keys.cache_key(dict(sha3), h, results.Settings(limit=LIMIT))
    # cuda:0 and cuda:1 give the same generations; cpu and cuda might not
    assert results.Settings(device="cuda:0").cache_dict() == results.Settings(device="cuda:1").cache_dict()


def test_one_failing_model_keeps_the_others(env, tmp_path):
    root, models = env
    # a sound checkpoint (finite, complete, with a tokenizer) that lm-eval still cannot run:
    # its tokenizer gives the characters ids beyond the model's vocabulary
    bad = constant_model(tmp_path / "bad", 5)
    tok = json.loads((bad / "tokenizer.json").read_text())
    tok["model"]["vocab"] = {t: i + (1000 if t in CHARS else 0) for t, i in tok["model"]["vocab"].items()}
    (bad / "tokenizer.json").write_text(json.dumps(tok))
    good = constant_model(tmp_path / "good", 9, seed=1)  # not cached yet
    with pytest.raises(failures.ScoringFailed, match=r"1 of 2 models failed: bad: lm-eval failed on .*bad") as ei:
        _score({"bad": bad, "good": good}, tmp_path / "out")
    assert set(ei.value.result.models) == {"good"}
    doc = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert {r["model"] for r in doc["scores"]} == {"good"} and set(doc["failures"]) == {"bad"}
    assert (tmp_path / "out" / "good" / "results.json").is_file()
    # the good model's scores were cached as soon as it finished
    key = ei.value.result.models["good"].key
    assert (Path(os.environ["RANKEDIT_CACHE"]) / "scores" / key / "results.json").is_file()


def test_cli_errors_are_one_line_and_exit_1(env, tmp_path, capsys):
    from rankedit.cli.main import main

    _, models = env

    def run(*args):
        with pytest.raises(SystemExit) as ei:
            main(["score", *map(str, args)])
        return ei.value.code, capsys.readouterr().err

    code, err = run(tmp_path / "missing", "--tasks", TASK, "--include-path", TINY, "-o", tmp_path / "o")
    assert code == 1 and err.strip() == f"error: checkpoint not found: {tmp_path / 'missing'}"
    code, err = run(models["m3"], "--tasks", "rankedit_tiny_arth", "--include-path", TINY, "-o", tmp_path / "o")
    assert code == 1 and "unknown task 'rankedit_tiny_arth' (did you mean rankedit_tiny_arith" in err
    assert len(err.strip().splitlines()) == 1
    code, err = run(models["m3"], "--suite", "nope", "-o", tmp_path / "o")
    assert code == 1 and "unknown suite 'nope'" in err
    code, err = run(models["m3"], "--suite", "organism", "--tasks", TASK, "-o", tmp_path / "o")
    assert code == 1 and "exactly one of" in err
    assert not (tmp_path / "o").exists()


def test_cli_writes_scores_and_a_table(env, scored, tmp_path, capsys):
    from rankedit.cli.main import main

    _, models = env
    main(["score", f"three={models['m3']}", "--tasks", TASK, "--include-path", str(TINY), "--limit", str(LIMIT),
          "--batch-size", "4", "--device", "cpu", "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert "three" in out and "exact_match,extract" in out and "scores.json" in out
    doc = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert doc["models"]["three"]["cached"] is True  # same key as the module's first run
    assert (tmp_path / "o" / "three" / f"samples_{TASK}.jsonl").is_file()


def test_group_override_changes_generation_settings(env, tmp_path):
    """The mechanism of eval_configs/reasoning: a group entry overriding an existing task's config.
    With max_gen_toks 1 the always-3 model writes exactly "3", so strict == extract."""
    _, models = env
    res = _score({"m3": models["m3"]}, tmp_path / "o", tasks=["rankedit_tiny_group"],
                 include_paths=[TINY, DATA / "tiny_group"], limit=10)
    samples = raw_files.load_raw(tmp_path / "o" / "m3")["samples"][TASK]
    assert all(s["arguments"][0][1]["max_gen_toks"] == 1 for s in samples)
    assert all(s["resps"][0][0] == "3" for s in samples)
    assert res.get("m3", TASK, "exact_match,strict").value == res.get("m3", TASK, "exact_match,extract").value > 0


def test_max_gen_toks_override_reaches_lm_eval(env, tmp_path):
    _, models = env
    _score({"m3": models["m3"]}, tmp_path / "o", limit=5, max_gen_toks=2)
    samples = raw_files.load_raw(tmp_path / "o" / "m3")["samples"][TASK]
    assert {s["resps"][0][0] for s in samples} == {"33"}


def test_retention_from_real_samples(scored):
    """Per-problem correctness from lm-eval pairs by doc_id into evaluate.retention."""
    res, _ = scored
    ids, arr = evaluate.align({m: res.correctness(m, TASK) for m in ("rnd", "m3", "m7")})
    assert ids == list(range(LIMIT))
    # base = random (0/20), tuned = always-3 (4/20): P(no "3" in a resample) = 0.8^20 = 1.2% < 2.5%,
    # so the tuned gain is significant; an edit equal to the tuned model keeps all of it
    r = evaluate.retention(arr["rnd"], arr["m3"], arr["m3"])
    assert r.defined and (r.value, r.ci_low, r.ci_high) == (1.0, 1.0, 1.0)
    # always-7 (2/20) as the "edit": R = 0.1 / 0.2
    r7 = evaluate.retention(arr["rnd"], arr["m3"], arr["m7"])
    assert r7.value == pytest.approx(arr["m7"].mean() / arr["m3"].mean()) == pytest.approx(0.5)
    assert r7.ci_low < 0.5 < r7.ci_high


def test_suites_registry_and_reasoning_config():
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    assert set(SUITES) >= {"organism", "reasoning"}
    assert get_suite("organism").control_tasks == ("organism_control",)
    for name in get_suite("organism").tasks:
        assert (EVAL_CONFIGS / "organism" / f"{name}.yaml").is_file()
    with pytest.raises(RankeditError, match="did you mean 'reasoning'"):
        get_suite("reasonin")
    # every task the reasoning suite overrides exists in this lm-eval, with room for long reasoning
    # lm-eval's own tasks beneath the folder's, their index shared by the process (as rankedit scores)
    tm = tasks.with_builtin_tasks(TaskManager(include_path=str(EVAL_CONFIGS / "reasoning"), include_defaults=False))
    cfg = load_yaml(EVAL_CONFIGS / "reasoning" / "rankedit_reasoning.yaml", resolve_func=False)
    members = [m.get("task") or m.get("group") for m in cfg["task"]]
    assert members == ["gsm8k_cot_zeroshot", "minerva_math500", "minerva_math", "aime24", "aime25"]
    # AIME is scored as RL papers report it (avg@16) unless the run names a profile; the rest greedy
    reasoning = get_suite("reasoning")
    assert reasoning.task_profiles == {"aime24": "avg16", "aime25": "avg16"}
    assert all(p in reasoning.profiles for p in reasoning.task_profiles.values())
    assert "rankedit_reasoning" in tm.all_groups and "minerva_math" in tm.all_groups
    for m in cfg["task"]:
        name = m.get("task") or m.get("group")
        assert name in tm.all_tasks
        assert m["generation_kwargs"]["max_gen_toks"] >= 4096
        upstream = load_yaml(tm.task_index[name].yaml_path, resolve_func=False) if m.get("task") else None
        if upstream:  # the stop sequences are restated unchanged
            assert m["generation_kwargs"]["until"] == upstream["generation_kwargs"]["until"]
    gsm = load_yaml(tm.task_index["gsm8k_cot_zeroshot"].yaml_path, resolve_func=False)
    assert [f["name"] for f in gsm["filter_list"]] == ["strict-match", "flexible-extract"]


def test_vllm_backend(env, tmp_path):
    import importlib.util

    _, models = env
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(RankeditError, match="backend 'vllm' needs vllm"):
            _score({"m3": models["m3"]}, tmp_path / "o", backend="vllm")
    else:
        assert lm_eval_run.lm_eval_model("vllm", models["m3"], results.Settings())[0] == "vllm"
    with pytest.raises(RankeditError, match="unknown backend"):
        _score({"m3": models["m3"]}, tmp_path / "o", backend="tpu")


@pytest.mark.slow
def test_organism_suite_on_the_micro_organism(micro_organism, tmp_path, monkeypatch):
    """The organism suite end to end on the real micro organism, cross-checked per problem
    against the organism's own greedy evaluator."""
    import torch
    from transformers import AutoModelForCausalLM

    from rankedit.organism.greedy_eval import greedy_completions
    from rankedit.organism.tasks import extract_answer

    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "cache"))
    n = 40
    res = scoring.score({"base": micro_organism / "base", "rl": micro_organism / "rl"}, suite="organism",
                        out=tmp_path / "out", limit=n, batch_size=n, device="cpu")
    assert res.tasks == ["organism_id", "organism_hard", "organism_control"]
    doc = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert doc["control_tasks"] == ["organism_control"] and len(doc["scores"]) == 6
    for task in res.tasks:
        ids, arr = evaluate.align({m: res.correctness(m, task) for m in ("base", "rl")})
        assert ids == list(range(n))
        f = evaluate.forgetting(arr["base"], arr["rl"])
        assert f.ci_low <= f.value <= f.ci_high
        assert f.value == pytest.approx(res.get("base", task).value - res.get("rl", task).value)  # points lost
    # lm-eval's answers are the organism evaluator's answers, problem by problem
    samples = raw_files.load_raw(tmp_path / "out" / "base")["samples"]["organism_id"]
    model = AutoModelForCausalLM.from_pretrained(micro_organism / "base", dtype=torch.float32)
    own = greedy_completions(model, [s["doc"]["prompt"] for s in samples])
    same = [extract_answer(c) == extract_answer(s["resps"][0][0]) for c, s in zip(own, samples)]
    assert sum(same) >= 0.95 * n
    assert len({extract_answer(c) for c in own}) > n / 2  # varied answers: agreement is not trivial


def test_lm_eval_metadata_notice_is_not_printed(env, capfd, caplog, tmp_path, monkeypatch):
    """lm-eval warns "Custom kwargs can be passed to `--metadata`" each time it builds an organism task
    (preflight, then every model): six lines for one model before; none now. Run outside a git
    repository, its `git describe` printed "fatal: not a git repository" for every model: none now."""
    import logging
    import lm_eval.evaluator

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path either

    from rankedit.scoring.suites import get_suite

    _, models = env
    st = get_suite("organism")
    tm = tasks.task_manager(st)
    with caplog.at_level(logging.INFO):
        tasks.preflight(st, tm)
        raw = lm_eval_run.run_lm_eval(models["m7"], st, tm, results.Settings(limit=1, batch_size=1, max_gen_toks=2))
    assert set(raw["results"]) >= set(st.tasks)  # the tasks were built and run
    seen = capfd.readouterr()
    assert "Custom kwargs" not in seen.out + seen.err + caplog.text
    assert "fatal:" not in seen.out + seen.err and raw["git_hash"] is None
    assert lm_eval.evaluator.get_git_commit_hash is not lm_eval_run._git_hash_quietly  # restored after the call
    assert lm_eval.evaluator.add_env_info is not lm_eval_run._env_info_once
    assert raw["pretty_env_info"] == lm_eval_run._env_info(str(tmp_path))["pretty_env_info"] != ""
    assert not logging.getLogger("lm_eval.api.task").filters  # the filter does not outlive the call


def test_env_info_is_lm_eval_s_own_computed_once_per_process(monkeypatch):
    """lm-eval's add_env_info builds torch's collect_env report (a pip list, a dozen subprocesses) for
    every scored model; rankedit's stand-in gives the same fields and values, built once."""
    import torch.utils.collect_env as collect_env
    from lm_eval.loggers.utils import add_env_info

    calls = []
    monkeypatch.setattr(collect_env, "get_pretty_env_info", lambda: calls.append(1) or "env report")
    lm_eval_run._env_info.cache_clear()
    try:
        first, second, upstream = {"keep": 1}, {}, {"keep": 1}
        lm_eval_run._env_info_once(first)
        lm_eval_run._env_info_once(second)
        assert len(calls) == 1
        add_env_info(upstream)
        assert first == upstream and second == {k: v for k, v in upstream.items() if k != "keep"}
        assert first["pretty_env_info"] == "env report"
    finally:
        lm_eval_run._env_info.cache_clear()  # the real report for the rest of the session


def _yaml_task(folder, name, tag=None, text="q"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(f"task: {name}\ndataset_path: json\noutput_type: generate_until\n"
                                         f"doc_to_text: {text}\ndoc_to_target: a\n" + (f"tag: {tag}\n" if tag else ""))


def test_builtin_tasks_beneath_the_folders_as_lm_eval_builds_them(tmp_path, caplog):
    """with_builtin_tasks lays the folders' index over a prebuilt built-in index exactly as lm-eval's own
    TaskManager merges its default folder and include paths: the same entries in the same order, the
    same name lists, a folder's task (and tag) overriding the built-in one, with lm-eval's warning."""
    import logging

    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import TaskIndex

    builtin, local = tmp_path / "builtin", tmp_path / "local"
    for name, tag in (("t_a", "tag1"), ("t_b", "tag1"), ("t_c", None)):
        _yaml_task(builtin, name, tag)
    _yaml_task(local, "t_b", "tag1", text="overridden")
    _yaml_task(local, "t_d", "tag2")
    (local / "grp.yaml").write_text("group: grp\ntask:\n  - t_a\n  - t_d\n")
    want = TaskManager(include_path=[str(builtin), str(local)], include_defaults=False)
    with caplog.at_level(logging.WARNING, logger="lm_eval.tasks._index"):
        got = tasks.with_builtin_tasks(TaskManager(include_path=[str(local)], include_defaults=False),
                                       TaskIndex.build([builtin]))
    assert list(got.task_index.items()) == list(want.task_index.items())
    assert got.task_index["t_b"].cfg["doc_to_text"] == "overridden" and got.task_index["tag1"].tags == {"t_b"}
    for names in ("all_tasks", "all_subtasks", "all_groups", "all_tags"):
        assert getattr(got, names) == getattr(want, names), names
    assert got.all_groups == ["grp"] and got.all_tags == ["tag1", "tag2"]
    assert "Task 't_b' from" in caplog.text and "Task 'tag1' from" in caplog.text


def test_lm_eval_s_task_index_is_kept_between_runs_exactly(tmp_path, monkeypatch):
    """The index of a task folder is read back from rankedit's cache as TaskIndex.build makes it, entry for
    entry; a changed YAML is indexed again; a cache file that does not read back is replaced; an index
    JSON cannot carry exactly (integer keys, dates) is never kept."""
    from lm_eval.tasks._index import TaskIndex

    from rankedit.scoring import task_index

    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tasks"
    for name, tag in (("t_a", "tag1"), ("t_b", "tag1"), ("t_c", None)):
        _yaml_task(folder, name, tag)
    (folder / "grp.yaml").write_text("group: grp\ntask:\n  - t_a\n  - task: t_c\n    num_fewshot: 2\n")
    want = TaskIndex.build([folder])
    assert task_index.cached_index(folder) == want
    [stored] = (tmp_path / "cache" / "lm-eval-index").glob("*.json")
    build = TaskIndex.build
    monkeypatch.setattr(TaskIndex, "build", lambda *a, **k: pytest.fail("indexed again"))
    got = task_index.cached_index(folder)
    assert got == want and list(got) == list(want) and got["tag1"].tags == {"t_a", "t_b"}
    monkeypatch.setattr(TaskIndex, "build", build)
    st = (folder / "t_c.yaml").stat()
    _yaml_task(folder, "t_c", text="changed")
    changed = task_index.cached_index(folder)
    assert changed["t_c"].cfg["doc_to_text"] == "changed" and changed == TaskIndex.build([folder])
    assert len(list(stored.parent.glob("*.json"))) == 2
    stored.write_text('[["t_a", "t_a"')  # cut short
    _yaml_task(folder, "t_c")
    os.utime(folder / "t_c.yaml", ns=(st.st_atime_ns, st.st_mtime_ns))  # the first folder again, to the byte
    assert task_index.cached_index(folder) == want and json.loads(stored.read_text())
    for bad in ("metadata:\n  1: one\n", "metadata:\n  when: 2024-01-01\n"):
        odd = tmp_path / f"odd{len(bad)}"
        _yaml_task(odd, "t_odd")
        (odd / "t_odd.yaml").write_text((odd / "t_odd.yaml").read_text() + bad)
        before = set(stored.parent.glob("*.json"))
        assert task_index.cached_index(odd) == TaskIndex.build([odd])
        assert set(stored.parent.glob("*.json")) == before  # not kept
