"""scripts/merge_findings.py renders a merge plan's report; docs/merging.md's section is the kept report's."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("merge_findings", ROOT / "scripts" / "merge_findings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


REPORT = {
    "plan": {"name": "p", "merges": [{"name": "soup", "method": "task-arithmetic", "runs": ["tuned", "other_tuned"],
                                      "control_of": None},
                                     {"name": "orth-c", "method": "random-orthogonal", "runs": ["tuned", "sft"],
                                      "control_of": "orth"}]},
    "date": "2026-12-07", "machine": "2 cores", "tasks": ["t", "c"],
    "merges": [{"merge": "soup", "task": "t", "run": "tuned", "retention": 0.8, "ci_low": 0.6, "ci_high": 1.0,
                "retention_defined": True},
               {"merge": "orth-c", "task": "t", "run": "sft", "retention": None, "ci_low": None, "ci_high": None,
                "retention_defined": False}],
    "interference": {"pairs": {"tuned|other_tuned": {"overall": {
        "cosine": 0.25, "cosine_null": 0.0, "subspace_overlap_left": 0.5, "subspace_overlap_left_null": 0.05,
        "jaccard": 0.4, "jaccard_null": 0.3, "sign_conflict": 0.2, "sign_conflict_null": 0.5,
        "rank1_overlap": 0.7, "rank1_overlap_null": 0.01}}}},
    "merge_prediction": {"merges": ["soup", "x", "y"], "figures": {"cosine": {"rho": 0.5, "ci_low": -0.2, "ci_high": 0.9, "n": 3}},
                         "predictor": None},
}


def test_the_section_renders_every_merge_row_pair_and_prediction():
    text = _script().section(REPORT)
    assert "| tuned + other_tuned | 0.250 (null 0.000) | 0.500 (null 0.050) | 0.400 (null 0.300) |" in text
    assert "| soup | task-arithmetic | t | tuned | 0.80 [0.60, 1.00] |  |" in text
    assert "orth-c" not in text.split("**Each merge")[1].split("pairs have R undefined")[0]  # undefined: counted
    assert "1 of 2 (merge, task, run) pairs have R undefined" in text
    assert "they merge 1 distinct sets of runs" in text


def test_the_runs_alone_lead_with_their_scores_and_names():
    report = {**REPORT, "scores": {"base": {"t": {"value": 0.1}, "c": {"value": 0.9}},
                                   "tuned": {"t": {"value": 0.25}, "c": {"value": 0.8}},
                                   "sft": {"t": {"value": 0.2}, "c": {"value": 0.85}}},
              "models": {"base": "/x/base", "tuned": "/x/rl", "sft": "/x/sft"}}
    text = _script().section(report)
    assert "tuned is `rl`" in text and "sft is" not in text
    assert "| base | 10.0% | 90.0% |" in text and "| tuned | 25.0% | 80.0% |" in text and "| sft | 20.0% | 85.0% |" in text
    assert "- cosine: rho +0.50 [-0.20, +0.90]" in text and "predictor: none" in text


def test_docs_merging_holds_the_kept_reports_section():
    mod = _script()
    kept = json.loads(mod.KEPT.read_text())
    assert kept["merges"] and kept["interference"]["pairs"]  # a real run's report, with every part
    assert mod.BEGIN + "\n" + mod.section(kept) + mod.END in mod.MERGING_MD.read_text()
