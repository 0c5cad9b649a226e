"""report.md opens with three findings in words, each with its interval, read from the report's own numbers."""

import json
from pathlib import Path

from rankedit.report.findings import findings, findings_paragraph
from rankedit.report.rows import markdown

ROOT = Path(__file__).resolve().parent.parent


def _edit(name, size=None, control_of=None, of="tuned"):
    return {"name": name, "method": "m", "of": of, "control_of": control_of, "keeps": f"{name} part",
            "storage_bytes": size, "storage_ratio": None if size is None else size / 10000}


def _row(edit, task, r=None, lo=None, hi=None, f=None, flo=None, fhi=None, gain=None):
    return {"edit": edit, "task": task, "score": 0.5, "retention": r, "ci_low": lo, "ci_high": hi,
            "retention_defined": r is not None, "reason": None, "gain": gain, "gain_ci_low": None if gain is None
            else gain - 0.01, "gain_ci_high": None if gain is None else gain + 0.01,
            "forgetting": f, "forgetting_ci_low": flo, "forgetting_ci_high": fhi, "of": "tuned"}


def _report(significant=True):
    edits = [_edit("rank1", 500), _edit("rank1-random", 500, control_of="rank1"), _edit("rank8", 4000),
             _edit("sft-rank1", 500, of="sft")]
    rows = [_row("rank1", "t", 0.9, 0.8, 1.0, gain=0.09), _row("rank1", "c", f=0.057, flo=0.043, fhi=0.071),
            _row("rank1-random", "t", 0.02, -0.01, 0.05, gain=0.002), _row("rank1-random", "c", f=0.0, flo=-0.01, fhi=0.01),
            _row("rank8", "t", 0.85, 0.7, 0.95, gain=0.08), _row("rank8", "c", f=0.02, flo=0.01, fhi=0.03),
            _row("sft-rank1", "t", 1.5, 1.2, 1.8), _row("sft-rank1", "c", f=0.3, flo=0.2, fhi=0.4)]
    if not significant:
        for r in rows:
            if r["task"] == "t":
                r.update(retention=None, ci_low=None, ci_high=None, retention_defined=False, reason="tuned gain ...")
    gain = (0.1, 0.08, 0.12) if significant else (0.01, -0.01, 0.03)
    refs = [{"model": "tuned", "task": "t", "gain": gain[0], "ci_low": gain[1], "ci_high": gain[2],
             "significant": significant, "score": 0.6},
            {"model": "tuned", "task": "c", "gain": -0.039, "ci_low": -0.065, "ci_high": -0.014, "significant": False,
             "score": 0.8}]
    return {"name": "constructed", "tasks": ["t", "c"], "control_tasks": ["c"], "metrics": {"t": "acc", "c": "acc"},
            "models": {"base": "b", "tuned": "x"}, "edits": edits, "rows": rows, "references": refs,
            "scores": {m: {"t": {"value": 0.5}, "c": {"value": 0.8}} for m in ("base", "tuned")}}


def test_three_findings_with_their_intervals():
    f = findings(_report())
    assert f == [
        "Of the tuned run's gain on t, +10.0 [+8.0, +12.0] points, the edit rank1 (rank1 part) keeps "
        "R = 0.90 [0.80, 1.00] with 500 bytes (5.00% of the bf16 ΔW): the highest R measured.",
        "Its control rank1-random keeps R = 0.02 [-0.01, 0.05]; the two 95% intervals do not overlap.",
        "On the control task c, rank1 loses +5.7 [+4.3, +7.1] points (forgetting, s_base − s; positive = worse), "
        "the tuned run +3.9 [+1.4, +6.5] points."]
    md = markdown(_report())
    para = md.split("\n\n")[1]  # the first paragraph after the title, before every table
    assert para.startswith("**Findings.** (1) Of the tuned run's gain") and "(3) On the control task c" in para
    assert md.index("**Findings.**") < md.index("| model |")


def test_the_best_edit_is_the_smallest_that_cannot_be_told_from_the_highest_r():
    rep = _report()
    big = next(r for r in rep["rows"] if r["edit"] == "rank8" and r["task"] == "t")
    big.update(retention=1.01, ci_low=0.95, ci_high=1.08)  # rank8 is highest, beyond rank1's interval [0.80, 1.00]
    assert findings(rep)[0].startswith("Of the tuned run's gain on t, +10.0 [+8.0, +12.0] points, the edit rank8 (")
    assert findings(rep)[0].endswith("with 4,000 bytes (40.00% of the bf16 ΔW): the highest R measured.")
    big.update(retention=0.95)  # now rank1's interval [0.80, 1.00] reaches it, at an eighth of the bytes
    assert findings(rep)[0].endswith("R = 0.90 [0.80, 1.00] with 500 bytes (5.00% of the bf16 ΔW): the smallest edit "
                                     "whose interval reaches the highest R measured (rank8's, 0.95).")
    assert findings(rep)[1].startswith("Its control rank1-random keeps")


def test_an_undefined_r_is_a_finding_with_its_reason():
    f = findings(_report(significant=False))
    assert f[0] == ("R is undefined on t: the tuned run's gain there, +1.0 [-1.0, +3.0] points, is not significant "
                    "(its 95% interval does not lie above 0), so no edit's share of it is measured.")
    assert f[1] == "The largest gain of an edit on t is rank1's, +9.0 [+8.0, +10.0] points."
    assert f[2] == ("On the control task c, the tuned run loses +3.9 [+1.4, +6.5] points (forgetting, s_base − s; "
                    "positive = worse).")


def test_overlapping_control_and_no_control_task():
    rep = _report()
    ctl = next(r for r in rep["rows"] if r["edit"] == "rank1-random" and r["task"] == "t")
    ctl.update(retention=0.85, ci_low=0.75, ci_high=0.95)
    assert findings(rep)[1].endswith("overlap, so the two are not told apart on these problems.")
    rep.update(tasks=["t"], control_tasks=[])
    assert findings(rep)[2] == "The plan has no control task, so forgetting is not measured."
    assert findings_paragraph({**rep, "references": []}) == []


def test_findings_of_a_kept_report():
    report = json.loads((ROOT / "docs" / "organism-frontier.json").read_text())
    f = findings(report)
    assert len(f) == 3 and f[0].startswith("Of the tuned run's gain on organism_id, +8.8 [+6.9, +10.5] points")
    assert "bytes" in f[0] and f[2].startswith("On the control task organism_control, ")
