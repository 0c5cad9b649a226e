"""`rankedit run`: plan validation, the whole pipeline on the micro organism, resumption, failures."""

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
import rankedit
import clirun  # tests/ is on sys.path (no package)
from rankedit.core.errors import RankeditError
from rankedit.organism.recipes import RECIPES
from rankedit.pipeline.plan import load_plan, parse_plan

ROOT = Path(__file__).resolve().parent.parent
MICRO_PLAN = ROOT / "examples" / "organism-micro.yaml"
ROW_KEYS = {"edit", "task", "score", "retention", "ci_low", "ci_high", "forgetting"}


def run_cli(args, capsys):
    """The real entry point in-process: (exit code, stdout + stderr)."""
    code, out, err = clirun.run_cli(args, capsys)
    return code, out + err


def _one_error_line(output: str) -> str:
    lines = [seg for line in output.splitlines() for seg in line.split("\r") if seg.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


# ---- plan validation (no models touched) ---------------------------------------------------

@pytest.mark.parametrize("plan, needle", [
    ({"edits": []}, "needs base and tuned"),
    ({"tuned": "x"}, "needs base"),
    ({"organism": {"size": "huge"}}, "organism.size"),
    ({"organism": {}, "edits": [{"name": "a", "method": "rank-9"}]}, "unknown edit method 'rank-9'"),
    ({"organism": {}, "edits": [{"name": "a", "method": "rank-k", "params": {"k": 0}}]}, "params.k"),
    ({"organism": {}, "edits": [{"name": "a", "method": "rank-k", "params": {"kk": 1}}]}, "params.kk"),
    ({"organism": {}, "edits": [{"name": "a", "method": "scale"}, {"name": "a", "method": "scale"}]}, "repeated: a"),
    ({"organism": {}, "edits": [{"name": "a", "method": "scale", "control_of": "b"}]}, "not in the plan"),
    ({"organism": {}, "edits": [{"name": "base", "method": "scale"}]}, "not a model role"),
    ({"organism": {}, "edits": [{"name": "a", "method": "scale", "checkpoints": 0.5}]}, "only applies to extrapolate"),
    ({"base": "b", "tuned": "t", "edits": [{"name": "a", "method": "extrapolate"}]}, "needs the run's checkpoints"),
    ({"base": "b", "tuned": "t", "edits": [{"name": "a", "method": "scale", "of": "sft"}]}, "has no 'sft'"),
    ({"organism": {}, "surprise": 1}, "surprise"),
    ({"organism": {}, "score": {"limit": 0}}, "score.limit"),
])
def test_plan_errors_name_the_problem(plan, needle):
    with pytest.raises(RankeditError) as e:
        parse_plan(plan, "p.yaml")
    assert needle in str(e.value) and str(e.value).startswith("p.yaml")
    assert "\n" not in str(e.value)


def test_example_plans_are_valid():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if "edits" in data:  # pipeline plans (the others are `rankedit edit --config` recipes)
            plan = load_plan(path)
            assert plan.edits and all(e.control_of is None or e.control_of in {x.name for x in plan.edits}
                                      for e in plan.edits)


def test_bad_plans_fail_cleanly_from_the_command(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    code, out = run_cli(["run", bad, "-o", tmp_path / "o"], capsys)
    assert code == 1 and "cannot read YAML" in _one_error_line(out)
    code, out = run_cli(["run", tmp_path / "missing.yaml", "-o", tmp_path / "o"], capsys)
    assert code != 0 and "missing.yaml" in out and "Traceback" not in out
    assert not (tmp_path / "o").exists()


def test_missing_model_dir_and_unknown_task_fail_before_any_work(micro_organism, tmp_path, capsys):
    plan = tmp_path / "p.yaml"
    plan.write_text(yaml.safe_dump({"base": str(micro_organism / "base"), "tuned": str(tmp_path / "nope"),
                                    "edits": [{"name": "r1", "method": "rank-k", "params": {"k": 1}}]}))
    code, out = run_cli(["run", plan, "-o", tmp_path / "o"], capsys)
    assert code == 1 and "nope" in _one_error_line(out) and "not found" in _one_error_line(out)
    assert not (tmp_path / "o" / "edits").exists()

    plan.write_text(yaml.safe_dump({"base": str(micro_organism / "base"), "tuned": str(micro_organism / "rl"),
                                    "score": {"tasks": ["organism_idd"]},
                                    "edits": [{"name": "r1", "method": "rank-k", "params": {"k": 1}}]}))
    code, out = run_cli(["run", plan, "-o", tmp_path / "o2"], capsys)
    line = _one_error_line(out)
    assert code == 1 and "unknown task 'organism_idd'" in line and "organism_id" in line
    assert not (tmp_path / "o2" / "edits").exists()


# ---- the whole pipeline on the micro organism ---------------------------------------------

@pytest.fixture(scope="module")
def micro_run(micro_organism, tmp_path_factory):
    """examples/organism-micro.yaml end to end (the organism is the session's, reused through the cache)."""
    out = tmp_path_factory.mktemp("run") / "micro"
    report = rankedit.run(MICRO_PLAN, out, quiet=True)  # the Python API, equal to the command
    assert report == json.loads((out / "report.json").read_text())
    return out, report


def test_report_has_the_documented_shape(micro_run):
    out, report = micro_run
    plan = load_plan(MICRO_PLAN)
    edits = [e.name for e in plan.edits]
    tasks = ["organism_id", "organism_hard", "organism_control"]
    assert report["tasks"] == tasks and report["control_tasks"] == ["organism_control"]
    assert set(report["scores"]) == {"base", "tuned", "sft", *edits}
    for model, per_task in report["scores"].items():
        assert set(per_task) == set(tasks)
        for v in per_task.values():
            assert set(v) >= {"value", "stderr", "n"} and v["n"] == plan.score.limit and 0 <= v["value"] <= 1
    assert len(report["rows"]) == len(edits) * len(tasks)
    for r in report["rows"]:
        assert ROW_KEYS <= set(r)
        assert r["score"] == report["scores"][r["edit"]][r["task"]]["value"]
        if r["task"] == "organism_control":
            # forgetting is exactly the points lost, s_base - s_edit; retention does not apply
            assert r["retention"] is None
            assert r["forgetting"] == pytest.approx(report["scores"]["base"][r["task"]]["value"] - r["score"])
            assert r["forgetting_ci_low"] <= r["forgetting"] <= r["forgetting_ci_high"]
        else:
            assert r["forgetting"] is None
            if r["retention"] is None:
                assert r["retention_defined"] is False and "does not lie above 0" in r["reason"]
    # the micro organism's RL run gains significantly on organism_id, so every edit's R there is defined, with
    # its interval; no model of it answers a 3-digit problem, so on organism_hard R is undefined and says why
    for r in report["rows"]:
        if r["task"] == "organism_id":
            assert r["retention_defined"] is True and r["ci_low"] <= r["retention"] <= r["ci_high"], r
        elif r["task"] == "organism_hard":
            assert r["retention_defined"] is False and r["reason"].startswith(
                f"base and tuned both score 0 on all {plan.score.limit} problems"), r
    md = (out / "report.md").read_text()
    for e in edits:
        assert f"| {e}" in md
    # the tuned run is R's reference only where R is defined: 1 on organism_id, undefined on organism_hard
    head = next(line for line in md.splitlines() if line.startswith("| model |")).strip("|").split("|")
    tuned = next(line for line in md.splitlines() if line.startswith("| **tuned** |")).strip("|").split("|")
    cell = dict(zip((h.strip() for h in head), (c.strip() for c in tuned)))
    assert cell["R organism_id"] == "1 (reference)" and cell["R organism_hard"] == "undefined"
    assert "## Geometry of the updates" in md and "sft-matched" in md
    assert "## Size against gain: the frontier" in md and "frontier.png" in report["figures"]
    # each edit on each trained task, then the lossless point: the tuned run as an exact patch of its base
    assert [(f["edit"], f["task"]) for f in report["frontier"]] == ([(e, t) for e in edits for t in tasks[:2]]
                                                                  + [("exact-patch", t) for t in tasks[:2]])
    assert all(f["storage_bytes"] > 0 and f["storage_ratio"] > 0 for f in report["frontier"])
    assert (out / "scores.png").stat().st_size > 10_000
    for run in ("tuned", "sft", "sft-matched"):
        assert (out / "analysis" / run / "summary.json").is_file()
        assert (out / "analysis" / run / "heatmap_sparsity_bf16.png").is_file()


def _expected_figures(report: dict, out: Path) -> set[str]:
    """The figures rankedit/core/figure_list.py lists for `run`, under the conditions this report meets."""
    from rankedit.core import figure_list as figures

    met = {"always": True, "scores": any(v["value"] for s in report["scores"].values() for v in s.values()),
           "retention": any(r["retention"] is not None for r in report["rows"]),
           "frontier": bool(report["frontier"]), "pass_at_k": bool(report.get("pass_at_k")),
           "kl": "kl" in report, "early_stop": "early_stop" in report, "trajectory": "trajectory" in report,
           "moe": any(json.loads((out / d / "summary.json").read_text()).get("moe")
                      for d in report["analysis"]["runs"].values()),
           # the micro plan merges nothing (merges' figures: tests/test_merge_plan.py)
           "interference": bool(report.get("merges")), "merges": bool(report.get("merges"))}
    out = set()
    for f in figures.written_by("run"):
        if not met[figures.when(f, "run")]:
            continue
        if f.analysis:
            out |= {f"{d}/{f.name}" for d in report["analysis"]["runs"].values()}
        else:
            out.add(figures.folder(f, "run") + f.name)
    return out


def test_the_run_writes_the_figures_of_the_list_and_each_passes_a_reviewers_checks(micro_run, tmp_path, monkeypatch):
    """The micro plan's figures are the list's (rankedit/core/figure_list.py) for what it ran; redrawn from the run's
    own report and analyses, every axis is labelled and non-empty and every legend entry is drawn."""
    from figure_checks import kept_figures, problems
    from rankedit.analysis.plots import analysis_plots
    from rankedit.report.early_stop_figure import early_stop_plot
    from rankedit.report.run_figures import report_plots

    out, report = micro_run
    written = {str(p.relative_to(out)) for p in out.rglob("*.png") if p.relative_to(out).parts[0] not in ("edits", "scores")}
    assert written == set(report["figures"]) == _expected_figures(report, out)
    with kept_figures(monkeypatch) as kept:
        drawn = report_plots(report, tmp_path)
        if "early_stop" in report:
            drawn.append(early_stop_plot(report["early_stop"], tmp_path / "early_stop.png").name)
        for run, folder in report["analysis"]["runs"].items():
            rows = [json.loads(x) for x in (out / folder / "metrics.jsonl").read_text().splitlines()]
            (tmp_path / run).mkdir()
            drawn += [f"{folder}/{p.name}" for p in analysis_plots(rows, tmp_path / run)]
        assert sorted(drawn) == sorted(written) and len(kept.made) == len(drawn)
        for name, fig in zip(drawn, kept.made):
            assert problems(fig) == [], name
    # the same report as one page: every figure embedded byte for byte, links resolving, tables rectangular
    from test_report_html import check_page

    page = check_page((out / "report.html").read_text(), out, report["figures"])
    assert len(page.tables) == (out / "report.md").read_text().count("\n|---")


def test_edits_are_real_checkpoints_that_carry_their_report(micro_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, report = micro_run
    for e in report["edits"]:
        d = Path(e["path"])
        man = json.loads((d / "rankedit_edit.json").read_text())
        assert man["method"] == e["method"]
        scores = json.loads((d / "rankedit_scores.json").read_text())
        assert {r["edit"] for r in scores["rows"]} == {e["name"]} and set(scores["scores"]) == {"base", "tuned", e["name"]}
        assert (d / "rankedit_analysis.json").is_file()
    d = out / "edits" / "rank1"
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)
    ids = tok("<s>12+34=", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] > ids.shape[1]
    # the card `rankedit push` writes carries the edit's scores and retention rows
    from rankedit.publish import hub

    hub.push(d, "me/rank1", dry_run=True)
    card = (d / "README.md").read_text()
    assert "organism_id" in card and "rank-k" in card
    ex = next(e for e in report["edits"] if e["method"] == "extrapolate")
    last = RECIPES["micro"]["rl"]["steps"]  # the run's final step; the plan's window is its first 40%
    assert ex["params"]["target_step"] == last and max(ex["params"]["steps"]) <= 0.4 * last


def test_second_run_is_served_from_cache(micro_run, capsys):
    import time

    out, first = micro_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "edits").glob("*/model.safetensors")}
    t = time.time()
    code, output = run_cli(["run", MICRO_PLAN, "-o", out, "--quiet"], capsys)
    assert code == 0, output
    assert time.time() - t < 60
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "edits").glob("*/model.safetensors")}
    scores = json.loads((out / "scores" / "scores.json").read_text())
    assert all(m["cached"] for m in scores["models"].values())
    second = json.loads((out / "report.json").read_text())
    assert second["rows"] == first["rows"] and second["scores"] == first["scores"]


def test_a_changed_recipe_rebuilds_only_that_edit(micro_run, tmp_path, capsys):
    out, _ = micro_run
    plan = yaml.safe_load(MICRO_PLAN.read_text())
    plan["edits"] = [e for e in plan["edits"] if e["name"] in ("rank1", "off-principal")]
    plan["edits"][0]["params"] = {"k": 2}
    plan["analyze"] = {"enabled": False}
    p = tmp_path / "changed.yaml"
    p.write_text(yaml.safe_dump(plan))
    stamps = {n: (out / "edits" / n / "model.safetensors").stat().st_mtime_ns for n in ("rank1", "off-principal")}
    code, output = run_cli(["run", p, "-o", out, "--quiet"], capsys)
    assert code == 0, output
    assert (out / "edits" / "off-principal" / "model.safetensors").stat().st_mtime_ns == stamps["off-principal"]
    assert (out / "edits" / "rank1" / "model.safetensors").stat().st_mtime_ns != stamps["rank1"]
    assert json.loads((out / "edits" / "rank1" / "rankedit_edit.json").read_text())["params"]["k"] == 2


# ---- retention that is defined: the micro organism's RL run gains on organism_id ----

def test_retention_is_exact_where_the_answer_is_known(micro_organism, tmp_path, capsys):
    """With the RL run the better model, scale 1 (rest from tuned) is the tuned model: R = 1 on every
    bootstrap replicate; scale 0 (rest from base) is the base: R = 0."""
    plan = {
        "name": "natural",
        "base": str(micro_organism / "base"), "tuned": str(micro_organism / "rl"),
        "edits": [{"name": "whole", "method": "scale", "params": {"factor": 1.0, "rest": "tuned"}},
                  {"name": "none", "method": "scale", "params": {"factor": 0.0}},
                  {"name": "rank1", "method": "rank-k", "params": {"k": 1}}],
        # the micro organism's RL gains ~14 points on organism_id: 2000 problems make it clearly significant
        "score": {"tasks": ["organism_id"], "limit": 2000, "n_boot": 500},
        "analyze": {"enabled": False},
    }
    p = tmp_path / "natural.yaml"
    p.write_text(yaml.safe_dump(plan))
    code, output = run_cli(["run", p, "-o", tmp_path / "o", "--quiet"], capsys)
    assert code == 0, output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    sc = report["scores"]
    row = {(r["edit"], r["task"]): r for r in report["rows"]}
    whole, none_, r1 = row["whole", "organism_id"], row["none", "organism_id"], row["rank1", "organism_id"]
    assert sc["tuned"]["organism_id"]["value"] > sc["base"]["organism_id"]["value"]
    assert whole["retention_defined"] and whole["retention"] == pytest.approx(1.0)
    assert whole["ci_low"] == pytest.approx(1.0) and whole["ci_high"] == pytest.approx(1.0)
    assert none_["retention"] == pytest.approx(0.0) and none_["ci_low"] == pytest.approx(0.0)
    s = {m: sc[m]["organism_id"]["value"] for m in ("base", "tuned", "rank1")}
    assert r1["retention"] == pytest.approx((s["rank1"] - s["base"]) / (s["tuned"] - s["base"]))
    assert r1["ci_low"] <= r1["retention"] <= r1["ci_high"]
    assert (tmp_path / "o" / "retention.png").is_file() and (tmp_path / "o" / "frontier.png").is_file()
    # the frontier: scale edits are dense (the bf16 delta's 2·Σ m·n bytes), rank-1 its factors (exact counts per
    # family: tests/test_frontier.py)
    from rankedit.files.checkpoint import Checkpoint

    base = Checkpoint(plan["base"])
    names = [m["name"] for m in json.loads((tmp_path / "o" / "edits" / "rank1" / "rankedit_edit.json").read_text())["matrices"]]
    shapes = [base.info(n).shape for n in names]
    fr = {f["edit"]: f for f in report["frontier"]}
    assert fr["whole"]["storage_bytes"] == fr["none"]["storage_bytes"] == 2 * sum(m * n for m, n in shapes)
    # rank-1 LoRA factors in float32 (4 bytes a value, a bf16 base too)
    assert 4 * sum(m + n for m, n in shapes) <= fr["rank1"]["storage_bytes"] <= 4 * sum(m + n + 1 for m, n in shapes)
    assert fr["whole"]["storage_ratio"] == 1.0
    # none (R = 0) is as large as whole (R = 1): dominated; rank1 is the smallest: on the frontier
    assert (fr["none"]["pareto"], fr["rank1"]["pareto"]) == (False, True)
    # the exact patch keeps all of the gain (R = 1 exactly, the tuned model rebuilt bit for bit) in fewer bytes
    # than the dense bf16 delta, so whole (R = 1 at most) is dominated by it
    patch = fr["exact-patch"]
    assert patch["lossless"] and patch["retention"] == 1.0 and (patch["ci_low"], patch["ci_high"]) == (1.0, 1.0)
    assert patch["storage_ratio"] == pytest.approx(patch["storage_bytes"] / fr["whole"]["storage_bytes"])
    assert patch["storage_bytes"] < fr["whole"]["storage_bytes"]
    # the patch is on the frontier unless a smaller edit keeps as much (rank1 can, keeping over 100% of a real gain)
    smaller_as_good = any(f["storage_bytes"] < patch["storage_bytes"] and f["retention"] >= 1.0 for f in report["frontier"]
                          if f["edit"] != "exact-patch" and f["retention"] is not None)
    assert (fr["whole"]["pareto"], patch["pareto"]) == (False, not smaller_as_good)


def test_one_model_failing_keeps_the_others(micro_organism, tmp_path, capsys):
    """An SFT dir that passes every input check but that lm-eval cannot run (its tokenizer gives
    ids beyond the model's vocabulary): it fails alone; the report holds everything else."""
    broken = tmp_path / "sft-bad-ids"
    shutil.copytree(micro_organism / "sft", broken, ignore=shutil.ignore_patterns("checkpoints"))
    tok = json.loads((broken / "tokenizer.json").read_text())
    specials = {a["content"] for a in tok["added_tokens"]}
    tok["model"]["vocab"] = {t: i + (1000 if t not in specials else 0) for t, i in tok["model"]["vocab"].items()}
    (broken / "tokenizer.json").write_text(json.dumps(tok))
    plan = {"base": str(micro_organism / "base"), "tuned": str(micro_organism / "rl"), "sft": str(broken),
            "edits": [{"name": "rank1", "method": "rank-k", "params": {"k": 1}}],
            "score": {"tasks": ["organism_id"], "limit": 50}, "analyze": {"enabled": False}}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(plan))
    code, output = run_cli(["run", p, "-o", tmp_path / "o", "--quiet"], capsys)
    line = _one_error_line(output)
    assert code == 1 and "sft" in line and "report of the others" in line
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert set(report["scores"]) == {"base", "tuned", "rank1"} and "sft" in report["failures"]
    assert not math.isnan(report["rows"][0]["score"])
