"""`rankedit run --executor ray`: a local Ray instance on the CPU gives the local report; a task is
retried once, then reported as a failure."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

import clirun  # tests/ is on sys.path (no package)
from rankedit.pipeline import run as pipeline
from rankedit.core.errors import RankeditError
from rankedit.core.executors import LocalExecutor, RayExecutor

ROOT = Path(__file__).resolve().parent.parent
MICRO_PLAN = ROOT / "examples" / "organism-micro.yaml"


def test_ray_missing_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import rankedit.core.executors

    monkeypatch.setattr(rankedit.core.executors, "ray_available", lambda: False)
    code, out, err = clirun.run_cli(["run", MICRO_PLAN, "-o", tmp_path / "o", "--executor", "ray"], capsys)
    lines = [l for l in (out + err).splitlines() if l.strip()]
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "pip install 'rankedit[ray]'" in lines[0]
    assert not (tmp_path / "o").exists()


def test_address_needs_the_ray_executor(tmp_path, capsys):
    code, out, err = clirun.run_cli(["run", MICRO_PLAN, "-o", tmp_path / "o", "--executor", "local",
                                     "--address", "auto"], capsys)
    assert code == 1 and "--address" in err and "--executor ray" in err
    assert not (tmp_path / "o").exists()


# ---- on a Ray instance of this machine ------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    import ray  # an optional extra of the package; the dev environment pins it (requirements-dev.txt)
    # tiny object store, no dashboard: start-up is slow enough on a 2-core machine
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    # the cheap task functions below live in this test module, which the workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def flaky(counter: str, fails: int) -> int:
    """Fails on its first ``fails`` calls (counted in a file: each attempt is another process)."""
    p = Path(counter)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < fails:
        raise ValueError(f"attempt {n + 1} fails")
    return n + 1


@pytest.mark.slow
def test_a_failed_task_is_retried_once_then_reported(ray_local, tmp_path):
    c = [str(tmp_path / f"c{i}") for i in range(3)]
    done = []
    with RayExecutor() as ex:
        outcomes = ex.map(flaky, [(c[0], 1), (c[1], 2), (c[2], 0)], on_done=lambda i, o: done.append(i))
    assert sorted(done) == [0, 1, 2]
    assert outcomes[0].value == 2 and outcomes[0].error is None  # failed once, retried, succeeded
    assert outcomes[2].value == 1  # succeeded at once, ran once
    err = outcomes[1].error  # failed twice: the task's own exception comes back, as in a local run
    assert type(err) is ValueError and str(err) == "attempt 2 fails"
    assert [Path(x).read_text() for x in c] == ["2", "2", "1"]
    assert ray_local.is_initialized()  # this process started Ray, so the executor leaves it running
    # locally nothing is retried: the same exception after one attempt
    (local,) = LocalExecutor().map(flaky, [(str(tmp_path / "l"), 2)])
    assert type(local.error) is ValueError and str(local.error) == "attempt 1 fails"


@pytest.mark.slow
def test_stop_on_raises_after_the_others_finished(ray_local, tmp_path):
    c = [str(tmp_path / f"s{i}") for i in range(2)]
    with pytest.raises(ValueError, match="attempt 2 fails"):
        RayExecutor().map(flaky, [(c[0], 5), (c[1], 0)], stop_on=(ValueError,))
    assert Path(c[1]).read_text() == "1"


@pytest.mark.slow
def test_micro_plan_under_ray_gives_the_local_report(ray_local, micro_organism, tmp_path, monkeypatch):
    """The micro plan's models and three of its edits (an SFT whose tokenizer gives ids beyond the model's
    vocabulary fails inside lm-eval): local, then under Ray with a fresh cache that only the workers' env
    can point them to."""
    broken = tmp_path / "sft-bad-ids"
    shutil.copytree(micro_organism / "sft", broken, ignore=shutil.ignore_patterns("checkpoints"))
    tok = json.loads((broken / "tokenizer.json").read_text())
    specials = {a["content"] for a in tok.get("added_tokens", [])}
    tok["model"]["vocab"] = {t: i + (1000 if t not in specials else 0) for t, i in tok["model"]["vocab"].items()}
    (broken / "tokenizer.json").write_text(json.dumps(tok))
    micro = yaml.safe_load(MICRO_PLAN.read_text())
    plan = {"name": micro["name"], "base": str(micro_organism / "base"), "tuned": str(micro_organism / "rl"),
            "sft": str(broken),
            "edits": [e for e in micro["edits"] if e["name"] in ("rank1", "rank1-random", "mask-bf16")],
            "score": {**micro["score"], "limit": 40}, "analyze": {"enabled": False}}
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"

    def run(**kw) -> dict:
        with pytest.raises(RankeditError, match=r"1 model\(s\) could not be scored \(sft: "):
            pipeline.run(p, out, quiet=True, **kw)
        return json.loads((out / "report.json").read_text())

    local = run()
    out.rename(tmp_path / "out-local")  # same OUT path for both, so the edits' paths are equal
    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "ray-cache"))  # nothing cached: Ray scores everything
    on_ray = run(executor="ray")
    assert sorted(d.name for d in (tmp_path / "ray-cache" / "scores").iterdir()
                  if not d.name.startswith(".")) == sorted(
        m["cache_key"] for m in json.loads((out / "scores" / "scores.json").read_text())["models"].values())
    assert on_ray["plan"].pop("executor")["kind"] == "ray" and local["plan"].pop("executor")["kind"] == "local"
    assert set(local["scores"]) == {"base", "tuned", "rank1", "rank1-random", "mask-bf16"}
    assert set(on_ray["failures"]) == {"sft"}
    for r in (local, on_ray):
        r.pop("timings_s"), r.pop("date")  # the date: a run may straddle midnight
    assert on_ray == local
    for e in local["edits"]:  # the workers built every edit into OUT
        assert (Path(e["path"]) / "rankedit_edit.json").is_file()
    # a resume under Ray: every edit is reused and every score served from the cache, no task runs
    stamps = {f: f.stat().st_mtime_ns for f in (out / "edits").glob("*/model.safetensors")}
    again = run(executor="ray")
    again.pop("timings_s"), again.pop("date"), again["plan"].pop("executor")
    assert again == local
    assert stamps == {f: f.stat().st_mtime_ns for f in (out / "edits").glob("*/model.safetensors")}
    scores = json.loads((out / "scores" / "scores.json").read_text())
    assert all(m["cached"] for m in scores["models"].values())
