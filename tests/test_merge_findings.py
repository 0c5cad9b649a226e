"""scripts/merge_findings.py renders a merge plan's report; docs/merging.md's section is the kept report's."""

import importlib.util
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
    assert "| orth-c | random-orthogonal | t | sft | undefined | of orth |" in text
    assert "- cosine: rho +0.50 [-0.20, +0.90]" in text and "predictor: none" in text
