"""README.md's findings are the study's report rendered by scripts/readme_findings.py, not typed by hand."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _findings():
    spec = importlib.util.spec_from_file_location("readme_findings", ROOT / "scripts" / "readme_findings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_readme_findings_are_the_study_report_rendered():
    findings = _findings()
    study = json.loads((ROOT / "docs" / "organism-study.json").read_text())
    demo = json.loads((ROOT / "docs" / "organism-demo.json").read_text())
    assert len(study["runs"]) >= 3 and study["plan"]["organism"]["seeds"] == [0, 1, 2]
    section = findings.render(study, demo)
    assert section in (ROOT / "README.md").read_text()


def test_the_readme_frontier_is_the_frontier_report_rendered():
    findings = _findings()
    report = json.loads((ROOT / "docs" / "organism-frontier.json").read_text())
    assert report["plan"]["organism"] == {**report["plan"]["organism"], "size": "small", "seed": 0}
    section = findings.render_frontier(report)
    assert section in (ROOT / "README.md").read_text()
    # every edit of the plan is in the table, and a pipe inside a description does not split its row
    rows = [line for line in section.splitlines() if line.startswith("| ") and "bytes |" not in line]
    assert len(rows) == len(report["plan"]["edits"])
    assert all(line.replace("\\|", "").count("|") == 8 for line in rows)


def test_the_smallest_edit_meeting_a_target_is_found_on_point_or_lower_bound():
    findings = _findings()
    rows = [{"edit": "a", "control": False, "retention": 0.97, "ci_low": 0.8, "ci_high": 1.1,
             "storage_bytes": 10, "storage_ratio": 0.01},
            {"edit": "b", "control": False, "retention": 0.99, "ci_low": 0.96, "ci_high": 1.0,
             "storage_bytes": 100, "storage_ratio": 0.1},
            {"edit": "c", "control": True, "retention": 1.0, "ci_low": 0.99, "ci_high": 1.0,
             "storage_bytes": 1, "storage_ratio": 0.001}]
    assert findings._smallest(rows, 0.95, "retention").startswith("a (10 bytes")
    assert findings._smallest(rows, 0.95, "ci_low").startswith("b (100 bytes")
    assert findings._smallest(rows, 0.999, "retention") == "none"


def test_the_readme_behaviour_section_is_the_behaviour_report_rendered():
    findings = _findings()
    report = json.loads((ROOT / "docs" / "organism-behaviour.json").read_text())
    assert report["sampling"]["samples"] >= 16 and report["kl"]["models"]["base"]["per_sequence"]["rb"]["value"] == 0
    assert findings.render_behaviour(report) in (ROOT / "README.md").read_text()


def test_the_readme_compress_section_is_the_compress_run_rendered():
    findings = _findings()
    doc = json.loads((ROOT / "docs" / "organism-compress.json").read_text())
    assert doc["winner"]["meets"] and all(f["evaluated"] <= 8 for f in doc["families"].values())
    assert findings.render_compress(doc) in (ROOT / "README.md").read_text()


def test_the_readme_trajectory_section_is_the_early_stopping_report_rendered():
    findings = _findings()
    report = json.loads((ROOT / "docs" / "organism-trajectory.json").read_text())
    assert {r["f"] for r in report["early_stop"]["rows"]} == {0.2, 0.4, 0.6, 0.8}
    assert findings.render_trajectory(report) in (ROOT / "README.md").read_text()


def test_the_demo_is_seed_0_of_the_study_and_lands_inside_the_one_seed_interval():
    study = json.loads((ROOT / "docs" / "organism-study.json").read_text())
    demo = json.loads((ROOT / "docs" / "organism-demo.json").read_text())
    assert demo["plan"]["organism"]["seed"] == 0 and demo["plan"]["score"] == study["plan"]["score"]
    task = next(t for t in study["tasks"] if t not in study["control_tasks"])
    demo_r = {r["edit"]: r["retention"] for r in demo["rows"] if r["task"] == task}
    rows = [r for r in study["rows"] if r["task"] == task]
    assert len(rows) == len(demo_r) == len(study["edits"])
    for r in rows:
        assert demo_r[r["edit"]] == r["per_run"]["seed0"]["retention"], r["edit"]
        assert r["one_run_low"] <= demo_r[r["edit"]] <= r["one_run_high"], r["edit"]
        # the one-seed interval is at least as wide as the mean's: one seed keeps its own training noise
        assert r["one_run_low"] <= r["ci_low"] + 0.02 and r["one_run_high"] >= r["ci_high"] - 0.02, r["edit"]
