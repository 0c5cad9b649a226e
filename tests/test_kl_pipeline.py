"""The plan's ``kl:`` entry: KL travelled for base, tuned, SFT and every edit, in report.json, report.md and
the forgetting-vs-KL figure, on the micro organism."""

from __future__ import annotations

import json

import pytest

import rankedit
from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import parse_plan


def test_kl_plan_entry_and_its_shorthand():
    assert parse_plan({"organism": {}, "kl": True}).kl.samples == 4
    assert parse_plan({"organism": {}, "kl": False}).kl is None
    assert parse_plan({"organism": {}}).kl is None
    assert parse_plan({"organism": {}, "kl": {"samples": 8, "max_tokens": 12}}).kl.max_tokens == 12
    with pytest.raises(RankeditError, match="kl: give 'prompts_file' or 'task', not both"):
        parse_plan({"organism": {}, "kl": {"prompts_file": "p.txt", "task": "organism_id"}})
    with pytest.raises(RankeditError, match="kl.samples"):
        parse_plan({"organism": {}, "kl": {"samples": 0}})


def test_organism_prompts_are_the_rl_runs_own():
    from rankedit.organism import tasks
    from rankedit.pipeline.kl_stage import organism_prompts

    trained = [r["prompt"] for r in tasks.rl_prompts(40, seed=10_000 + 2, exclude=tasks.held_out_prompts())]
    assert organism_prompts(16, organism_seed=2) == trained[:16]


@pytest.fixture(scope="module")
def kl_run(micro_organism, tmp_path_factory):
    plan = parse_plan({
        "name": "kl micro", "organism": {"size": "micro", "seed": 0},
        "edits": [{"name": "rank1", "method": "rank-k", "params": {"k": 1}},
                  {"name": "none", "method": "scale", "params": {"factor": 0.0}}],
        "score": {"suite": "organism", "limit": 60, "n_boot": 200},
        "analyze": {"enabled": False},
        "kl": {"samples": 4, "prompts": 16, "max_tokens": 14},
    })
    out = tmp_path_factory.mktemp("kl_run") / "out"
    return rankedit.run(plan, out, quiet=True), out


def test_kl_of_every_model_is_in_the_report(kl_run):
    report, out = kl_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["kl"] == report["kl"]
    models = report["kl"]["models"]
    assert list(models) == ["base", "tuned", "sft", "rank1", "none"]
    assert report["kl"]["settings"] == {"samples": 4, "prompts": 16, "max_tokens": 14, "seed": 0,
                                        "dtype": "float32", "temperature": 1.0}
    zero = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    for label in ("base", "none"):  # scale 0 keeps nothing of the update: its weights are the base's
        for level in ("per_token", "per_sequence"):
            assert models[label][level] == {"mc": zero, "rb": zero}
    for label in ("tuned", "sft", "rank1"):
        rb, mc = models[label]["per_token"]["rb"], models[label]["per_token"]["mc"]
        assert rb["value"] > 0 and rb["ci_low"] <= rb["value"] <= rb["ci_high"]
        assert mc["ci_low"] <= mc["value"] <= mc["ci_high"]
        assert models[label]["samples"] == 64 and 1 <= models[label]["mean_tokens"] <= 14


def test_forgetting_against_kl_section_and_figure(kl_run):
    report, out = kl_run
    md = (out / "report.md").read_text()
    assert "## KL travelled from the base" in md
    section = md.split("## KL travelled from the base")[1]
    for label in ("base", "tuned", "sft", "rank1", "none"):
        assert f"\n| {label} | " in section
    assert "kl_forgetting.png" in report["figures"] and (out / "kl_forgetting.png").stat().st_size > 1000
    from rankedit.report.kl_report import kl_points

    points = {p["model"]: p for p in kl_points(report)}
    assert points["base"]["forgetting"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    row = next(r for r in report["rows"] if r["edit"] == "rank1" and r["task"] == "organism_control")
    assert points["rank1"]["forgetting"]["value"] == row["forgetting"]
    ref = next(r for r in report["references"] if r["model"] == "sft" and r["task"] == "organism_control")
    # a reference's forgetting is its gain negated (points lost), the interval's ends negated and exchanged
    assert points["sft"]["forgetting"] == {"value": -ref["gain"], "ci_low": -ref["ci_high"], "ci_high": -ref["ci_low"]}
    assert points["tuned"]["kl_rb"] == report["kl"]["models"]["tuned"]["per_sequence"]["rb"]
