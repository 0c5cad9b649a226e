"""Merges in plans: the `merges:` section is checked like `edits:`, and the report measures each merge
against each of its runs (exact on constructed scores)."""

from __future__ import annotations

import pytest

from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import parse_plan
from rankedit.report.merges import merge_markdown, merge_rows, worst_retention
from rankedit.scoring.results import ModelScores, ScoreResult, Settings, TaskScore
from rankedit.scoring.suites import Suite

ORG = {"organism": {"size": "micro", "seed": 0}}


def test_a_plan_names_merges_of_its_runs():
    plan = parse_plan({**ORG, "edits": [{"name": "r1", "method": "rank-k", "params": {"k": 1}}],
                       "merges": [{"name": "soup", "method": "task-arithmetic", "runs": ["tuned", "other_tuned"],
                                   "params": {"weights": [0.5, 0.5]}},
                                  {"name": "orth", "method": "orthogonal", "runs": ["tuned", "sft"]},
                                  {"name": "orth-c", "method": "random-orthogonal", "runs": ["tuned", "sft"],
                                   "control_of": "orth"}]})
    assert [e.name for e in plan.builds] == ["r1", "soup", "orth", "orth-c"]
    assert plan.merges[0].runs == ["tuned", "other_tuned"]


@pytest.mark.parametrize("merges, edits, msg", [
    ([{"name": "m", "method": "ties", "runs": ["tuned"]}], [], "needs 'runs': two or more different runs"),
    ([{"name": "m", "method": "ties", "runs": ["tuned", "tuned"]}], [], "two or more different runs"),
    ([{"name": "m", "method": "rank-k", "runs": ["tuned", "sft"]}], [], "rank-k edits one run: put it in 'edits:'"),
    ([], [{"name": "e", "method": "ties"}], "ties merges several runs: put it in 'merges:'"),
    ([{"name": "m", "method": "ties", "runs": ["tuned", "sft"], "params": {"density": 2}}], [], "merges.0 (m): params.density"),
    ([{"name": "r1", "method": "ties", "runs": ["tuned", "sft"]}], [{"name": "r1", "method": "rank-k"}],
     "repeated: r1"),
])
def test_a_bad_merge_is_one_line_naming_it(merges, edits, msg):
    with pytest.raises(RankeditError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        parse_plan({**ORG, "edits": edits, "merges": merges})


def test_a_merge_of_a_run_the_plan_does_not_name_is_refused():
    with pytest.raises(RankeditError, match="merges other_tuned, which the plan does not name"):
        parse_plan({"base": "b", "tuned": "t", "merges": [{"name": "m", "method": "ties", "runs": ["tuned", "other_tuned"]}]})


def _scores(label: str, per: dict[str, list[float]]) -> ModelScores:
    return ModelScores(label, label, {}, label, False, raw={},
                       scores={t: {"acc": TaskScore(t, "acc", sum(v) / len(v), None, len(v), dict(enumerate(v)))}
                               for t, v in per.items()})


def test_merge_rows_measure_the_merge_against_each_run_exactly():
    n = 40
    base = [0.0] * n
    a = [1.0] * 20 + [0.0] * 20  # gain 0.5
    b = [1.0] * 10 + [0.0] * 30  # gain 0.25
    merged = [1.0] * 10 + [0.0] * 30  # keeps b's gain, half of a's
    ctrl = [1.0] * n
    suite = Suite("s", "", ("t", "c"), control_tasks=("c",))
    models = {lab: _scores(lab, {"t": v, "c": ctrl}) for lab, v in
              (("base", base), ("tuned", a), ("other_tuned", b), ("soup", merged))}
    result = ScoreResult(suite, Settings(), models)
    rows = merge_rows(result, [{"name": "soup", "runs": ["tuned", "other_tuned"]}], n_boot=200)
    assert [(r["task"], r["run"]) for r in rows] == [("t", "tuned"), ("t", "other_tuned")]  # not the control task
    assert rows[0]["retention"] == pytest.approx(0.5) and rows[1]["retention"] == pytest.approx(1.0)
    assert all(r["retention_defined"] and r["n"] == n for r in rows)
    assert worst_retention(rows, "soup")["run"] == "tuned"
    text = "\n".join(merge_markdown(rows))
    assert "| soup | t | tuned | 0.50 [" in text and "0.50 (t, tuned)" in text
    missing = merge_rows(ScoreResult(suite, Settings(), {k: v for k, v in models.items() if k != "other_tuned"}),
                         [{"name": "soup", "runs": ["tuned", "other_tuned"]}], n_boot=200)
    assert missing[1]["reason"] == "other_tuned not scored" and missing[1]["retention"] is None


def test_spearman_is_exact_on_constructed_numbers():
    from rankedit.report.merges import ranks, spearman, spearman_interval

    assert list(ranks([3.0, 1.0, 2.0, 2.0])) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) != spearman([1, 2, 3], [5, 5, 5])  # NaN: a constant side
    iv = spearman_interval([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], n_boot=200)
    assert iv["rho"] == pytest.approx(1.0) and iv["ci_low"] == pytest.approx(1.0) and iv["n"] == 6


def test_the_interference_prediction_names_the_figure_that_ranks_the_losses():
    from rankedit.report.merges import interference_prediction

    # three pairs of runs; the loss of each merge grows with the pair's sign conflict, not with its cosine
    pairs = {"tuned|other_tuned": {"overall": {"cosine": 0.5, "sign_conflict": 0.1}},
             "tuned|sft": {"overall": {"cosine": 0.1, "sign_conflict": 0.3}},
             "other_tuned|sft": {"overall": {"cosine": 0.9, "sign_conflict": 0.6}}}
    merges, rows = [], []
    for i, (runs, r) in enumerate([(["tuned", "other_tuned"], 0.9), (["tuned", "sft"], 0.6),
                                   (["other_tuned", "sft"], 0.2), (["tuned", "other_tuned"], 0.95),
                                   (["tuned", "sft"], 0.5), (["other_tuned", "sft"], 0.1)]):
        merges.append({"name": f"m{i}", "runs": runs, "control_of": None})
        rows.append({"merge": f"m{i}", "task": "t", "run": runs[0], "retention": r, "retention_defined": True})
    merges.append({"name": "ctrl", "runs": ["tuned", "sft"], "control_of": "m1"})  # a control: left out
    rows.append({"merge": "ctrl", "task": "t", "run": "tuned", "retention": -5.0, "retention_defined": True})
    pred = interference_prediction(merges, rows, pairs, n_boot=300)
    assert pred["merges"] == [f"m{i}" for i in range(6)]
    assert pred["loss"] == pytest.approx([0.1, 0.4, 0.8, 0.05, 0.5, 0.9])
    assert pred["figures"]["sign_conflict"]["rho"] == pytest.approx(spearman_of([0.1, 0.3, 0.6] * 2, pred["loss"]))
    assert pred["figures"]["sign_conflict"]["rho"] > 0.8
    assert pred["figures"]["jaccard"]["n"] == 0  # a figure the pairs lack is counted, not invented


def spearman_of(x, y):
    from rankedit.report.merges import spearman

    return spearman(x, y)


def test_merges_name_the_organisms_runs():
    plan = parse_plan({"organism": {"size": "micro", "seed": 0, "skills": ["id", "sum"], "rl_seeds": 3},
                       "merges": [{"name": "m", "method": "ties", "runs": ["rl", "rl-seed2", "rl-seed3", "rl-sum"]}]})
    assert plan.merges[0].runs == ["tuned", "other_tuned", "rl-seed3", "rl-sum"]  # rl and rl-seed2: one label each
    with pytest.raises(RankeditError, match="'rl-sum', which is not a run of the plan"):
        parse_plan({**ORG, "merges": [{"name": "m", "method": "ties", "runs": ["rl", "rl-sum"]}]})


def test_the_organism_merge_example_plan_is_valid():
    from rankedit.pipeline.plan import load_plan

    plan = load_plan("organism-merge")
    assert len(plan.merges) == 12 and plan.score.suite == "organism-merge"
    assert {r for m in plan.merges for r in m.runs} == {"tuned", "other_tuned", "rl-seed3", "rl-sum"}


def test_a_plan_with_merges_runs_end_to_end(micro_organism, tmp_path):
    """Merges are built, scored, measured against each run; the runs' interference is measured before."""
    from rankedit.pipeline.run import run

    plan = parse_plan({"name": "merges", "organism": {"size": "micro", "seed": 0},
                       "merges": [{"name": "soup", "method": "task-arithmetic", "runs": ["rl", "rl-seed2"],
                                   "params": {"weights": [0.5, 0.5]}},
                                  {"name": "orth", "method": "orthogonal", "runs": ["tuned", "sft"], "params": {"k": 1}},
                                  {"name": "orth-c", "method": "random-orthogonal", "runs": ["tuned", "sft"],
                                   "params": {"k": 1}, "control_of": "orth"}],
                       "score": {"suite": "organism", "limit": 12, "batch_size": 64, "n_boot": 100},
                       "analyze": {"k": 2, "matched_sft": False}})
    report = run(plan, tmp_path / "out", quiet=True)
    assert [e["name"] for e in report["edits"]] == ["soup", "orth", "orth-c"]
    assert {(r["merge"], r["run"]) for r in report["merges"]} == {
        ("soup", "tuned"), ("soup", "other_tuned"), ("orth", "tuned"), ("orth", "sft"), ("orth-c", "tuned"), ("orth-c", "sft")}
    assert "other_tuned" in report["scores"]  # a merged run is scored, so each merge is measured against it
    assert set(report["interference"]["pairs"]) == {"tuned|other_tuned", "tuned|sft", "other_tuned|sft"}
    assert set(report["merge_prediction"]["figures"]) >= {"cosine", "jaccard", "sign_conflict"}
    assert "analysis/merged-runs/interference_cosine.png" in report["figures"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Merges against each of their runs" in md and (tmp_path / "out" / "report.html").is_file()
    from rankedit.edits.manifest import read_manifest

    assert read_manifest(tmp_path / "out" / "edits" / "soup")["method"] == "task-arithmetic"
