"""report.md's words: an undefined R names its task and run; models are named without the user's absolute paths."""

import os

from rankedit.report.rows import shown_path, undefined_lines


def _row(edit, task, reason, retention=None, control=False, of="tuned"):
    return {"edit": edit, "task": task, "of": of, "retention": retention, "reason": reason, "control_task": control}


def test_undefined_retention_names_task_run_and_edits():
    why = "tuned gain not significant: +0.0000, 95% CI [-0.0100, +0.0100] does not lie above 0 (n=500)"
    rows = [_row("rank1", "organism_id", why), _row("random-rank1", "organism_id", why),
            _row("rank1", "organism_hard", "tuned gain lower: -0.0350, 95% CI [-0.05, -0.02] does not lie above 0 (n=500)"),
            _row("rank1", "organism_control", None, control=True),
            _row("sft-rank1", "organism_id", why, of="sft"),
            _row("kept", "organism_id", None, retention=0.8)]
    lines = undefined_lines(rows)
    assert lines[:2] == ["", "Retention undefined:"]
    assert f"- on organism_id, against the tuned run (rank1, random-rank1): {why}" in lines
    assert f"- on organism_id, against the sft run (sft-rank1): {why}" in lines
    assert any(line.startswith("- on organism_hard, against the tuned run (rank1): tuned gain lower") for line in lines)
    assert len(lines) == 5  # one line per (task, run, reason); defined and control rows add none
    assert undefined_lines([_row("kept", "t", None, retention=1.0)]) == []


def test_shown_path(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RANKEDIT_CACHE", str(cache))
    out = tmp_path / "runs" / "out"
    assert shown_path("Qwen/Qwen2.5-0.5B", out) == "Qwen/Qwen2.5-0.5B"
    assert shown_path(str(cache / "organism" / "micro-seed0-abc" / "base"), out) == \
        "$RANKEDIT_CACHE/organism/micro-seed0-abc/base"
    assert shown_path(str(tmp_path / "models" / "base"), out) == os.path.join("..", "..", "models", "base")
