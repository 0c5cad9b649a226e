"""docs/findings.md's sections and README.md's five headlines are the kept reports rendered by
scripts/readme_findings.py, not typed by hand."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINDINGS = ROOT / "docs" / "findings.md"


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
    assert section in FINDINGS.read_text()


def test_the_readme_frontier_is_the_frontier_report_rendered():
    findings = _findings()
    report = json.loads((ROOT / "docs" / "organism-frontier.json").read_text())
    assert report["plan"]["organism"] == {**report["plan"]["organism"], "size": "small", "seed": 0}
    section = findings.render_frontier(report)
    assert section in FINDINGS.read_text()
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
    assert findings.render_behaviour(report) in FINDINGS.read_text()


def test_the_readme_compress_section_is_the_compress_run_rendered():
    findings = _findings()
    doc = json.loads((ROOT / "docs" / "organism-compress.json").read_text())
    assert doc["winner"]["meets"] and all(f["evaluated"] <= 8 for f in doc["families"].values())
    assert findings.render_compress(doc) in FINDINGS.read_text()


def test_the_readme_trajectory_section_is_the_early_stopping_report_rendered():
    findings = _findings()
    report = json.loads((ROOT / "docs" / "organism-trajectory.json").read_text())
    assert {r["f"] for r in report["early_stop"]["rows"]} == {0.2, 0.4, 0.6, 0.8}
    assert findings.render_trajectory(report) in FINDINGS.read_text()


def test_the_compress_section_quotes_the_exact_patch_when_the_report_has_it():
    findings = _findings()
    doc = json.loads((ROOT / "docs" / "organism-compress.json").read_text())
    doc["exact_patch"] = {"stored_bytes": 1_000_000, "bytes_ratio": 0.5}
    share = 1_000_000 / doc["winner"]["stored_bytes"]
    assert (f" The lossless point, the exact patch (`rankedit patch`, R = 1 by construction: the tuned model's own "
            f"scores), is 1,000,000 bytes = 0.5 × the bf16 ΔW, {share:.3g} × the winner's.") in findings.render_compress(doc)


def test_the_trajectory_section_quotes_the_exact_patches_when_the_report_has_them():
    findings = _findings()
    report = json.loads((ROOT / "docs" / "organism-trajectory.json").read_text())
    row = lambda step, n, changed: {"step": step, "bytes": n, "full_bytes": 1000, "ratio": n / 1000,  # noqa: E731
                                    "unchanged_share": 1 - changed}
    report["trajectory"]["patches"] = {"from_base": [row(1, 400, 0.5), row(2, 600, 0.7), row(3, 700, 0.8)],
                                       "from_previous": [row(1, 400, 0.5), row(2, 300, 0.4), row(3, 250, 0.3)]}
    text = findings.render_trajectory(report)
    # the chain: link 1 against the base (400), then the smaller of the two per step (300, 250) = 950 of 3 x 1000
    assert (" As exact (lossless) patches of the measured matrices (0.001 MB in full, `rankedit patch`'s encodings): "
            "the last checkpoint against the base 0.0007 MB (70.0%; 80% of the bf16 entries changed); checkpoint to "
            "checkpoint 0.00025 MB to 0.0003 MB (25.0% to 30.0%, 40% of the entries changed at most); the 3 "
            "checkpoints as a chain 0.00095 MB, 31.7% of storing each in full.") in text
    del report["trajectory"]["patches"]  # a report from before the trajectory measured them: the section as stored
    assert "lossless" not in findings.render_trajectory(report)


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


def test_the_readme_headlines_are_the_kept_reports_rendered():
    findings = _findings()
    section = findings.kept_headlines()
    readme = (ROOT / "README.md").read_text()
    assert section in readme and readme.count(findings.HEADLINES_BEGIN) == 1
    items = [line for line in section.splitlines() if line[:3] in {f"{i}. " for i in range(1, 10)}]
    assert [line[:2] for line in items] == ["1.", "2.", "3.", "4.", "5."]
    # the numbers are the reports': rank 1's mean over seeds and the frontier's bytes ratio
    study = json.loads((ROOT / "docs" / "organism-study.json").read_text())
    rank1 = next(r for r in study["rows"] if r["edit"] == "rank1" and r["task"] == "organism_id")
    assert f"R = {rank1['mean']:.2f} [{rank1['ci_low']:.2f}, {rank1['ci_high']:.2f}]" in items[0]
    frontier = json.loads((ROOT / "docs" / "organism-frontier.json").read_text())
    ratio = next(r for r in frontier["frontier"] if r["edit"] == "rank1" and r["task"] == "organism_id")["storage_ratio"]
    assert items[1].startswith(f"2. **{ratio:.2%} of the bf16 update's bytes")


def test_the_headlines_words_follow_the_numbers():
    findings = _findings()
    assert [findings._than(0.2, 0.9), findings._than(0.9, 0.2), findings._than(0.5, 0.5)] == [
        "less than", "more than", "as much as"]
    study = json.loads((ROOT / "docs" / "organism-study.json").read_text())
    for r in study["rows"]:  # swap off-principal and principal-only: the sentence turns round
        if r["edit"] in ("off-principal", "principal-only") and r["task"] == "organism_id":
            r["mean"] = 1.0 - r["mean"]
    reports = {k: json.loads((ROOT / "docs" / f).read_text()) for k, f in findings.KEPT.items() if k != "study"}
    section = findings.render_headlines(study=study, **reports)
    off = next(r["mean"] for r in study["rows"] if r["edit"] == "off-principal" and r["task"] == "organism_id")
    on = next(r["mean"] for r in study["rows"] if r["edit"] == "principal-only" and r["task"] == "organism_id")
    assert f"principal subspaces keeps {findings._than(off, on)} the part inside" in section
    assert section != findings.kept_headlines()


def test_write_puts_each_section_in_docs_findings_and_redoes_the_headlines(tmp_path, monkeypatch):
    findings = _findings()
    (tmp_path / "docs").mkdir()
    for f in findings.KEPT.values():
        (tmp_path / "docs" / f).write_bytes((ROOT / "docs" / f).read_bytes())
    (tmp_path / "docs" / "findings.md").write_text(
        f"intro\n{findings.FRONTIER_BEGIN}\nstale\n{findings.FRONTIER_END}\nreading\n")
    (tmp_path / "README.md").write_text(f"top\n{findings.HEADLINES_BEGIN}\nstale\n{findings.HEADLINES_END}\nend\n")
    monkeypatch.setattr(findings, "ROOT", tmp_path)
    monkeypatch.setattr(findings, "FINDINGS_MD", tmp_path / "docs" / "findings.md")
    monkeypatch.setattr(findings, "README", tmp_path / "README.md")
    findings.main(["--frontier", str(ROOT / "docs" / "organism-frontier.json"), "--write"])
    frontier = json.loads((ROOT / "docs" / "organism-frontier.json").read_text())
    assert (tmp_path / "docs" / "findings.md").read_text() == (
        "intro\n" + findings.render_frontier(frontier) + "\nreading\n")
    assert (tmp_path / "README.md").read_text() == "top\n" + findings.kept_headlines() + "\nend\n"


def test_the_kept_reports_hold_forgetting_as_points_lost():
    """Forgetting is s_base - s_edit (positive = worse) in every kept report: checked against its own scores,
    and the study's seed 0 against `make demo` (the same organism and problems)."""
    import pytest

    for name in ("demo", "frontier", "behaviour", "trajectory"):
        report = json.loads((ROOT / "docs" / f"organism-{name}.json").read_text())
        rows = [r for r in report["rows"] if r["forgetting"] is not None]
        assert rows, name
        for r in rows:
            base = report["scores"]["base"][r["task"]]["value"]
            assert r["forgetting"] == pytest.approx(base - r["score"], abs=1e-12), (name, r["edit"])
            assert r["forgetting_ci_low"] <= r["forgetting"] <= r["forgetting_ci_high"]
    study = json.loads((ROOT / "docs" / "organism-study.json").read_text())
    demo = json.loads((ROOT / "docs" / "organism-demo.json").read_text())
    demo_f = {r["edit"]: r["forgetting"] for r in demo["rows"] if r["forgetting"] is not None}
    control = [r for r in study["rows"] if r["control_task"]]
    assert control and all(r["per_run"]["seed0"]["forgetting"] == pytest.approx(demo_f[r["edit"]]) for r in control)
    # compress.json keeps each candidate's score, not the base's: score + forgetting is the base's, the same
    # for every candidate, and the base's of `make demo` (the same organism and problems)
    compress = json.loads((ROOT / "docs" / "organism-compress.json").read_text())
    for c in compress["candidates"]:
        for task, f in c["forgetting"].items():
            base = demo["scores"]["base"][task]["value"]
            assert c["scores"][task] + f["value"] == pytest.approx(base, abs=1e-12), c["label"]
            assert f["ci_low"] <= f["value"] <= f["ci_high"]
