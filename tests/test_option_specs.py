"""Every option declared once: the commands' options generated from a spec carry its default, a plan's section
extends the same spec, the API's defaults are the spec's, and one rule is one check (rankedit.core.option_rules)."""

import importlib
import inspect

import pytest

import rankedit.analysis.trajectory as api
from rankedit.analysis.analyze import analyze
from rankedit.analysis.analyze_options import AnalyzeCommandOptions, AnalyzeOptions
from rankedit.analysis.trajectory import trajectory
from rankedit.analysis.trajectory_options import API_NAMES as TRAJECTORY_API_NAMES, TrajectoryOptions
from rankedit.cli.main import COMMANDS, cli
from rankedit.core.errors import RankeditError
from rankedit.core.option_rules import check_value
from rankedit.pipeline.compress.command import compress
from rankedit.pipeline.compress.compress_options import CompressOptions
from rankedit.pipeline.kl_spec import KLSpec
from rankedit.pipeline.plan import AnalyzeSpec, OrganismSpec, ScoreSpec, parse_plan
from rankedit.pipeline.trajectory_spec import TrajectorySpec
from rankedit.scoring.kl.sampler import kl
from rankedit.scoring.score import score
from rankedit.scoring.score_options import KLOptions, ScoreOptions

# command spec -> (the plan section that extends it, the API function that takes its fields)
SPECS = {ScoreOptions: (ScoreSpec, score), KLOptions: (KLSpec, kl), AnalyzeOptions: (AnalyzeSpec, analyze),
         AnalyzeCommandOptions: (None, analyze), TrajectoryOptions: (TrajectorySpec, trajectory),
         CompressOptions: (None, compress)}
# API function -> {spec field: its parameter}, where the API spells a field otherwise
API_NAMES = {trajectory: TRAJECTORY_API_NAMES}


def _generated():
    """(command, option, spec, field) of every option a command generated from a spec."""
    out = []
    for name, (mod, attr, _) in COMMANDS.items():
        cmd = getattr(importlib.import_module(mod), attr)
        out += [(name, p, *p.spec) for p in cmd.params if hasattr(p, "spec")]
    return out


def test_the_commands_take_their_options_from_the_specs():
    found = _generated()
    assert {c for c, *_ in found} >= {"score", "kl", "analyze", "trajectory", "compress"}
    for command, param, spec, field in found:
        want = spec.model_fields[field].get_default(call_default_factory=True)
        assert param.default == want, (command, param.name)
        assert param.name == field


@pytest.mark.parametrize("spec", list(SPECS))
def test_plan_cli_and_api_share_each_default(spec):
    section, api = SPECS[spec]
    params = inspect.signature(api).parameters
    names = API_NAMES.get(api, {})
    assert set(names) <= set(spec.model_fields) and set(names.values()) <= set(params)  # the mapping is live
    for field, info in spec.model_fields.items():
        want = info.get_default(call_default_factory=True)
        if section is not None:
            assert section.model_fields[field].get_default(call_default_factory=True) == want, (section, field)
            assert section.model_fields[field].metadata == info.metadata, (section, field)  # the same bounds
        name = names.get(field, field)
        if name in params:
            assert params[name].default == want, (api.__name__, name)


def test_one_rule_is_one_check_everywhere():
    with pytest.raises(RankeditError, match="--limit must be at least 1, got 0"):
        check_value(ScoreOptions, "limit", 0, "--limit")
    with pytest.raises(RankeditError, match="--limit must be at least 1, got 0"):
        score(["m"], suite="organism", limit=0)  # the API, before any model is touched
    with pytest.raises(RankeditError, match="score.limit"):
        parse_plan({"organism": {}, "score": {"limit": 0}}, "p.yaml")
    with pytest.raises(RankeditError, match="--batch-size must be at least 1, got 0"):
        score(["m"], suite="organism", batch_size=0)
    check_value(ScoreOptions, "batch_size", "auto", "--batch-size")
    with pytest.raises(RankeditError, match="--alpha must be between 0 and 1 \\(exclusive\\), got 1.0"):
        check_value(AnalyzeCommandOptions, "alpha", 1.0, "--alpha")
    with pytest.raises(RankeditError, match="--q must be in \\(0, 1\\], got nan"):
        check_value(AnalyzeCommandOptions, "q", float("nan"), "--q")
    with pytest.raises(RankeditError, match="batch_size must be at least 1, got 0"):
        kl("m", "b", ["p"], batch_size=0)


class _Handed(Exception):
    """The command handed its values to the API (a stand-in that stops there)."""


def test_every_trajectory_option_reaches_the_api(monkeypatch):
    """Every generated trajectory option is handed to the API under its name there (null_draws as n_null)."""
    got = {}

    def handed(*args, **kwargs):
        got.update(kwargs)
        raise _Handed

    monkeypatch.setattr(api, "trajectory", handed)
    args = ["trajectory", "b", "c1", "c2", "c3", "--steps", "1,2,3", "-o", "o", "--gap-threshold", "1.2",
            "--null-draws", "3", "--seed", "5", "--device", "cpu", "--modules", "q_proj", "--no-plots"]
    with pytest.raises(_Handed):
        cli.main(args=args, prog_name="rankedit", standalone_mode=False)
    want = {"gap_threshold": 1.2, "null_draws": 3, "seed": 5, "device": "cpu", "modules": "q_proj", "plots": False}
    assert {f: got[TRAJECTORY_API_NAMES.get(f, f)] for f in TrajectoryOptions.model_fields} == want
    with pytest.raises(RankeditError, match="--gap-threshold must be a finite number at least 1, got inf"):
        trajectory("b", ["c1", "c2", "c3"], steps=[1, 2, 3], gap_threshold=float("inf"))
    with pytest.raises(RankeditError, match="--null-draws must be at least 1, got 0"):
        trajectory("b", ["c1", "c2", "c3"], steps=[1, 2, 3], n_null=0)
    with pytest.raises(RankeditError, match="trajectory.gap_threshold"):
        parse_plan({"organism": {}, "trajectory": {"gap_threshold": 0.5}}, "p.yaml")


def test_compress_scores_with_score_s_options_and_says_where_it_differs():
    """compress's scoring options are score's: --limit the same field, --batch-size the same rule with another
    default, declared in its help; --seed has the bounds of a plan's organism.seed."""
    mine, score_s = CompressOptions.model_fields, ScoreOptions.model_fields
    assert mine["limit"].default == score_s["limit"].default and mine["limit"].metadata == score_s["limit"].metadata
    assert mine["limit"].description == score_s["limit"].description
    assert mine["batch_size"].annotation == score_s["batch_size"].annotation
    assert mine["batch_size"].default == 64 != score_s["batch_size"].default
    assert f"not `rankedit score`'s {score_s['batch_size'].default}" in mine["batch_size"].description
    assert mine["seed"].metadata == OrganismSpec.model_fields["seed"].metadata
    for field, value, msg in [("keep", 0, "--keep must be in \\(0, 1\\], got 0"),
                              ("keep", float("nan"), "--keep must be in"),
                              ("max_candidates", 0, "--max-candidates must be at least 1, got 0"),
                              ("limit", 0, "--limit must be at least 1, got 0"),
                              ("batch_size", 0, "--batch-size must be at least 1, got 0"),
                              ("seed", -1, "--seed must be at least 0, got -1")]:
        with pytest.raises(RankeditError, match=msg):  # the API, before any model is touched
            compress("b", "t", "o", tasks=["x"], **{field: value})
    check_value(CompressOptions, "batch_size", "auto", "--batch-size")
