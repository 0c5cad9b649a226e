"""Artifacts (rankedit.edits.artifact) and their way back (rankedit.edits.apply): the round trip gives
the checkpoint `rankedit edit` builds, bit for bit where the math is exact (masks, DARE, signs,
dense edits, in bf16 too) and to 1e-5 in the logits for LoRA factors (through PEFT as well), in
exactly the bytes the storage accounting counts."""

from __future__ import annotations

import json

import pytest
import torch

from rankedit.edits import delta_format as fmt
from rankedit.edits.apply import apply_artifact
from rankedit.edits.artifact import write_artifact
from rankedit.edits.build import build_edit
from rankedit.edits.manifest import read_manifest
from rankedit.edits.storage import MatrixSize, dense, signs, sparse
from rankedit.files.checkpoint import Checkpoint
from rankedit.testing import synthetic


@pytest.fixture(scope="module")
def bf16_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16-artifact")
    base = synthetic.build_random(root / "base", "llama", seed=0, dtype=torch.bfloat16)
    return base, synthetic.perturb(base, root / "tuned", scale=1e-2, seed=1)


def _round_trip(pair, method, params, tmp_path):
    base, tuned = pair
    ref = build_edit(method, base, tuned, tmp_path / "ref", **params)
    art = write_artifact(base, tuned, method, params, tmp_path / "art", progress=False)
    got = apply_artifact(art["path"], base, tmp_path / "applied", progress=False)
    return ref, art, got


EXACT = [
    ("mask", {"source": "magnitude", "density": 0.2}),  # positions as a bitmask
    ("mask", {"source": "magnitude", "density": 0.01}),  # positions as int32 indices (smaller)
    ("mask", {"source": "random", "density": 0.3, "seed": 5}),
    ("dare", {"drop": 0.9, "seed": 3}),
    ("sign", {"per": "row"}),
    ("sign", {"scale": "norm", "multiplier": 1.5}),
    ("scale", {"factor": 1.5}),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("method,params", EXACT, ids=[f"{m}-{i}" for i, (m, _) in enumerate(EXACT)])
def test_exact_families_rebuild_the_build_bit_for_bit(tiny_pair, bf16_pair, tmp_path, dtype, method, params):
    ref, art, got = _round_trip(tiny_pair if dtype == "float32" else bf16_pair, method, params, tmp_path)
    assert art["kind"] == "rankedit-delta"
    r, g = Checkpoint(ref), Checkpoint(got)
    assert r.names == g.names
    for name in r.names:
        assert torch.equal(r.get(name), g.get(name)), name
    # the bytes on disk are the build's own storage accounting, matrix by matrix summed
    summary = read_manifest(ref)["summary"]
    assert (art["stored_bytes"], art["stored_params"]) == (summary["stored_bytes"], summary["stored_params"])
    payload = tmp_path / "art" / "delta.safetensors"
    head = int.from_bytes(payload.read_bytes()[:8], "little")
    assert payload.stat().st_size - 8 - head == art["stored_bytes"]
    record = json.loads((tmp_path / "art" / "delta.json").read_text())
    assert record["method"] == method and record["version"] == fmt.VERSION and record["base"]["sha256"]
    assert not any(n.startswith(("model.embed", "lm_head", "model.norm")) for n in record["tensors"])


def _logits(model_dir, x, peft_of=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if peft_of is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, peft_of)
    with torch.no_grad():
        return model.eval()(x).logits


@pytest.mark.parametrize("method,params", [("rank-auto", {"energy": 0.5, "scale": "none"}),
                                           ("rank-k", {"k": 2, "multiplier": 1.5, "scale": "norm"}), ("sub-rank-1", {})])
def test_low_rank_edits_become_peft_adapters_with_the_builds_logits(tiny_pair, tmp_path, method, params):
    ref, art, got = _round_trip(tiny_pair, method, params, tmp_path)
    assert art["kind"] == "peft-lora"
    summary = read_manifest(ref)["summary"]
    assert (art["stored_bytes"], art["stored_params"]) == (summary["stored_bytes"], summary["stored_params"])
    cfg = json.loads((tmp_path / "art" / "adapter_config.json").read_text())
    ranks = {m["name"]: m["stored_params"] // sum(Checkpoint(tiny_pair[0]).info(m["name"]).shape)
             for m in read_manifest(ref)["matrices"]}
    if method == "rank-auto":  # ranks differ per matrix: PEFT is told each one, with alpha = rank
        assert len(set(ranks.values())) > 1 and cfg["rank_pattern"]
        assert cfg["alpha_pattern"] == cfg["rank_pattern"]
    for name, k in ranks.items():
        assert cfg["rank_pattern"].get(name.removesuffix(".weight"), cfg["r"]) == k, name
    x = torch.randint(0, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    want = _logits(ref, x)
    assert float((want - _logits(tiny_pair[0], x)).abs().max()) > 1e-3  # the edit does something
    torch.testing.assert_close(_logits(got, x), want, rtol=0, atol=1e-5)  # merged without PEFT
    torch.testing.assert_close(_logits(tiny_pair[0], x, peft_of=tmp_path / "art"), want, rtol=0, atol=1e-5)
    if method == "rank-auto":  # the folder alone: adapter_config.json names the local base's path
        from peft import AutoPeftModelForCausalLM

        with torch.no_grad():
            auto = AutoPeftModelForCausalLM.from_pretrained(str(tmp_path / "art"), dtype=torch.float32).eval()(x).logits
        torch.testing.assert_close(auto, want, rtol=0, atol=1e-5)


def test_bytes_of_constructed_deltas_are_the_storage_accounting():
    """A 10 x 10 bf16 matrix: every layout's payload, counted by hand and by storage.py."""
    w = torch.arange(100, dtype=torch.bfloat16).reshape(10, 10)
    kept = torch.zeros(100, dtype=torch.bool)
    kept[:20] = True  # 20 kept: a 13-byte bitmask beats 20 int32 indices; 40 bytes of values
    parts, rec = fmt.encode_sparse(w, kept.reshape(10, 10))
    assert rec["positions"] == "mask" and fmt.payload_bytes(parts) == 13 + 40
    assert fmt.payload_bytes(parts) == sparse(MatrixSize((10, 10), 2), 0.2).bytes
    kept[2:] = False  # 2 kept: 8 bytes of indices beat the bitmask
    parts, rec = fmt.encode_sparse(w, kept.reshape(10, 10))
    assert rec["positions"] == "index" and fmt.payload_bytes(parts) == 8 + 4
    assert fmt.payload_bytes(parts) == sparse(MatrixSize((10, 10), 2), 0.02).bytes
    assert torch.equal(fmt.decode_sparse(torch.zeros_like(w), parts, rec).reshape(-1)[:2], w.reshape(-1)[:2])
    delta = torch.full((10, 10), 0.25) * torch.where(torch.rand(10, 10, generator=torch.Generator().manual_seed(0)) < .5, -1., 1.)
    for shape, n in (((10, 1), 10), ((1, 1), 1)):
        parts, rec = fmt.encode_sign(delta, shape)
        assert fmt.payload_bytes(parts) == 13 + 4 * n == signs(MatrixSize((10, 10), 2), n).bytes
        assert torch.equal(fmt.decode_sign(torch.zeros(10, 10), parts), delta)
    parts, _ = fmt.encode_dense(w)
    assert fmt.payload_bytes(parts) == 200 == dense(MatrixSize((10, 10), 2)).bytes


def test_a_negative_zero_delta_keeps_its_sign_bit():
    delta = torch.tensor([[-0.0, 0.0], [-0.0, -0.0]])
    parts, _ = fmt.encode_sign(delta, (1, 1))
    back = fmt.decode_sign(torch.tensor([[-0.0, -0.0], [1.0, -0.0]]), parts)
    assert torch.equal(torch.signbit(back), torch.tensor([[True, False], [False, True]]))


@pytest.mark.parametrize("method,params", [("rank-auto", {"energy": 0.5, "scale": "none"}),
                                           ("rank-k", {"k": 2, "multiplier": 1.5, "scale": "norm"}), ("sub-rank-1", {})])
def test_low_rank_artifacts_of_a_bf16_base_rebuild_the_build_bit_for_bit(bf16_pair, tmp_path, method, params):
    """The factors are stored in float32, the precision the edit computed them in: W0 + B A then lands on
    the build's very bf16 weights (factors rounded to bf16 missed them by a bf16 step), and the bytes
    on disk are the record's float32 count."""
    ref, art, got = _round_trip(bf16_pair, method, params, tmp_path)
    assert art["kind"] == "peft-lora"
    r, g = Checkpoint(ref), Checkpoint(got)
    assert r.names == g.names and all(torch.equal(r.get(n), g.get(n)) for n in r.names)
    summary = read_manifest(ref)["summary"]
    assert (art["stored_bytes"], art["stored_params"]) == (summary["stored_bytes"], summary["stored_params"])
    assert art["stored_bytes"] == 4 * art["stored_params"]
