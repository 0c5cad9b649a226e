"""The size-vs-gain frontier: bytes per edit, the Pareto rule, the table and the figure, on constructed inputs."""

import math

import pytest
import torch
from safetensors.torch import save_file

from rankedit.report.frontier import (across_frontier_rows, computed_storage, delta_bytes, edit_size,
                                      frontier_rows, mark_pareto, matrix_facts, pareto_flags)
from rankedit.report.frontier_figure import frontier_plot
from rankedit.report.rows import markdown
from rankedit.report.several_runs import markdown_runs

A, B = "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"
FACTS = {A: ((4, 6), 2), B: ((8, 5), 2)}  # bf16 matrices: 24 and 40 entries
DELTA = 2 * (24 + 40)


# ---- the Pareto rule ----------------------------------------------------------------------

@pytest.mark.parametrize("points, flags", [
    ([(10, 0.5), (20, 0.9), (30, 0.8)], [True, True, False]),  # larger and worse: dominated
    ([(10, 0.5), (10, 0.5)], [True, True]),  # an exact tie dominates neither
    ([(10, 0.5), (10, 0.4)], [True, False]),  # same size, lower R
    ([(10, 0.5), (12, 0.5)], [True, False]),  # same R, larger
    ([(10, 0.9), (20, 0.9), (20, 0.9)], [True, False, False]),  # tied with each other, both beaten by a smaller one
    ([(10, math.nan), (20, 0.3)], [None, True]),  # NaN R: not ranked, and dominates nothing
    ([(10, None), (20, 0.3), (None, 0.9)], [None, True, None]),  # undefined R or unknown size
    ([(5, -0.2), (50, 1.1)], [True, True]),
    ([], []),
])
def test_pareto_flags(points, flags):
    assert pareto_flags(points) == flags


def test_pareto_is_per_task_and_per_run_and_counts_controls():
    rows = [
        {"edit": "rank1", "task": "t", "of": "tuned", "storage_bytes": 10, "retention": 0.4},
        {"edit": "rank1-random", "task": "t", "of": "tuned", "storage_bytes": 10, "retention": 0.6},  # a control
        {"edit": "dense", "task": "t", "of": "tuned", "storage_bytes": 100, "retention": 0.6},
        {"edit": "sft-dense", "task": "t", "of": "sft", "storage_bytes": 100, "retention": 0.1},  # own group
        {"edit": "rank1", "task": "u", "of": "tuned", "storage_bytes": 10, "retention": None},
        {"edit": "dense", "task": "u", "of": "tuned", "storage_bytes": 100, "retention": 0.2},
    ]
    got = [r["pareto"] for r in mark_pareto(rows)]
    assert got == [False, True, False, True, None, True]


# ---- sizes --------------------------------------------------------------------------------

def _mats(*densities):
    return [{"name": n, "density": d} for n, d in zip((A, B), densities)]


def test_bytes_of_each_family_on_constructed_shapes():
    assert delta_bytes({n: s for n, (s, _) in FACTS.items()}) == 128
    # rank-k: LoRA factors, k(m+n) values per matrix (the rescale folded into them), in float32 (4 bytes
    # each, for a bf16 base too: bf16 factors would not rebuild the build's weights)
    assert computed_storage("rank-k", {"k": 1, "scale": "norm"}, _mats(None, None), FACTS) == \
        (1 * 10 * 4 + 1 * 13 * 4, None)
    assert computed_storage("rank-k", {"k": 2, "as_lora": True}, _mats(None, None), FACTS) == \
        (2 * 10 * 4 + 2 * 13 * 4, None)
    # a mask: the density each matrix kept (its manifest entry): the kept values at the dtype's bytes, and
    # their positions as a packed bitmask (1 bit an entry) where that is smaller than int32 indices
    assert computed_storage("mask", {"source": "bf16"}, _mats(0.5, 0.25), FACTS) == ((12 * 2 + 3) + (10 * 2 + 5), None)
    # dense edits: every entry; a float32 matrix costs 4 bytes a value
    wide = {A: ((4, 6), 4), B: ((8, 5), 2)}
    assert computed_storage("scale", {"factor": 2.0}, _mats(None, None), wide) == (24 * 4 + 40 * 2, None)


def test_edit_size_computed_from_the_records():
    size = edit_size("rank-k", {"k": 1, "rest": "base", "seed": 0, "scale": "norm", "as_lora": False},
                     {"energy_kept": 1.0}, _mats(None, None), FACTS)
    assert size == {"storage_bytes": 92, "delta_bytes": 128, "storage_ratio": 92 / 128,
                    "storage_source": "computed", "storage_reason": None}
    dense = edit_size("scale", {"factor": 1.0}, {}, _mats(None, None), FACTS)
    assert dense["storage_bytes"] == dense["delta_bytes"] == 128 and dense["storage_ratio"] == 1.0


def test_edit_size_takes_the_manifests_own_facts_when_it_states_them():
    summary = {"stored_bytes": 77, "bf16_delta_bytes": 154, "energy_kept": 1.0}
    # a method unknown here, no shapes: the manifest's numbers are used as they are
    assert edit_size("someone-elses", {}, summary, [], {}) == {
        "storage_bytes": 77, "delta_bytes": 154, "storage_ratio": 0.5, "storage_source": "manifest",
        "storage_reason": None}


@pytest.mark.parametrize("method, params, mats, facts, why", [
    ("no-such-edit", {}, _mats(None, None), FACTS, "is not known here"),
    ("rank-k", {"k": 1}, _mats(None, None), {A: FACTS[A]}, f"{B} is not a matrix of the base"),
    ("mask", {"source": "bf16"}, _mats(None, None), FACTS, "give the kept density"),
    ("rank-k", {"k": 1}, [], FACTS, "lists no matrices"),
])
def test_size_unknown_says_why(method, params, mats, facts, why):
    size = edit_size(method, params, {}, mats, facts)
    assert size["storage_bytes"] is None and size["storage_ratio"] is None and size["storage_source"] is None
    assert why in size["storage_reason"]


def test_matrix_facts_from_the_base_header(tmp_path):
    save_file({A: torch.zeros(4, 6, dtype=torch.bfloat16), B: torch.zeros(8, 5, dtype=torch.float32),
               "model.norm.weight": torch.ones(6, dtype=torch.bfloat16)}, str(tmp_path / "model.safetensors"))
    got = matrix_facts(str(tmp_path), [A, B, "model.norm.weight", "not.there"])
    assert got == {A: ((4, 6), 2), B: ((8, 5), 4)}  # 1-D tensors and absent names are no matrices


# ---- the report: rows, table, figure ------------------------------------------------------

def _edit(name, method, size, control_of=None, of="tuned"):
    return {"name": name, "method": method, "of": of, "control_of": control_of, "keeps": name, "energy_kept": 1.0,
            "storage_bytes": size, "storage_ratio": None if size is None else size / 1000}


def _row(edit, task, r=None, lo=None, hi=None, f=None, defined=True):
    return {"edit": edit, "task": task, "score": 0.5, "retention": r, "ci_low": lo, "ci_high": hi,
            "retention_defined": defined if r is not None or not defined else None, "reason": None,
            "gain": None if r is None else 0.1 * r, "gain_ci_low": None if r is None else 0.05,
            "gain_ci_high": None if r is None else 0.15, "forgetting": f, "forgetting_ci_low": None if f is None else f - 0.01,
            "forgetting_ci_high": None if f is None else f + 0.01}


def _report():
    edits = [_edit("rank1", "rank-k", 50), _edit("rank1-random", "random-rank-k", 50, control_of="rank1"),
             _edit("whole", "scale", 1000), _edit("odd", "scale", None)]
    rows = [_row("rank1", "t", 0.7, 0.6, 0.8), _row("rank1", "c", f=-0.02),
            _row("rank1-random", "t", 0.1, 0.0, 0.2), _row("rank1-random", "c", f=0.0),
            _row("whole", "t", 1.0, 1.0, 1.0), _row("whole", "c", f=-0.05),
            _row("odd", "t", defined=False), _row("odd", "c", f=0.01)]
    return {"name": "constructed", "tasks": ["t", "c"], "control_tasks": ["c"], "metrics": {"t": "acc", "c": "acc"},
            "models": {"base": "b", "tuned": "x"},
            "scores": {m: {"t": {"value": 0.5}, "c": {"value": 0.5}} for m in ("base", "tuned")},
            "references": [], "rows": rows, "edits": edits,
            "frontier": frontier_rows(edits, rows, ["t", "c"], ["c"])}


def test_frontier_rows_of_a_constructed_report():
    fr = {r["edit"]: r for r in _report()["frontier"]}
    assert set(fr) == {"rank1", "rank1-random", "whole", "odd"} and all(r["task"] == "t" for r in fr.values())
    assert {n: r["pareto"] for n, r in fr.items()} == {"rank1": True, "rank1-random": False, "whole": True,
                                                       "odd": None}
    assert fr["rank1-random"]["control"] is True and fr["rank1"]["control"] is False
    assert fr["rank1"]["forgetting"] == {"c": {"value": -0.02, "ci_low": -0.03, "ci_high": pytest.approx(-0.01)}}
    assert (fr["rank1"]["storage_bytes"], fr["rank1"]["storage_ratio"]) == (50, 0.05)


def test_the_frontier_table_is_in_the_markdown():
    md = markdown(_report())
    assert "## Size against gain: the frontier" in md and "### t" in md
    table = md[md.index("### t"):]
    assert "| rank1 | 50 | 0.05 | 0.70 [0.60, 0.80] | -2.0 [-3.0, -1.0] | **yes** |  |" in table
    assert "| rank1-random | 50 | 0.05 | 0.10 [0.00, 0.20] | +0.0 [-1.0, +1.0] | no | of rank1 |" in table
    assert "| whole | 1,000 | 1 | 1.00 [1.00, 1.00] | -5.0 [-6.0, -4.0] | **yes** |  |" in table
    assert "| odd | – | – | undefined | +1.0 [+0.0, +2.0] | – |  |" in table
    # smallest first
    assert table.index("| rank1 |") < table.index("| whole |") < table.index("| odd |")


def test_the_figure_is_written(tmp_path):
    path = frontier_plot(_report(), tmp_path / "frontier.png")
    assert path == tmp_path / "frontier.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_the_figure_with_retention_undefined_everywhere_shows_the_gains(tmp_path):
    rep = _report()
    for r in rep["frontier"]:
        r["retention"] = None
    assert frontier_plot(rep, tmp_path / "f.png").stat().st_size > 10_000


def test_no_sized_edit_no_figure(tmp_path):
    rep = _report()
    for r in rep["frontier"]:
        r["storage_bytes"] = None
    assert frontier_plot(rep, tmp_path / "f.png") is None and not (tmp_path / "f.png").exists()


# ---- several runs -------------------------------------------------------------------------

def _runs_report():
    edits = [{k: e[k] for k in ("name", "method", "of", "control_of", "keeps")} for e in _report()["edits"][:3]]
    per = {"s0": {"edits": [_edit("rank1", "rank-k", 50), _edit("rank1-random", "random-rank-k", 50, "rank1"),
                            _edit("whole", "scale", 1000)]},
           "s1": {"edits": [_edit("rank1", "rank-k", 50), _edit("rank1-random", "random-rank-k", 50, "rank1"),
                            _edit("whole", "scale", 800)]}}
    for p in per.values():
        p.update(tasks=["t", "c"], control_tasks=["c"])

    def row(edit, task, mean, lo, hi):
        return {"edit": edit, "task": task, "mean": mean, "ci_low": lo, "ci_high": hi, "defined": mean is not None,
                "control_task": task == "c", "per_run": {}, "t_low": None, "t_high": None,
                "control_of": "rank1" if edit == "rank1-random" else None, "keeps": edit}
    rows = [row("rank1", "t", 0.5, 0.3, 0.7), row("rank1", "c", -0.01, -0.02, 0.0),
            row("rank1-random", "t", 0.6, 0.4, 0.8), row("rank1-random", "c", 0.0, 0.0, 0.0),
            row("whole", "t", 1.0, 1.0, 1.0), row("whole", "c", -0.03, -0.04, -0.02)]
    return {"name": "runs", "runs": {"s0": {"path": "runs/s0"}, "s1": {"path": "runs/s1"}}, "tasks": ["t", "c"],
            "control_tasks": ["c"], "ci_method": "hierarchical", "edits": edits, "rows": rows, "references": [],
            "conclusions": [], "geometry": {"spread": {}, "rl_vs": {}},
            "frontier": across_frontier_rows(edits, rows, per)}


def test_across_runs_frontier_uses_the_mean_size_and_the_mean_retention(tmp_path):
    rep = _runs_report()
    fr = {r["edit"]: r for r in rep["frontier"]}
    assert fr["whole"]["storage_bytes"] == 900 and fr["whole"]["storage_bytes_range"] == [800, 1000]
    assert fr["whole"]["storage_ratio"] == pytest.approx(0.9)
    assert (fr["rank1"]["retention"], fr["rank1"]["ci_low"], fr["rank1"]["ci_high"]) == (0.5, 0.3, 0.7)
    assert {n: r["pareto"] for n, r in fr.items()} == {"rank1": False, "rank1-random": True, "whole": True}
    assert fr["whole"]["forgetting"]["c"] == {"value": -0.03, "ci_low": -0.04, "ci_high": -0.02}
    md = markdown_runs(rep)
    assert "## Size against gain: the frontier" in md
    assert "| rank1-random | 50 | 0.05 | 0.60 [0.40, 0.80] | +0.0 [+0.0, +0.0] | **yes** | of rank1 |" in md
    assert "R̄ t [95%]" in md
    assert frontier_plot(rep, tmp_path / "f.png", r_name="R̄").stat().st_size > 10_000


def test_across_runs_size_unknown_in_one_run_is_unknown():
    rep = _runs_report()
    per = {"s0": {"edits": [_edit("rank1", "rank-k", 50)], "tasks": ["t", "c"], "control_tasks": ["c"]},
           "s1": {"edits": [_edit("rank1", "rank-k", None)], "tasks": ["t", "c"], "control_tasks": ["c"]}}
    fr = across_frontier_rows(rep["edits"][:1], rep["rows"], per)
    assert fr[0]["storage_bytes"] is None and fr[0]["pareto"] is None


def test_the_exact_patch_is_the_frontiers_lossless_point():
    from rankedit.report.frontier import with_exact_patch

    rep = _report()
    refs = [{"model": "tuned", "task": "t", "gain": 0.2, "ci_low": 0.1, "ci_high": 0.3, "significant": True},
            {"model": "tuned", "task": "c", "gain": -0.03, "ci_low": -0.05, "ci_high": -0.01, "significant": True}]
    fr = with_exact_patch(rep["frontier"], refs, {"patch_bytes": 600}, ["t", "c"], ["c"])
    patch = [r for r in fr if r["edit"] == "exact-patch"]
    assert len(patch) == 1 and patch[0]["task"] == "t" and patch[0]["lossless"] and patch[0]["scored_as"] == "tuned"
    assert (patch[0]["retention"], patch[0]["ci_low"], patch[0]["ci_high"]) == (1.0, 1.0, 1.0)
    whole = next(r for r in rep["frontier"] if r["edit"] == "whole")  # the same bf16 ΔW denominator as the edits'
    assert patch[0]["storage_ratio"] == pytest.approx(600 / (whole["storage_bytes"] / whole["storage_ratio"]))
    # R 1 at 600 bytes: 'whole' (R 1, 1000 bytes) is now dominated, rank1 (R 0.7, 50 bytes) still not
    flags = {r["edit"]: r["pareto"] for r in fr}
    assert flags["whole"] is False and flags["rank1"] is True and flags["exact-patch"] is True
    assert patch[0]["forgetting"] == {"c": {"value": 0.03, "ci_low": 0.01, "ci_high": 0.05}}  # points lost
    # where the tuned gain is not significant, the patch's R is undefined like every edit's
    refs[0]["significant"] = False
    undefined = [r for r in with_exact_patch(rep["frontier"], refs, {"patch_bytes": 600}, ["t", "c"], ["c"])
                 if r["edit"] == "exact-patch"][0]
    assert undefined["retention"] is None and undefined["retention_defined"] is False and undefined["pareto"] is None
