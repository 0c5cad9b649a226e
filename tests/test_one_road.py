"""One function runs one matrix's edit (``rankedit.edits.matrix_edit.edit_matrix``): a merged checkpoint
(through mergekit, or written tensor by tensor), its LoRA export and its artifact come from the same call,
bit for bit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rankedit.core.modules import loaded_names
from rankedit.edits import build_edit
from rankedit.edits import matrix_edit
from rankedit.edits.apply import apply_artifact
from rankedit.edits.artifact import write_artifact
from rankedit.testing import families


@pytest.fixture(scope="module")
def vl_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("vl")
    base = families.build(root / "base", "qwen3_5")
    return base, families.plant(base, root / "tuned")


def _tensors(path):
    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


@pytest.mark.parametrize("pair, route", [("tiny_pair", "mergekit"), ("vl_pair", "streamed")])
def test_merged_lora_and_artifact_come_from_one_call(pair, route, request, tmp_path, monkeypatch):
    base, tuned = request.getfixturevalue(pair)
    real = matrix_edit.edit_matrix
    calls: dict[str, dict] = {}

    def spy(*args, **kw):
        m = real(*args, **kw)
        calls[writer][m.key] = m
        return m

    monkeypatch.setattr(matrix_edit, "edit_matrix", spy)
    writer = "merged"
    calls[writer] = {}
    # scale none: an extraction (the LoRA export, the artifact) is the plain truncation (docs/science.md,
    # "Faithful LoRA extraction"), so the merged edit compared with them is asked for the same
    merged = build_edit("rank-k", base, tuned, tmp_path / "merged", k=2, scale="none")
    writer = "lora"
    calls[writer] = {}
    lora = build_edit("rank-k", base, tuned, tmp_path / "lora", k=2, as_lora=True, lora_dtype="float32")
    writer = "artifact"
    calls[writer] = {}
    write_artifact(base, tuned, "rank-k", {"k": 2}, tmp_path / "art", progress=False)

    from rankedit.edits.manifest import read_manifest

    assert read_manifest(merged)["writer"]["route"] == route
    keys = set(calls["merged"])
    assert keys and set(calls["lora"]) == keys == set(calls["artifact"])
    out, adapter = _tensors(merged), load_file(str(lora / "adapter_model.safetensors"))
    for key in keys:
        m = calls["merged"][key]
        for other in ("lora", "artifact"):  # the same inputs and the same result, bit for bit
            o = calls[other][key]
            assert torch.equal(o.x.w0, m.x.w0) and torch.equal(o.x.w1, m.x.w1) and o.x.seed == m.x.seed
            assert torch.equal(o.result.delta, m.result.delta)
            assert all(torch.equal(o.result.parts[p], m.result.parts[p]) for p in ("A", "B"))
        assert torch.equal(out[key], m.weight)  # what the merged checkpoint holds is that call's weight
        module = next(f"base_model.model.{c}.lora_A.weight" for c in loaded_names(key.removesuffix(".weight"))
                      if f"base_model.model.{c}.lora_A.weight" in adapter)
        assert torch.equal(adapter[module], m.result.parts["A"])
    monkeypatch.undo()
    apply_artifact(tmp_path / "art", base, tmp_path / "applied", progress=False)
    rebuilt = _tensors(tmp_path / "applied")
    assert all(torch.equal(rebuilt[k], out[k]) for k in out)
