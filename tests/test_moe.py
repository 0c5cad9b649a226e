"""Exact facts of the MoE science on planted updates: an update planted in experts 1 and 3 gives those two
all the update share; expert-topn n=2 is the tuned experts bit for bit and the base elsewhere, its control
draws its experts at a fixed seed; router-only and experts-only split ΔW by kind; the routing flip rate is
0 for an unchanged model. Per-expert tensors (Qwen3-MoE) and fused stacks (GPT-OSS) alike."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rankedit.analysis.analyze import analyze
from rankedit.analysis.moe import shares, top_share
from rankedit.analysis.routing import flip_rate, routing_flips
from rankedit.core.errors import RankeditError
from rankedit.core.modules import EXPERT, ROUTER, classify
from rankedit.edits import build_edit, read_manifest
from rankedit.edits.methods.expert_topn import random_experts
from rankedit.files.checkpoint import Checkpoint
from rankedit.testing import families

PLANTED = (1, 3)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """family -> (base, tuned with an update in experts 1 and 3 only, tuned with an update everywhere)."""
    root = tmp_path_factory.mktemp("moe")
    out = {}
    for fam in ("qwen3_moe", "gpt_oss"):
        base = families.build(root / fam / "base", fam)
        out[fam] = (base, families.plant(base, root / fam / "two", experts=PLANTED),
                    families.plant(base, root / fam / "all", seed=2))
    return out


def _tensors(path):
    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def _expert_slices(ck: Checkpoint, t: dict):
    """(name, expert, tensor of that expert) of every routed expert's matrix."""
    for name in ck.names:
        info = classify(name, ck.info(name).shape, ck.model_type, ck.config)
        if info.kind == EXPERT:
            for e in range(ck.info(name).shape[0]) if info.experts else [info.expert]:
                yield name, e, (t[name][e] if info.experts else t[name])


def test_shares_are_norms_over_their_layer_sum():
    s = shares({0: 0.0, 1: 3.0, 2: 0.0, 3: 1.0})
    assert s == {0: 0.0, 1: 0.75, 2: 0.0, 3: 0.25} and top_share(s, 2) == 1.0 and top_share(s, 1) == 0.75
    assert shares({0: 0.0, 1: 0.0}) == {0: 0.0, 1: 0.0}


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_update_planted_in_two_experts_gives_them_the_whole_share(planted, family, tmp_path):
    base, two, _ = planted[family]
    analyze(base, two, tmp_path / "an", progress=False, plots=True)
    moe = json.loads((tmp_path / "an" / "summary.json").read_text())["moe"]
    assert moe["experts_per_token"] == 2
    for layer in moe["layers"].values():
        got = {int(e): v["share"] for e, v in layer["experts"].items()}
        assert {e for e, v in got.items() if v > 0} == set(PLANTED)
        assert sum(got.values()) == pytest.approx(1.0) and layer["top_share"]["2"] == pytest.approx(1.0)
        assert all(layer["experts"][str(e)]["sparsity_bf16"] == 1.0 for e in (0, 2))  # untouched: nothing moved
    assert (tmp_path / "an" / "heatmap_expert_share.png").is_file()


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_expert_topn_keeps_the_planted_experts_bit_for_bit(planted, family, tmp_path):
    base, two, _ = planted[family]
    ck = Checkpoint(base)
    b, t = _tensors(base), _tensors(two)
    out = _tensors(build_edit("expert-topn", base, two, tmp_path / "top2", n=2))
    for name, e, got in _expert_slices(ck, out):
        src = t if e in PLANTED else b
        want = src[name][e] if got.shape != src[name].shape else src[name]
        assert torch.equal(got, want), (name, e)
    for name in ck.names:  # nothing but experts is in t: every other tensor is the base's
        if classify(name, ck.info(name).shape, ck.model_type, ck.config).kind != EXPERT:
            assert torch.equal(out[name], b[name]), name


def test_random_expert_topn_draws_n_experts_at_a_fixed_seed(planted, tmp_path):
    base, _, tuned = planted["qwen3_moe"]
    assert random_experts([0, 1, 2, 3], 2, 0, 0) == random_experts([0, 1, 2, 3], 2, 0, 0)
    assert len(random_experts([0, 1, 2, 3], 2, 5, 1)) == 2
    a = build_edit("random-expert-topn", base, tuned, tmp_path / "r1", n=2, seed=3)
    b = build_edit("random-expert-topn", base, tuned, tmp_path / "r2", n=2, seed=3)
    assert _tensors(a).keys() == _tensors(b).keys()
    assert all(torch.equal(_tensors(a)[k], _tensors(b)[k]) for k in _tensors(a))
    man = read_manifest(a)
    kept = [m for m in man["matrices"] if m["density"] == 1.0]
    assert len(kept) == 2 * 3 * 2  # 2 experts x 3 matrices x 2 layers


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_router_only_and_experts_only_split_the_update_by_kind(planted, family, tmp_path):
    base, _, tuned = planted[family]
    ck = Checkpoint(base)
    b, t = _tensors(base), _tensors(tuned)
    r = _tensors(build_edit("router-only", base, tuned, tmp_path / "router"))
    x = _tensors(build_edit("experts-only", base, tuned, tmp_path / "experts"))
    for name in ck.names:
        kind = classify(name, ck.info(name).shape, ck.model_type, ck.config).kind
        assert torch.equal(r[name], t[name] if kind == ROUTER else b[name]), name
        assert torch.equal(x[name], t[name] if kind == EXPERT else b[name]), name


def test_moe_edits_refuse_a_dense_model(tiny_pair, tmp_path):
    with pytest.raises(RankeditError, match="needs a mixture-of-experts checkpoint"):
        build_edit("expert-topn", *tiny_pair, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_routing_flip_rate(planted):
    assert flip_rate(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1, 0], [2, 0]])) == 0.25
    base, _, tuned = planted["qwen3_moe"]
    prompts = [[5, 6, 7, 8, 9, 10, 11, 12]]
    same = routing_flips(base, base, prompts, 2)
    assert same["mean"] == 0.0 and same["tokens"] == 8 and set(same["flip_rate"]) == {"0", "1"}
    assert routing_flips(base, tuned, prompts, 2)["mean"] > 0  # the planted update moves the routers
