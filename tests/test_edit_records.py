"""The edit records: describe() words, controls, storage costs, the SVD-rank check and the
command-line options generated from the parameters, each on constructed inputs."""

from __future__ import annotations

import click
import pytest

from rankedit.cli.edit_options import ChoiceOrNumber, IntList, model_options
from rankedit.core.errors import RankeditError
from rankedit.edits import EDITS
from rankedit.edits.registry import describe
from rankedit.edits.storage import MatrixSize, Storage


@pytest.mark.parametrize("method, params, words", [
    ("rank-k", {"k": 1}, "top-1 singular directions of ΔW, rescaled to ‖ΔW‖"),
    ("rank-k", {"k": 4, "scale": "none"}, "top-4 singular directions of ΔW"),
    ("rank-k", {"k": 2, "scale": 0.5}, "top-2 singular directions of ΔW, ×0.5"),
    ("random-rank-k", {"k": 1}, "1 random direction per matrix, same norm (control)"),
    ("random-rank-k", {"k": 3}, "3 random directions per matrix, same norm (control)"),
    ("off-principal", {"k": 8}, "ΔW outside W0's top-8 singular subspaces"),
    ("principal-only", {"k": 8}, "ΔW inside W0's top-8 singular subspaces"),
    ("mask", {"source": "bf16"}, "entries whose bf16 value changed"),
    ("mask", {"source": "magnitude"}, "largest 10% of |ΔW|"),
    ("mask", {"source": "principal", "density": 0.25, "k": 4}, "top 25% entries of W0's rank-4 part"),
    ("mask", {"source": "low"}, "bottom 50% entries of |W0|"),
    ("mask", {"source": "from", "mask_from": "/x"}, "entries the other run changed (transplant)"),
    ("mask", {"source": "random", "seed": 1}, "random entries, same density as bf16 mask (control)"),
    ("mask", {"source": "random", "density": 0.3}, "random entries, density 30% (control)"),
    ("extrapolate", {"mode": "linear", "steps": [2, 4], "target_step": 10}, "linear extrapolation from steps ≤ 4 to step 10"),
    ("extrapolate", {"mode": "last", "steps": [2, 4], "target_step": 10},
     "the checkpoint at step 4 as it is, not extrapolated (control)"),
    ("scale", {"factor": 1.5}, "1.5 × ΔW"),
])
def test_describe_words_from_manifest_params(method, params, words):
    # a manifest's params also hold keys that are not the edit's (as_lora, lora_dtype)
    assert describe(method, {**params, "as_lora": False, "rest": "base"}) == words


def test_describe_of_an_unknown_method_names_it_and_bad_params_are_one_error():
    assert describe("rank-9", {"k": 1}) == "rank-9"
    with pytest.raises(RankeditError, match="invalid parameters for rank-k: k"):
        describe("rank-k", {"k": 0})


@pytest.mark.parametrize("method, params, named", [
    ("rank-k", {"k": 0}, r"k \(--k\): "),
    ("rank-auto", {"param_ratio": 2.0}, r"param_ratio \(--param-ratio\): "),
])
def test_a_bad_parameter_is_named_as_the_api_and_the_command_line_name_it(method, params, named):
    from rankedit.edits.registry import get_edit, parse_params

    with pytest.raises(RankeditError, match=named):
        parse_params(get_edit(method), params)


@pytest.mark.parametrize("method, params, control, changed", [
    ("rank-k", {"k": 3, "scale": "none", "seed": 2}, "random-rank-k", {"k": 3, "scale": "none", "seed": 2}),
    ("off-principal", {"k": 8}, "principal-only", {"k": 8}),
    ("mask", {"source": "bf16"}, "mask", {"source": "random", "density": None}),
    ("mask", {"source": "magnitude"}, "mask", {"source": "random", "density": 0.1}),
    ("extrapolate", {"mode": "rank1", "steps": (1, 2), "target_step": 5}, "extrapolate",
     {"mode": "last", "steps": (1, 2), "target_step": 5}),
])
def test_each_edit_names_its_control(method, params, control, changed):
    edit = EDITS[method]
    name, p = edit.control_for(edit.params(**params))
    assert name == control and {k: getattr(p, k) for k in changed} == changed


@pytest.mark.parametrize("method, params", [
    ("random-rank-k", {}), ("principal-only", {}), ("mask", {"source": "random"}),
    ("extrapolate", {"mode": "last", "steps": (1, 2)}), ("scale", {}),
])
def test_controls_have_no_control(method, params):
    edit = EDITS[method]
    assert edit.control_for(edit.params(**params)) is None


@pytest.mark.parametrize("method, params, size, params_, bytes_", [
    # LoRA factors k(m + n), in the source dtype (bf16: 2 bytes; float32: 4)
    ("rank-k", {"k": 1}, MatrixSize((4, 6)), 10, 40),  # LoRA factors in float32 for a bf16 source too
    ("rank-k", {"k": 1}, MatrixSize((4, 6), itemsize=4), 10, 40),
    ("rank-k", {"k": 3}, MatrixSize((8, 5)), 39, 156),
    ("random-rank-k", {"k": 2}, MatrixSize((8, 5)), 26, 104),
    # kept values plus a packed bitmask of ceil(mn / 8) bytes ...
    ("mask", {"source": "magnitude", "density": 0.25}, MatrixSize((4, 6)), 6, 6 * 2 + 3),
    ("mask", {"source": "principal"}, MatrixSize((4, 6)), 12, 12 * 2 + 3),  # default α 0.5
    ("mask", {"source": "bf16"}, MatrixSize((10, 10), density=0.37), 37, 37 * 2 + 13),  # the density the build kept
    # ... or int32 indices where they are smaller: 100 kept of 10⁴ entries, 400 bytes < 1250
    ("mask", {"source": "random", "density": 0.01}, MatrixSize((100, 100)), 100, 100 * 2 + 400),
    ("off-principal", {"k": 2}, MatrixSize((4, 6)), 24, 48),
    ("principal-only", {"k": 2}, MatrixSize((4, 6)), 24, 48),
    ("scale", {"factor": 2.0}, MatrixSize((7, 3)), 21, 42),
    ("extrapolate", {"mode": "linear", "steps": (1, 2), "target_step": 3}, MatrixSize((7, 3)), 21, 42),
    ("extrapolate", {"mode": "rank1", "steps": (1, 2), "target_step": 3}, MatrixSize((7, 3)), 10, 40),
])
def test_storage_cost_in_params_and_bytes(method, params, size, params_, bytes_):
    edit = EDITS[method]
    assert edit.storage(edit.params(**params), size) == Storage(params_, bytes_)


def test_bf16_mask_cost_needs_the_kept_density():
    edit = EDITS["mask"]
    with pytest.raises(ValueError, match="give the kept density"):
        edit.storage(edit.params(source="bf16"), MatrixSize((4, 4)))


def test_svd_rank_comes_from_the_record():
    """What build.plan_edit checks against each matrix's short side (was build.K_EDITS)."""
    rank = {m: EDITS[m].svd_rank(EDITS[m].params(**p)) for m, p in {
        "rank-k": {"k": 5}, "off-principal": {"k": 7}, "scale": {},
        "extrapolate": {"mode": "linear", "steps": (1, 2), "target_step": 3}}.items()}
    assert rank == {"rank-k": 5, "off-principal": 7, "scale": None, "extrapolate": None}
    mask = EDITS["mask"]
    assert mask.svd_rank(mask.params(source="principal", k=9)) == 9
    assert mask.svd_rank(mask.params(source="bf16", k=9)) is None


def test_options_generated_from_the_params():
    opts = {o.name: o for o in model_options(EDITS["mask"].params)}
    assert opts["mask_from"].opts == ["--from"] and opts["mask_from"].metavar == "OTHER_TUNED"
    assert isinstance(opts["source"].type, click.Choice) and opts["source"].default == "bf16"
    assert opts["k"].type is click.INT and opts["k"].default == 16 and opts["density"].default is None
    rank = {o.name: o for o in model_options(EDITS["rank-k"].params)}
    assert isinstance(rank["scale"].type, ChoiceOrNumber) and rank["scale"].default == "norm"
    steps = {o.name: o for o in model_options(EDITS["extrapolate"].params)}["steps"]
    assert isinstance(steps.type, IntList) and steps.required and steps.metavar == "S1,S2,..."
    factor = {o.name: o for o in model_options(EDITS["scale"].params)}["factor"]
    assert factor.required and factor.type is click.FLOAT
    lora = {o.name: o for o in model_options(EDITS["rank-k"].options)}
    assert lora["as_lora"].is_flag and list(lora["lora_dtype"].type.choices) == ["source", "float32", "bfloat16", "float16"]
    assert EDITS["random-rank-k"].options is None


def test_generated_types_parse_and_refuse():
    scale, steps = ChoiceOrNumber(("norm", "none")), IntList()
    assert scale.convert("none", None, None) == "none" and scale.convert("0.5", None, None) == 0.5
    with pytest.raises(click.BadParameter, match="use norm, none or a number"):
        scale.convert("big", None, None)
    assert steps.convert("100, 200,300", None, None) == [100, 200, 300]
    with pytest.raises(click.BadParameter, match="comma-separated list of integers"):
        steps.convert("1,two", None, None)
