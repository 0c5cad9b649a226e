"""Faithful LoRA extraction (docs/science.md): `--as-lora` and `--artifact` of a rank-family edit default to the
truncated SVD, the best rank-k approximation of ΔW (Eckart-Young); AlphaRL's ‖ΔW‖ rescale is asked for by name."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rankedit.core.modules import as_linear, classify
from rankedit.edits import EDITS
from rankedit.edits.build import build_edit
from rankedit.files.checkpoint import Checkpoint
from clirun import run_cli  # tests/ is on sys.path (no package)


def _relative_errors(base, tuned, adapter) -> tuple[float, float]:
    """(‖B A − ΔW‖ / ‖ΔW‖ over all adapted matrices, the Eckart-Young floor sqrt(Σ_{j>k} s_j² / Σ s_j²))."""
    b, t = Checkpoint(base), Checkpoint(tuned)
    f = load_file(adapter / "adapter_model.safetensors")
    err2 = floor2 = total2 = 0.0
    for key in (k for k in f if "lora_A" in k):
        name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        info = classify(name, b.info(name).shape, b.model_type)
        dw = as_linear(t.get(name).double() - b.get(name).double(), info)
        A, B = f[key].double(), f[key.replace("lora_A", "lora_B")].double()
        s2 = torch.linalg.svdvals(dw) ** 2
        err2 += float(((B @ A) - dw).norm() ** 2)
        floor2 += float(s2[A.shape[0]:].sum())
        total2 += float(s2.sum())
    return (err2 / total2) ** 0.5, (floor2 / total2) ** 0.5


def test_as_lora_is_the_truncated_svd_and_the_rescale_is_asked_for(tiny_pair, tmp_path, capsys):
    base, tuned = tiny_pair
    plain = build_edit("rank-k", base, tuned, tmp_path / "plain", k=2, as_lora=True)
    man = json.loads((plain / "rankedit_edit.json").read_text())
    assert man["params"]["scale"] == "none" and man["summary"]["rescale"] == pytest.approx(1.0)
    err, floor = _relative_errors(base, tuned, plain)
    assert err == pytest.approx(floor, rel=1e-4) and floor > 0.5  # Eckart-Young's optimum, nothing above it
    # float32 factors of a float32 pair: written as computed
    assert man["summary"]["stored_dtype"] == "float32" and man["summary"]["stored_delta_error"] < 1e-6

    code, out, err_text = run_cli(["edit", "rank-k", base, tuned, "--k", "2", "--as-lora", "--scale", "norm",
                                   "-o", tmp_path / "norm", "--quiet"], capsys)
    assert code == 0, err_text
    scaled = json.loads((tmp_path / "norm" / "rankedit_edit.json").read_text())
    assert scaled["params"]["scale"] == "norm" and scaled["summary"]["energy_kept"] == pytest.approx(1.0)
    assert _relative_errors(base, tuned, tmp_path / "norm")[0] > err  # the rescale moves away from ΔW
    code, out, err_text = run_cli(["edit", "rank-k", base, tuned, "--k", "2", "--as-lora", "-o", tmp_path / "cli",
                                   "--quiet"], capsys)
    assert code == 0, err_text
    assert json.loads((tmp_path / "cli" / "rankedit_edit.json").read_text())["params"]["scale"] == "none"
    # the merged edit keeps AlphaRL's rescale as its default: an edit, not an extraction
    assert EDITS["rank-k"].params().scale == "norm"


def test_an_artifact_of_rank_k_is_the_truncated_svd(tiny_pair, tmp_path, capsys):
    base, tuned = tiny_pair
    code, out, err = run_cli(["edit", "rank-k", base, tuned, "--k", "3", "--artifact", "-o", tmp_path / "art",
                              "--quiet"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "art" / "delta.json").read_text())
    assert rec["kind"] == "peft-lora" and rec["params"]["scale"] == "none"
    got, floor = _relative_errors(base, tuned, tmp_path / "art")
    assert got == pytest.approx(floor, rel=1e-4)
