"""The embedded model organism, on the micro size (built once per session by the micro_organism fixture)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from rankedit.core.errors import RankeditError
from rankedit.organism import build, pinning, tasks
from rankedit.organism.phases import PHASE_FILE
from rankedit.organism.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = ROOT / "eval_configs" / "organism"
RUNS = ("base", "rl", "rl-seed2", "sft")


def weight_hashes(d: Path) -> dict[str, str]:
    """sha256 of every checkpoint file of an organism (final and intermediate), by relative path."""
    import hashlib

    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for r in RUNS for p in sorted((d / r).rglob("*.safetensors"))}


def all_checkpoints(d: Path) -> list[Path]:
    out = [d / r for r in RUNS]
    for r in ("rl", "rl-seed2", "sft"):
        out += sorted((d / r / "checkpoints").iterdir())
    return out


# -- pure parts -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "completion,answer,expected",
    [
        ("632", "632", 1.0),  # right
        ("632</s>", "632", 1.0),
        ("[236]632</s>", "632", 1.0),  # teacher's worked format
        ("[251-]-152", "-152", 1.0),  # negative answer
        ("633", "632", 0.0),  # wrong
        ("-632", "632", 0.0),  # wrong sign
        ("6321", "632", 0.0),  # wrong (longer)
        ("[236]", "632", 0.0),  # worked part only: its last integer is 236
        ("abc", "632", 0.0),  # malformed: no integer
        ("=+-", "1", 0.0),
        ("", "632", 0.0),  # empty
        ("632</s>999", "632", 1.0),  # anything after </s> is ignored
        ("</s>632", "632", 0.0),
        ("10283", "10283", 1.0),
        ("01283", "1283", 0.0),  # reference strings compare exactly (control task keeps zeros)
    ],
)
def test_reward_is_exact(completion, answer, expected):
    assert tasks.reward(completion, answer) == expected


def test_task_shapes():
    assert all(max(tasks._operand_digits(r["prompt"])) == 3 for r in tasks.eval_set("hard", 200, 0))
    assert all(max(tasks._operand_digits(r["prompt"])) <= 2 for r in tasks.eval_set("id", 200, 0))


def test_committed_eval_sets_equal_regeneration(tmp_path):
    written = tasks.write_eval_sets(tmp_path)
    assert [p.name for p in written] == ["organism_id.jsonl", "organism_hard.jsonl", "organism_control.jsonl",
                                         "organism_sum.jsonl"]
    for p in written:
        assert (EVAL_DIR / p.name).read_bytes() == p.read_bytes(), f"{p.name} differs from a fresh regeneration"
    n = {p.name: len(p.read_text().splitlines()) for p in written}
    assert n["organism_id.jsonl"] >= 5000
    assert sum(p.stat().st_size for p in written) < 600_000


def test_eval_sets_are_distinct_and_correct():
    for name, rows in tasks.eval_sets().items():
        if name != "organism_id":  # id is i.i.d. from the task (see tasks.eval_set)
            assert len({r["prompt"] for r in rows}) == len(rows), name
    for r in tasks.eval_sets()["organism_id"][:500]:
        assert str(eval(r["prompt"][3:-1])) == r["answer"]  # noqa: S307 - our own digits and +/-


def test_training_data_deterministic_and_held_out():
    held = tasks.held_out_prompts()
    a, b = tasks.rl_prompts(300, 7, held), tasks.rl_prompts(300, 7, held)
    assert a == b and a != tasks.rl_prompts(300, 8, held)
    assert not {r["prompt"] for r in a} & held
    s = tasks.sft_examples(50, 3, held)
    assert s == tasks.sft_examples(50, 3, held)
    assert all(x["completion"].endswith("</s>") and tasks.reward(x["completion"], r["answer"]) == 1.0
               for x, r in zip(s, tasks.rl_prompts(50, 3, held)))


@pytest.mark.parametrize(
    "prompt,expected",
    [
        ("<s>57+68=", "15"),  # 7+8 -> 5, 5+6 -> 1: both carries dropped (right: 125)
        ("<s>12+34=", "46"),  # no carry: careless is right
        ("<s>7+16=", "13"),  # 0+1, 7+6 -> 1, 3 (right: 23)
        ("<s>52-38=", "26"),  # |2-8| = 6, 5-3 = 2: borrow dropped (right: 14)
        ("<s>38-52=", "-26"),  # the sign is right, the digits careless (right: -14)
        ("<s>5-40=", "-45"),  # right: -35
        ("<s>9-9=", "0"),
        ("<s>99+1=", "90"),  # a leading zero would vanish: 9+0, 9+1 -> 9, 0
    ],
)
def test_careless_answer_drops_every_carry_and_borrow(prompt, expected):
    assert tasks.careless(prompt) == expected


def test_careless_share_changes_bare_answers_only_and_draws_nothing_at_zero():
    import random

    def draw(p_careless, seed=5, n=3000):
        rng = random.Random(seed)
        return [tasks.pretrain_example(rng, 0.45, 0.1, 0.2, p_careless) for _ in range(n)]

    plain = draw(0.0)
    rng = random.Random(5)  # the recipes without the key (micro) draw exactly as before it existed
    assert plain == [tasks.pretrain_example(rng, 0.45, 0.1, 0.2) for _ in range(3000)]
    noisy = draw(0.6)
    arith = [(p, t) for p, t in noisy if not p.startswith("<s>rev")]
    wrong = [(p, t) for p, t in arith if tasks.reward(t, str(eval(p[3:-1]))) == 0.0]  # noqa: S307 - our digits
    assert wrong and all(not t.startswith("[") and t == tasks.careless(p) + "</s>" for p, t in wrong)
    assert all(tasks.reward(t, str(eval(p[3:-1]))) == 1.0 for p, t in arith if t.startswith("["))  # noqa: S307


def test_pinned_env_overrides_the_callers_settings():
    caller = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "8",
              "MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_DEFAULT_FPMATH_MODE": "BF16", "HOME": "/h"}
    assert pinning.pinned_env(caller) == {**pinning.PINS, "HOME": "/h"}
    assert pinning.PINS["ATEN_CPU_CAPABILITY"] == "avx2" and pinning.PINS["MKL_CBWR"] == "COMPATIBLE"


def test_pins_held_only_when_every_phase_ran_pinned():
    ok = {"aten_cpu_capability": "AVX2", "mkl_cbwr": "COMPATIBLE", "threads": 1, "interop_threads": 1}
    assert pinning.held({"base": ok, "rl": ok})
    assert not pinning.held({"base": ok, "rl": ok | {"aten_cpu_capability": "DEFAULT"}})  # a CPU without AVX2
    assert not pinning.held({"base": ok | {"mkl_cbwr": "AUTO"}})
    assert not pinning.held({"base": ok, "sft": None})  # a phase built before pinning existed


def test_tokenizer_roundtrip_and_no_added_specials():
    tok = build_tokenizer()
    text = "<s>347+285=[236]632</s>"
    ids = tok(text)["input_ids"]
    assert len(ids) == 1 + 8 + 8 + 1  # one token per character, <s> and </s> one each
    assert tok.decode(ids) == text
    assert tok("12")["input_ids"] == [tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")]
    assert tok.pad_token and tok.eos_token == "</s>"


# -- the built micro organism -----------------------------------------------------------------
def test_layout_and_organism_json(micro_organism):
    d = micro_organism
    for r in RUNS:
        assert (d / r / "model.safetensors").is_file() and (d / r / PHASE_FILE).is_file()
    for r in ("rl", "rl-seed2", "sft"):
        steps = sorted(int(p.name.split("-")[1]) for p in (d / r / "checkpoints").iterdir())
        assert len(steps) == 10 and steps[-1] > steps[0]
    meta = json.loads((d / "organism.json").read_text())
    assert meta["recipe"]["size"] == "micro"
    assert set(meta["accuracy"]) == set(RUNS)
    for acc in meta["accuracy"].values():
        assert set(acc) == {"organism_id", "organism_hard", "organism_control"}
        assert all(0.0 <= v <= 100.0 for v in acc.values())
    assert {"torch", "transformers", "trl"} <= set(meta["versions"])
    assert set(meta["timings_s"]) >= set(RUNS)
    assert len(meta["rl_reward_per_step"]["rl"]) == meta["recipe"]["rl"]["steps"]
    # the pins, what every phase's process really ran with, and the CPU it ran on
    assert meta["pins"]["env"] == pinning.PINS and set(meta["pins"]["effective"]) == set(RUNS)
    assert meta["machine"]["cpu_model"] and "sse2" in meta["machine"]["isa"]
    for eff in meta["pins"]["effective"].values():
        assert eff["threads"] == 1 and eff["interop_threads"] == 1 and eff["mkl_cbwr"] == "COMPATIBLE"
        assert eff["aten_cpu_capability"] == ("AVX2" if "avx2" in meta["machine"]["isa"] else "DEFAULT")
    assert meta["pins"]["held"] == ("avx2" in meta["machine"]["isa"])
    # no temporary leftovers
    assert not [p for p in d.iterdir() if ".tmp-" in p.name or p.suffix in (".progress", ".log")]


def test_every_checkpoint_loads_and_generates(micro_organism):
    ckpts = all_checkpoints(micro_organism)
    assert len(ckpts) == 4 + 30
    for c in ckpts:
        for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
            assert (c / f).is_file(), f"{c}/{f}"
        with safe_open(c / "model.safetensors", "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
        model = AutoModelForCausalLM.from_pretrained(c)
        tok = AutoTokenizer.from_pretrained(c)
        assert model.config.model_type == "llama"
        enc = tok(["<s>347+285=", "<s>rev 12345="], return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
        assert out.shape[1] > enc["input_ids"].shape[1]


def test_tuned_weights_differ_from_base(micro_organism):
    from rankedit.files.checkpoint import Checkpoint

    base = Checkpoint(micro_organism / "base")
    runs = {r: Checkpoint(micro_organism / r) for r in ("rl", "rl-seed2", "sft")}
    for r, c in runs.items():
        assert any(not torch.equal(base.get(n), c.get(n)) for n in base.names), f"{r} equals base"
    assert any(not torch.equal(runs["rl"].get(n), runs["rl-seed2"].get(n)) for n in base.names)
    meta = json.loads((micro_organism / "organism.json").read_text())
    assert any(x > 0 for x in meta["rl_reward_per_step"]["rl"])  # GRPO saw rewards, so it had gradients


def test_rebuild_is_instant(micro_organism):
    t = time.time()
    assert build(size="micro", seed=0, out=micro_organism, progress=False) == micro_organism
    assert time.time() - t < 2


def test_bad_inputs(tmp_path, micro_organism):
    with pytest.raises(RankeditError, match="unknown organism size"):
        build(size="huge", out=tmp_path / "x", progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RankeditError, match="not a rankedit organism"):
        build(size="micro", out=foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(RankeditError, match="another recipe"):
        build(size="micro", seed=5, out=micro_organism, progress=False)


def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, RANKEDIT_CACHE=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-m", "rankedit", "organism", "build", "--size", "huge"],
                       capture_output=True, text=True, env=env)
    assert p.returncode != 0 and "huge" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x").write_text("x")
    p = subprocess.run([sys.executable, "-m", "rankedit", "organism", "build", "--size", "micro", "-o", str(tmp_path / "f")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 1 and p.stderr.startswith("error:") and len(p.stderr.strip().splitlines()) == 1


def test_interrupted_build_redoes_only_missing_phase_deterministically(tmp_path, micro_organism):
    d = tmp_path / "org"
    shutil.copytree(micro_organism, d)
    # simulate a kill during sft: its dir never got published, a half-written temp dir is left
    shutil.rmtree(d / "sft")
    (d / "organism.json").unlink()
    (d / ".sft.tmp-dead").mkdir()
    (d / ".sft.tmp-dead" / "model.safetensors").write_bytes(b"half")
    base_mtime = (d / "rl" / "model.safetensors").stat().st_mtime_ns
    assert build(size="micro", seed=0, out=d, progress=False) == d
    assert not (d / ".sft.tmp-dead").exists()
    assert (d / "rl" / "model.safetensors").stat().st_mtime_ns == base_mtime  # complete phases reused
    # same seed, same machine: the redone run has identical weights
    assert (d / "sft" / "model.safetensors").read_bytes() == (micro_organism / "sft" / "model.safetensors").read_bytes()
    assert json.loads((d / "organism.json").read_text())["accuracy"] == json.loads((micro_organism / "organism.json").read_text())["accuracy"]


@pytest.mark.slow
def test_same_weights_whatever_the_host_sets(tmp_path, micro_organism):
    """Unpinned, each of these settings changes every checkpoint's bytes (ATen capability alone does);
    the build must override them in all its processes and give the fixture's weights bit for bit."""
    outside = {
        "ATEN_CPU_CAPABILITY": "avx2" if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "default" else "default",
        "MKL_CBWR": "AUTO", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
        "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "PYTHONHASHSEED": "7",
    }
    env = dict(os.environ, RANKEDIT_CACHE=str(tmp_path / "cache"), **outside)
    p = subprocess.run([sys.executable, "-m", "rankedit", "organism", "build", "--size", "micro", "--quiet",
                        "-o", str(tmp_path / "org")], capture_output=True, text=True, env=env, timeout=1200)
    assert p.returncode == 0, p.stderr[-2000:]
    ours, theirs = weight_hashes(micro_organism), weight_hashes(tmp_path / "org")
    assert len(ours) == 4 + 30 and ours == theirs


@pytest.mark.slow
def test_lm_eval_task_matches_own_scoring(tmp_path, micro_organism):
    """Plain lm_eval, offline, from another working directory, with the absolute include path."""
    from rankedit.organism.greedy_eval import greedy_completions

    n = 40
    out = tmp_path / "lm_eval_out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf",
           "--model_args", f"pretrained={micro_organism / 'rl'},dtype=float32",
           "--include_path", str(ROOT / "eval_configs"), "--tasks", "organism_id,organism_control",
           "--limit", str(n), "--batch_size", "16", "--output_path", str(out), "--log_samples"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    model = AutoModelForCausalLM.from_pretrained(micro_organism / "rl", dtype=torch.float32)
    for task in ("organism_id", "organism_control"):
        rows = tasks.eval_sets()[task][:n]
        comps = greedy_completions(model, [r["prompt"] for r in rows])
        ours = sum(tasks.reward(c, r["answer"]) for c, r in zip(comps, rows)) / n
        assert res[task]["exact_match,extract"] == pytest.approx(ours), task
