"""The one results schema (rankedit.scoring.table): both files rankedit writes read into the same ScoreTable."""

from __future__ import annotations

import pytest

from rankedit.core.errors import RankeditError
from rankedit.scoring.results import ModelScores, ScoreResult, Settings, TaskScore
from rankedit.scoring.suites import Suite
from rankedit.scoring.table import MetricScore, ScoreTable, read_table

PRIMARY = {"gsm8k": "exact_match,strict-match"}


def _result() -> ScoreResult:
    def model(label, path, strict, flexible):
        metrics = {"exact_match,flexible-extract": TaskScore("gsm8k", "exact_match,flexible-extract", flexible, 0.02, 50),
                   "exact_match,strict-match": TaskScore("gsm8k", "exact_match,strict-match", strict, 0.01, 50)}
        return ModelScores(label, path, {}, "", False, {"gsm8k": metrics}, {})

    suite = Suite(name="s", description="", tasks=("gsm8k",), primary_metrics=PRIMARY)
    return ScoreResult(suite, Settings(), {"base": model("base", "/m/base", 0.25, 0.5),
                                           "edit": model("edit", "/m/edit", 0.75, 0.5)})


def test_report_block_and_scores_rows_read_into_the_same_table():
    result = _result()
    table = ScoreTable.from_result(result)
    assert table.scores == {"base": {"gsm8k": MetricScore("exact_match,strict-match", 0.25, 0.01, 50)},
                            "edit": {"gsm8k": MetricScore("exact_match,strict-match", 0.75, 0.01, 50)}}
    # report.json's "scores" block: key order value, stderr, n, metric (report.json is compared byte for byte)
    block = table.as_json()
    assert list(block["edit"]["gsm8k"]) == ["value", "stderr", "n", "metric"]
    from_report = read_table({"scores": block, "rows": [{"edit": "edit", "task": "gsm8k"}, "not a row"]})
    # scores.json: flat rows of every metric; the primary one is picked whatever the order
    from_scores = read_table({"scores": result.rows(), "primary_metrics": PRIMARY,
                              "models": {"base": {"path": "/m/base"}, "edit": {"path": "/m/edit"}}})
    assert from_report.scores == from_scores.scores == table.scores
    assert from_report.rows == [{"edit": "edit", "task": "gsm8k"}] and from_scores.rows == []
    assert from_scores.paths == {"base": "/m/base", "edit": "/m/edit"} and from_report.paths == {}


def test_a_report_entry_without_metric_takes_the_primary_one_and_nan_is_none():
    t = read_table({"scores": {"m": {"gsm8k": {"value": float("nan"), "n": 3}, "arc": None}}, "primary_metrics": PRIMARY})
    assert t.scores == {"m": {"gsm8k": MetricScore("exact_match,strict-match", None, None, 3),
                              "arc": MetricScore("score", None, None, None)}}


@pytest.mark.parametrize("doc, match", [
    ({"results": {}}, "no 'scores' key"),
    ([], "no 'scores' key"),
    ({"scores": 3}, "must be a list"),
    ({"scores": [{"model": "x", "task": "t"}]}, "malformed row"),
])
def test_what_is_not_a_scores_file_is_one_error(doc, match):
    with pytest.raises(RankeditError, match=match):
        read_table(doc)
