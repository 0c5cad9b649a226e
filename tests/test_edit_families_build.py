"""Each new edit family built end to end: `rankedit edit NAME ...` through mergekit on a tiny pair,
loaded with AutoModelForCausalLM, every edited matrix equal to the pure function's result; and the
manifest's storage and energy facts, summed over the matrices, equal to the costs known by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

from clirun import run_cli
from rankedit.edits import EDITS
from rankedit.edits.registry import MatrixInputs, matrix_seed
from rankedit.edits.storage import MatrixSize

FAMILIES = [
    ("rank-auto", ["--energy", "0.5"], {"energy": 0.5}),
    ("random-rank-auto", ["--param-ratio", "0.05"], {"param_ratio": 0.05}),
    ("sign", ["--per", "row"], {"per": "row"}),
    ("random-sign", ["--scale", "norm"], {"scale": "norm"}),
    ("dare", ["--drop", "0.8", "--seed", "3"], {"drop": 0.8, "seed": 3}),
    ("sub-rank-1", ["--direction", "base"], {"direction": "base"}),
    ("random-sub-rank-1", ["--scale", "norm"], {"scale": "norm"}),
    ("rank-k", ["--k", "2", "--multiplier", "0.5"], {"k": 2, "multiplier": 0.5}),
]


def _weights(path, names) -> dict[str, torch.Tensor]:
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {n: f.get_tensor(n) for n in names}


@pytest.mark.parametrize("method, args, params", FAMILIES, ids=[f[0] + "-" + f[1][0] for f in FAMILIES])
def test_family_builds_through_the_cli_and_equals_its_pure_function(method, args, params, tiny_pair, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    base, tuned = tiny_pair
    out = tmp_path / method
    code, _, err = run_cli(["edit", method, base, tuned, "-o", out, *args], capsys)
    assert code == 0, err
    man = json.loads((out / "rankedit_edit.json").read_text())
    assert man["method"] == method and man["mergekit_method"] == "rankedit_" + method.replace("-", "_")
    names = [m["name"] for m in man["matrices"]]
    loaded = AutoModelForCausalLM.from_pretrained(out).state_dict()
    w0s, w1s = _weights(base, names), _weights(tuned, names)
    edit = EDITS[method]
    p = edit.params(**params)
    for rec in man["matrices"]:
        name = rec["name"]
        x = MatrixInputs(w0=w0s[name].float(), tuned=(w1s[name].float(),), seed=matrix_seed(p.seed, name))
        want = edit.run(x, p)
        got = loaded[name].float() - x.w0
        if method in ("sign", "random-sign", "dare"):  # plain arithmetic: the very same bits
            assert torch.equal(loaded[name], (x.w0 + want.delta).to(w0s[name].dtype)), name
        else:  # an SVD inside mergekit's threads: equal to float32 rounding of the weights
            assert float((got - want.delta).abs().max()) <= 1e-6 * float(want.delta.abs().max()) + 4e-9, name
        assert rec["rescale"] == pytest.approx(want.rescale, rel=1e-6)
        cost = edit.storage(p, MatrixSize(tuple(x.w0.shape), 4, want.density, want.stored_rank))  # float32: 4 bytes
        assert (rec["stored_params"], rec["stored_bytes"]) == (cost.params, cost.bytes)
        assert rec["bf16_delta_bytes"] == 2 * x.w0.numel()


def test_manifest_costs_and_energies_summed_by_hand(tiny_pair, tmp_path, capsys):
    """float32 tiny pair (4 bytes a value): rank-k k=1 stores (m + n) values per matrix, sign one bit an
    entry plus one scale, dare (drop 0.75) a quarter of the values plus the smaller of bitmask and indices."""
    base, tuned = tiny_pair
    shapes = {}
    with safe_open(str(base / "model.safetensors"), "pt") as f:
        for n in f.keys():
            s = f.get_slice(n).get_shape()
            if len(s) == 2 and "embed" not in n and "lm_head" not in n:
                shapes[n] = tuple(s)
    mn = sum(m * n for m, n in shapes.values())
    want = {
        "rank-k": (["--k", "1"], sum(m + n for m, n in shapes.values()) * 4),
        "sign": ([], sum(math.ceil(m * n / 8) + 4 for m, n in shapes.values())),
        "dare": (["--drop", "0.75"], sum(round(m * n / 4) * 4 + min(math.ceil(m * n / 8), round(m * n / 4) * 4)
                                         for m, n in shapes.values())),
    }
    for method, (args, stored) in want.items():
        out = tmp_path / method
        code, _, err = run_cli(["edit", method, base, tuned, "-o", out, *args], capsys)
        assert code == 0, err
        man = json.loads((out / "rankedit_edit.json").read_text())
        s = man["summary"]
        assert {m["name"] for m in man["matrices"]} == set(shapes)
        assert s["stored_bytes"] == stored and s["bf16_delta_bytes"] == 2 * mn
        assert s["bytes_ratio"] == stored / (2 * mn)
        assert s["stored_bytes"] == sum(m["stored_bytes"] for m in man["matrices"])
        # energy: kept part before the rescale, then the rescale, give the energy kept
        assert s["energy_kept"] == pytest.approx(s["energy_before_rescale"] * s["rescale"], rel=1e-9)
        for m in man["matrices"]:
            assert m["energy_kept"] == pytest.approx(m["energy_before_rescale"] * abs(m["rescale"]), rel=1e-9)
    rk = json.loads((tmp_path / "rank-k" / "rankedit_edit.json").read_text())
    assert rk["summary"]["energy_kept"] == pytest.approx(1.0, abs=1e-5)  # the norm rescale, as before
    assert rk["summary"]["energy_before_rescale"] < 1 and rk["summary"]["rescale"] > 1
    dare = json.loads((tmp_path / "dare" / "rankedit_edit.json").read_text())
    assert {m["rescale"] for m in dare["matrices"]} == {4.0} and dare["summary"]["density"] == pytest.approx(0.25)


def test_new_families_are_listed_by_edit_help(capsys):
    code, out, _ = run_cli(["edit", "--help"], capsys)
    assert code == 0
    for method in ("rank-auto", "random-rank-auto", "sign", "random-sign", "dare", "sub-rank-1", "random-sub-rank-1"):
        assert method in out, method
    code, own, _ = run_cli(["edit", "sign", "--help"], capsys)
    assert code == 0 and "--per [matrix|row]" in own and "--multiplier FLOAT" in own


def test_multiplier_reaches_the_lora_export(tiny_pair, tmp_path):
    from rankedit.edits import build_edit

    base, tuned = tiny_pair
    plain = build_edit("rank-k", base, tuned, tmp_path / "plain", k=2, as_lora=True)
    twice = build_edit("rank-k", base, tuned, tmp_path / "twice", k=2, as_lora=True, multiplier=2.0)
    with safe_open(str(plain / "adapter_model.safetensors"), "pt") as a, \
            safe_open(str(twice / "adapter_model.safetensors"), "pt") as b:
        for key in (k for k in a.keys() if "lora_B" in k):
            A = key.replace("lora_B", "lora_A")
            torch.testing.assert_close(b.get_tensor(key) @ b.get_tensor(A), 2 * a.get_tensor(key) @ a.get_tensor(A))
    p, t = (json.loads((d / "rankedit_edit.json").read_text()) for d in (plain, twice))
    assert t["params"]["multiplier"] == 2.0 and t["summary"]["stored_bytes"] == p["summary"]["stored_bytes"]
    assert [m["rescale"] for m in t["matrices"]] == [2 * m["rescale"] for m in p["matrices"]]
    assert t["summary"]["energy_before_rescale"] == pytest.approx(p["summary"]["energy_before_rescale"])
