"""`--as-lora` output: byte-deterministic, in the source dtype, and naming no local path."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from rankedit.testing import synthetic
from rankedit.edits.build import build_edit
from rankedit.core.errors import RankeditError

ROOT = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_two_processes_with_different_hash_seeds_write_identical_adapters(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / "same-name" if not outs else tmp_path / "again" / "same-name"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        r = subprocess.run([sys.executable, "-m", "rankedit", "edit", "rank-k", str(base), str(tuned), "--k", "2",
                            "--as-lora", "--quiet", "-o", str(out)], env=env, capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        outs.append(_files(out))
    # the adapter, its recipe, and rankedit's inventory of what it wrote (rankedit.files.inventory)
    assert set(outs[0]) == {"adapter_config.json", "adapter_model.safetensors", "rankedit_edit.json",
                            ".rankedit-output.json"}
    for name in outs[0]:
        assert outs[0][name] == outs[1][name], name
    cfg = json.loads(outs[0]["adapter_config.json"])
    assert cfg["target_modules"] == sorted(cfg["target_modules"]) and len(cfg["target_modules"]) > 2


def test_adapter_loads_with_auto_peft_from_its_folder_alone(tiny_pair, tmp_path):
    """adapter_config.json names the local base by its absolute path (it has no Hub id), so PEFT's
    AutoPeftModelForCausalLM finds it without being told, and gives the merged edit's logits."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    lora = build_edit("rank-k", *tiny_pair, tmp_path / "lora", k=1, as_lora=True)
    merged = build_edit("rank-k", *tiny_pair, tmp_path / "merged", k=1, scale="none")  # the export's truncation
    cfg = json.loads((lora / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(Path(tiny_pair[0]).resolve())
    x = torch.randint(0, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = AutoPeftModelForCausalLM.from_pretrained(str(lora), dtype=torch.float32).eval()(x).logits
        want = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()(x).logits
        base = AutoModelForCausalLM.from_pretrained(str(tiny_pair[0]), dtype=torch.float32).eval()(x).logits
    assert float((want - base).abs().max()) > 1e-3  # the edit does something
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def _header(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return 8 + n, json.loads(raw[8:8 + n])


@pytest.fixture(scope="module")
def bf16_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    base = synthetic.build_random(root / "base", "llama", seed=0, dtype=torch.bfloat16)
    return base, synthetic.perturb(base, root / "tuned", scale=1e-2, seed=1)


def test_factors_are_stored_in_the_source_dtype_unless_asked(bf16_pair, tiny_pair, tmp_path):
    sizes = {}
    for name, pair, dtype in (("bf16", bf16_pair, "source"), ("fp32", bf16_pair, "float32"),
                              ("fp32src", tiny_pair, "source")):
        out = build_edit("rank-k", *pair, tmp_path / name, k=2, as_lora=True, lora_dtype=dtype)
        f = out / "adapter_model.safetensors"
        head_len, head = _header(f)
        tensors = {k: v for k, v in head.items() if k != "__metadata__"}
        want = {"bf16": "BF16", "fp32": "F32", "fp32src": "F32"}[name]
        assert {v["dtype"] for v in tensors.values()} == {want}
        numel = sum(v["shape"][0] * v["shape"][1] for v in tensors.values())
        assert f.stat().st_size == head_len + numel * (2 if want == "BF16" else 4)  # nothing but the factors
        sizes[name] = (f.stat().st_size - head_len, numel)
        assert json.loads((out / "rankedit_edit.json").read_text())["params"]["lora_dtype"] == dtype
    assert sizes["fp32"][0] == 2 * sizes["bf16"][0] and sizes["fp32"][1] == sizes["bf16"][1]
    with safe_open(str(tmp_path / "bf16" / "adapter_model.safetensors"), "pt") as bf, \
            safe_open(str(tmp_path / "fp32" / "adapter_model.safetensors"), "pt") as fp:
        for k in bf.keys():  # the same factors, rounded once
            assert torch.equal(bf.get_tensor(k), fp.get_tensor(k).to(torch.bfloat16))


def test_unknown_lora_dtype_is_one_error(tiny_pair, tmp_path):
    with pytest.raises(RankeditError, match="--lora-dtype must be one of"):
        build_edit("rank-k", *tiny_pair, tmp_path / "x", k=1, as_lora=True, lora_dtype="int8")
    assert not (tmp_path / "x").exists()
