"""Early stopping by extrapolation, scored: the speed-up on constructed retentions, and the plan
(f-sweep, alpharl from the pipeline's scores, trajectory section) on the micro organism."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import rankedit
from rankedit.core.errors import RankeditError
from rankedit.organism.recipes import RECIPES
from rankedit.organism.rl import checkpoint_steps
from rankedit.pipeline.plan import parse_plan
from rankedit.report.early_stop import mean_retention, smallest_fraction, speedup


def _rows(table):
    return [{"edit": f"{m}-{f}", "mode": m, "f": f, "retention": r} for m, pts in table.items() for f, r in pts]


def test_speedup_is_the_smallest_fraction_keeping_95_percent():
    table = {"last": [(0.2, 0.50), (0.4, 0.80), (0.6, 0.95), (0.8, 0.99)],
             "linear": [(0.2, 0.70), (0.4, 0.96), (0.6, 0.97), (0.8, 1.01)],
             "rank1-step": [(0.2, 0.96), (0.4, None), (0.6, 0.5), (0.8, 0.1)],  # early f reaches it, later ones not
             "alpharl": [(0.2, 0.2), (0.4, 0.3), (0.6, 0.94999), (0.8, 0.9)]}
    sp = speedup(_rows(table))
    assert sp["plain"] == 0.6 and sp["modes"] == {"linear": 0.4, "rank1-step": 0.2, "alpharl": None}
    assert sp["extrapolated"] == 0.2 and sp["extrapolated_mode"] == "rank1-step"
    assert sp["steps_factor"] == {"plain": pytest.approx(1 / 0.6), "extrapolated": pytest.approx(5.0)}
    # nothing reaches 95%: none on both sides
    none = speedup(_rows({"last": [(0.2, 0.1), (0.8, None)], "linear": [(0.4, 0.94)]}))
    assert none["plain"] is None and none["extrapolated"] is None and none["extrapolated_mode"] is None
    assert none["steps_factor"] == {"plain": None, "extrapolated": None}
    assert smallest_fraction([(0.8, 0.95), (0.4, 0.951)]) == 0.4 and smallest_fraction([]) is None
    assert smallest_fraction([(0.2, 0.9)], keep=0.9) == 0.2


def test_mean_retention_uses_trained_tasks_where_it_is_defined():
    rows = [{"edit": "a", "control_task": False, "retention_defined": True, "retention": 0.9},
            {"edit": "a", "control_task": False, "retention_defined": True, "retention": 0.7},
            {"edit": "a", "control_task": False, "retention_defined": False, "retention": None},
            {"edit": "a", "control_task": True, "retention_defined": None, "retention": None},
            {"edit": "b", "control_task": False, "retention_defined": True, "retention": 5.0}]
    assert mean_retention(rows, "a") == pytest.approx(0.8)
    assert mean_retention(rows[2:4], "a") is None


def test_a_plan_gives_no_accuracies_to_alpharl():
    with pytest.raises(RankeditError, match="come from the pipeline's scores"):
        parse_plan({"organism": {}, "edits": [{"name": "a", "method": "extrapolate", "checkpoints": 0.5,
                                               "params": {"mode": "alpharl", "accuracies": [0.1, 0.2]}}]})
    with pytest.raises(RankeditError, match="trajectory.*checkpoints"):
        parse_plan({"base": "b", "tuned": "t", "trajectory": {}})
    with pytest.raises(RankeditError, match="trajectory.gap_threshold"):
        parse_plan({"organism": {}, "trajectory": {"gap_threshold": 0.5}})


FRACTIONS = (0.2, 0.4, 0.6, 0.8)


def window_end(f: float) -> int:
    """The micro run's last checkpoint step within the first f of its training (40 steps: 0.2 -> 8)."""
    steps = checkpoint_steps(RECIPES["micro"]["rl"]["steps"])
    return max(s for s in steps if s <= f * steps[-1])


@pytest.fixture(scope="module")
def sweep(micro_organism, tmp_path_factory):
    """The organism-trajectory plan's shape on the micro organism: every f with the control and linear,
    alpharl and rank1-step at two of them, and the trajectory section."""
    edits = []
    for f in FRACTIONS:
        edits += [{"name": f"last-{f}", "method": "extrapolate", "params": {"mode": "last", "rest": "tuned"},
                   "checkpoints": f, "control_of": f"linear-{f}"},
                  {"name": f"linear-{f}", "method": "extrapolate", "params": {"mode": "linear", "rest": "tuned"},
                   "checkpoints": f}]
    for f in (0.4, 0.8):
        edits += [{"name": f"{m}-{f}", "method": "extrapolate", "params": {"mode": m, "rest": "tuned"},
                   "checkpoints": f} for m in ("alpharl", "rank1-step")]
    root = tmp_path_factory.mktemp("early")
    plan = root / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "micro sweep", "organism": {"size": "micro", "seed": 0}, "edits": edits,
        "trajectory": {"null_draws": 4, "gap_threshold": 1.1},
        "score": {"tasks": ["organism_id", "organism_control"], "limit": 300, "n_boot": 200},
        "analyze": {"enabled": False}}))
    out = root / "out"
    report = rankedit.run(plan, out, quiet=True)
    return out, report


def test_the_control_is_the_window_last_checkpoint_bit_for_bit(sweep, micro_organism):
    out, report = sweep
    for f in (0.2, 0.6):  # the window's last saved step, read from the micro recipe's checkpoints
        step = window_end(f)
        edit = load_file(str(out / "edits" / f"last-{f}" / "model.safetensors"))
        ck = load_file(str(micro_organism / "rl" / "checkpoints" / f"step-{step}" / "model.safetensors"))
        assert edit.keys() == ck.keys()
        assert all(edit[n].dtype == ck[n].dtype and torch.equal(edit[n].view(torch.int16), ck[n].view(torch.int16))
                   if ck[n].dtype == torch.bfloat16 else torch.equal(edit[n], ck[n]) for n in ck)


def test_the_sweep_is_in_the_report(sweep, micro_organism):
    out, report = sweep
    block = report["early_stop"]
    rows = {r["edit"]: r for r in block["rows"]}
    assert len(rows) == 12 and {r["mode"] for r in rows.values()} == {"last", "linear", "alpharl", "rank1-step"}
    assert {(r["f"], r["window_end"]) for r in rows.values() if r["mode"] == "last"} == {
        (f, window_end(f)) for f in (0.2, 0.4, 0.6, 0.8)}
    # the control's weight error is the window-end checkpoint's own distance to the final one
    from rankedit.pipeline.early_stop_stage import relative_weight_error

    ck = micro_organism / "rl" / "checkpoints"
    want = relative_weight_error(str(micro_organism / "base"), str(micro_organism / "rl"),
                                 str(ck / f"step-{window_end(0.4)}"))
    assert rows["last-0.4"]["weight_error"] == pytest.approx(want, rel=1e-12) and want > 0
    assert relative_weight_error(str(micro_organism / "base"), str(micro_organism / "rl"),
                                 str(micro_organism / "rl")) == 0.0
    # alpharl's accuracies are the scores of the window's checkpoints, target the final model's
    acc = {json.dumps(k): v for k, v in block["accuracies"].items()}
    man = json.loads((out / "edits" / "alpharl-0.4" / "rankedit_edit.json").read_text())["params"]
    sc = report["scores"]
    trained = [t for t in report["tasks"] if t not in report["control_tasks"]]  # a task list names no control
    mean = lambda label: sum(sc[label][t]["value"] for t in trained) / len(trained)  # noqa: E731
    assert man["target_accuracy"] == pytest.approx(mean("tuned")) == block["target_accuracy"]
    steps = checkpoint_steps(RECIPES["micro"]["rl"]["steps"])
    # the 0.4 window's 4 checkpoints; the sweep scored the 8 up to 0.8 and the final model
    assert man["steps"] == [s for s in steps if s <= window_end(0.4)] and len(man["accuracies"]) == 4 and len(acc) == 9
    assert man["accuracies"][-1] == pytest.approx(mean("last-0.4"))  # the window end, scored as the control
    assert set(block["speedup"]) >= {"plain", "extrapolated", "modes", "keep"}
    md = (out / "report.md").read_text()
    assert "## Early stopping by extrapolation" in md and "Smallest f keeping ≥ 95%" in md
    assert "early_stop.png" in report["figures"] and (out / "early_stop.png").stat().st_size > 5000


def test_the_trajectory_section_runs_inside_the_plan(sweep):
    out, report = sweep
    t = report["trajectory"]
    assert t["n_steps"] == 10 and t["n_matrices"] > 0
    summary = json.loads((out / "trajectory" / "summary.json").read_text())
    assert summary["params"]["gap_threshold"] == 1.1 and summary["params"]["null_draws"] == 4
    assert t["dw_linearity_whole"] == summary["dw_linearity_whole"]
    assert {"trajectory/a_final.png", "trajectory/cos_dw_final.png"} <= set(report["figures"])
    assert "## Trajectory of the update" in (out / "report.md").read_text()
    # the exact patches' bytes per step travel into the report, and its markdown quotes them
    from rankedit.pipeline.trajectory_stage import patch_sentence

    assert t["patches"] == summary["patches"] and len(t["patches"]["from_previous"]) == 10
    assert patch_sentence(t["patches"]) in (out / "report.md").read_text()


def test_the_last_mode_returns_the_checkpoint_itself_not_a_rounded_sum():
    """w0 + (w - w0) can miss w by an ulp in float32; the control hands back w itself."""
    from rankedit.edits import EDITS
    from rankedit.edits.registry import MatrixInputs

    w0 = torch.full((3, 2), 1.0e8, dtype=torch.float32)
    w = torch.tensor([[0.1, 3.0], [7.0, 1.0e-3], [5.0, 0.7]], dtype=torch.float32)
    assert not torch.equal(w0 + (w - w0), w)  # why the edit does not go through the sum
    e = EDITS["extrapolate"]
    res = e.run(MatrixInputs(w0, (w0 * 2, w), steps=(1, 2)), e.params(mode="last", steps=(1, 2)))
    assert res.weight is w
    halved = e.run(MatrixInputs(w0, (w0 * 2, w), steps=(1, 2)), e.params(mode="last", steps=(1, 2), multiplier=0.5))
    assert halved.weight is None  # a multiplier scales the delta: the checkpoint is no longer the answer


def test_a_second_run_reuses_the_trajectory_and_the_scores(sweep):
    out, report = sweep
    before = (out / "trajectory" / "summary.json").stat().st_mtime_ns
    again = rankedit.run(out.parent / "plan.yaml", out, quiet=True)
    assert (out / "trajectory" / "summary.json").stat().st_mtime_ns == before
    assert again["early_stop"] == report["early_stop"] and again["trajectory"] == report["trajectory"]
