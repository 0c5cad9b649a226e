"""Plans with several runs: organism seeds and several tuned runs of one base, with across-run intervals."""

import json
from pathlib import Path

import pytest
import yaml

import rankedit
from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import parse_plan, split_runs

ROOT = Path(__file__).resolve().parent.parent

EDITS = [{"name": "rank1", "method": "rank-k", "params": {"k": 1}},
         {"name": "rank1-random", "method": "random-rank-k", "params": {"k": 1}, "control_of": "rank1"}]
SCORE = {"suite": "organism", "limit": 60, "n_boot": 200}


@pytest.mark.parametrize("plan, needle", [
    ({"organism": {"seed": 1, "seeds": [0, 1]}}, "not both"),
    ({"organism": {"seeds": [0, 0]}}, "distinct"),
    ({"organism": {"seeds": []}}, "organism.seeds"),
    ({"organism": {"seeds": [-1]}}, "organism.seeds.0"),
    ({"base": "b", "tuned": "t", "runs": [{"name": "a", "tuned": "x"}]}, "inside each run"),
    ({"runs": [{"name": "a", "tuned": "x"}]}, "needs 'base'"),
    ({"base": "b", "runs": [{"name": "a", "tuned": "x"}, {"name": "a", "tuned": "y"}]}, "unique"),
    ({"base": "b", "runs": [{"name": "sft", "tuned": "x"}]}, "not a model role"),
])
def test_run_axis_errors_name_the_key(plan, needle):
    with pytest.raises(RankeditError) as e:
        parse_plan(plan, "p.yaml")
    assert needle in str(e.value)


def test_split_runs():
    parts = split_runs(parse_plan({"organism": {"size": "micro", "seeds": [3, 5]}}))
    assert [(n, p.organism.seed, p.organism.seeds) for n, p in parts] == [("seed3", 3, None), ("seed5", 5, None)]
    parts = split_runs(parse_plan({"base": "b", "runs": [{"name": "a", "tuned": "x", "sft": "s"},
                                                          {"name": "b", "tuned": "y"}]}))
    assert [(n, p.tuned, p.sft, p.runs) for n, p in parts] == [("a", "x", "s", None), ("b", "y", None, None)]
    assert split_runs(parse_plan({"organism": {"seeds": [2]}}))[0][0] is None


@pytest.mark.slow
def test_several_tuned_runs_of_one_base(micro_organism, tmp_path):
    """Two GRPO seeds of the micro organism as two runs: per-run reports and the across-run report agree."""
    org = micro_organism
    plan = {"name": "two runs", "base": str(org / "base"),
            "runs": [{"name": "s0", "tuned": str(org / "rl"), "sft": str(org / "sft")},
                     {"name": "s1", "tuned": str(org / "rl-seed2")}],
            "edits": EDITS, "score": SCORE, "analyze": {"k": 4}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    report = rankedit.run(path, out, quiet=True)
    assert report == json.loads((out / "report.json").read_text())
    assert list(report["runs"]) == ["s0", "s1"]
    assert all((out / f).is_file() for f in report["figures"])
    assert ("retention.png" in report["figures"]) == any(r["mean"] is not None for r in report["rows"]
                                                         if not r["control_task"])
    for name in ("s0", "s1"):
        one = json.loads((out / "runs" / name / "report.json").read_text())
        assert one["models"]["tuned"] == plan["runs"][0 if name == "s0" else 1]["tuned"]
        for row in report["rows"]:
            mine = next(r for r in one["rows"] if r["edit"] == row["edit"] and r["task"] == row["task"])
            key = "forgetting" if row["control_task"] else "retention"
            assert row["per_run"][name][key] == mine[key]
    # forgetting on the control task: the mean over runs is the mean of the per-run values
    for row in (r for r in report["rows"] if r["control_task"]):
        vals = [row["per_run"][n]["forgetting"] for n in ("s0", "s1")]
        assert row["mean"] == pytest.approx(sum(vals) / 2)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert {c["claim"] for c in report["conclusions"]} <= {
        "rank1 keeps part of the gain (R > 0)", "rank1 keeps less than the whole gain (R < 1)",
        "rank1-random keeps part of the gain (R > 0)", "rank1-random keeps less than the whole gain (R < 1)",
        "rank1 keeps more than its control rank1-random"}
    md = (out / "report.md").read_text()
    assert "## Forgetting on organism_control" in md and "| s0 | s1 |" in md
    # the README's findings script renders such a report: every per-run gain appears
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_findings", ROOT / "scripts" / "readme_findings.py")
    findings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(findings)
    section = findings.render(report)
    tuned = next(r for r in report["references"] if r["model"] == "tuned" and r["task"] == "organism_id")
    assert f"{100 * tuned['per_run']['s0']['gain']:+.1f}" in section and report["machine"]["cpu"] in section
    assert findings.replace_section(f"a\n{findings.BEGIN}\nold\n{findings.END}\nb", section) == f"a\n{section}\nb"
    # geometry over runs: s1 has no SFT, so only the tuned updates are compared over both runs
    assert report["geometry"]["spread"]["tuned"]["rel_update_norm"]["n"] == 2


@pytest.mark.slow
def test_organism_seeds_plan(micro_organism, tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "seeds", "organism": {"size": "micro", "seeds": [0, 1]},
                                    "edits": EDITS[:1], "score": {**SCORE, "limit": 30}, "analyze": {"enabled": False}}))
    report = rankedit.run(path, tmp_path / "out", quiet=True)
    assert list(report["runs"]) == ["seed0", "seed1"]
    assert report["runs"]["seed0"]["models"]["base"] == str(micro_organism / "base")
    assert report["runs"]["seed1"]["models"]["base"] != report["runs"]["seed0"]["models"]["base"]
    assert {r["n_runs"] for r in report["rows"] if r["defined"]} <= {2}
