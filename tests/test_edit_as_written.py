"""The edit as written (docs/science.md): E' = round(W0 + E) - W0 is what a user loads and scores, so the
manifest reports it beside E's figures; --dtype float32 writes E exactly.

The planted pair: a bf16 base, and a tuned twin whose every matrix entry is one bf16 step away from the
base's. ``scale --factor 0.25`` then asks for a quarter of a step per entry: below half a step, rounding to
bf16 loses all of it, and in float32 all of it is kept.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rankedit.edits import build_edit
from rankedit.edits.realized import ROUNDING_WARN, overall_stored, realized_norms, stored_figures, stored_matrix
from rankedit.testing import synthetic
from clirun import run_cli  # tests/ is on sys.path (no package)


def _one_step_up(w: torch.Tensor) -> torch.Tensor:
    """Each bf16 entry moved one representable step away from zero (its bit pattern plus one)."""
    return (w.view(torch.int16) + 1).view(torch.bfloat16)


@pytest.fixture(scope="module")
def step_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_step")
    base = synthetic.build_random(root / "base", "llama", seed=0, dtype=torch.bfloat16,
                                  num_hidden_layers=1, intermediate_size=96)
    tuned = root / "tuned"
    shutil.copytree(base, tuned)
    for f in tuned.glob("*.safetensors"):
        t = load_file(f)
        save_file({k: (_one_step_up(v) if v.ndim == 2 and "embed" not in k and "lm_head" not in k else v)
                   for k, v in t.items()}, str(f), metadata={"format": "pt"})
    return base, tuned


def _weights(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_stored_matrix_pure():
    w0 = torch.tensor([[1.0, 2.0], [4.0, -1.0]])  # bf16 steps here: 1/128, 1/64, 1/32, 1/128
    delta = torch.tensor([[1 / 512, 1 / 64], [0.0, -1 / 128]])  # a quarter step (lost), exact steps (kept)
    stored, n = stored_matrix(w0, delta, torch.bfloat16)
    assert stored.dtype == torch.bfloat16
    assert n["stored_error_norm"] == pytest.approx(1 / 512) and n["stored_dtype"] == "bfloat16"
    assert n["stored_edit_norm"] == pytest.approx((1 / 64 ** 2 + 1 / 128 ** 2) ** 0.5)
    exact, n32 = stored_matrix(w0, delta, torch.float32)
    assert n32["stored_error_norm"] == 0 and torch.equal(exact - w0, delta)
    # a matrix given as a weight (a checkpoint kept as it is) is written as that weight
    _, nw = stored_matrix(w0, delta, torch.float32, weight=w0 + delta)
    assert nw["stored_error_norm"] == 0
    facts = {"edit_norm": float(delta.norm()), "dw_norm": 2 * float(delta.norm()), **n}
    fig = stored_figures(facts)
    assert fig["stored_delta_error"] == pytest.approx((1 / 512) / float(delta.norm()))
    assert fig["energy_kept_stored"] == pytest.approx(n["stored_edit_norm"] / facts["dw_norm"])
    whole = overall_stored([facts, {**facts, "stored_error_norm": 0.0}])
    assert whole["stored_delta_error"] == pytest.approx(fig["stored_delta_error"] / 2 ** 0.5)
    assert whole["n_rounding_over"] == (1 if fig["stored_delta_error"] > ROUNDING_WARN else 0)


def test_sub_step_edit_is_lost_in_bf16_and_exact_in_float32(step_pair, tmp_path, caplog, capsys):
    base, tuned = step_pair
    with caplog.at_level(logging.WARNING, logger="rankedit"):
        out = build_edit("scale", base, tuned, tmp_path / "bf16", factor=0.25)
    man = json.loads((out / "rankedit_edit.json").read_text())
    s = man["summary"]
    assert s["energy_kept"] == pytest.approx(0.25, rel=1e-6)  # the edit as computed
    assert s["stored_delta_error"] == pytest.approx(1.0) and s["energy_kept_stored"] == 0.0  # all of it lost
    assert s["stored_dtype"] == "bfloat16" and "dtype" not in man["params"]
    for m in man["matrices"]:
        assert m["stored_delta_error"] == pytest.approx(1.0) and m["energy_kept_stored"] == 0.0
    assert any("rounding to bfloat16 moved the edit by 100.0%" in r.getMessage() for r in caplog.records)
    w0, w = _weights(base), _weights(out)
    assert all(torch.equal(w[k], w0[k]) for k in w0)  # on disk: the base itself

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rankedit"):
        code, said, err = run_cli(["edit", "scale", base, tuned, "--factor", "0.25", "--dtype", "float32",
                                   "-o", tmp_path / "f32"], capsys)
    assert code == 0, err
    out32 = tmp_path / "f32"
    man32 = json.loads((out32 / "rankedit_edit.json").read_text())
    assert f"as written (float32): energy kept 0.2500, stored_delta_error 0; {man32['summary']['checkpoint_bytes']:,} " \
           "bytes of weights" in said
    s32 = man32["summary"]
    assert s32["stored_delta_error"] == 0.0 and s32["energy_kept_stored"] == pytest.approx(0.25, rel=1e-6)
    assert s32["stored_dtype"] == "float32" and man32["params"]["dtype"] == "float32"
    assert "rounding" not in err  # the CLI's warnings are stderr lines
    w32, w1 = _weights(out32), _weights(tuned)
    name = man32["matrices"][0]["name"]
    assert w32[name].dtype == torch.float32
    assert torch.equal(w32[name] - w0[name].float(), 0.25 * (w1[name].float() - w0[name].float()))
    # its cost: every tensor in float32, twice the bf16 checkpoint's bytes (headers aside)
    assert s32["checkpoint_bytes"] > 1.9 * s["checkpoint_bytes"]
    cfg = json.loads((out32 / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "float32"


def test_dtype_refused_where_it_does_not_apply(step_pair, tmp_path):
    from rankedit.core.errors import RankeditError

    base, tuned = step_pair
    with pytest.raises(RankeditError, match="--dtype must be one of"):
        build_edit("scale", base, tuned, tmp_path / "x", factor=0.5, dtype="float16")
    assert not (tmp_path / "x").exists()


def test_every_figure_of_the_edit_as_written_is_defined_in_the_docs():
    science = (Path(__file__).resolve().parent.parent / "docs" / "science.md").read_text()
    for key in ("stored_delta_error", "energy_kept_stored", "stored_dtype", "stored_delta_error_max",
                "n_rounding_over", "checkpoint_bytes", "description"):
        assert f"`{key}`" in science, key


@pytest.mark.parametrize("dtype, given", [(torch.bfloat16, False), (torch.float16, False), (torch.float32, False),
                                          (torch.bfloat16, True), (torch.float32, True)])
def test_stored_matrix_in_place_equals_the_formula(dtype, given):
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(96, 160, generator=gen) * 0.02
    delta = torch.randn(96, 160, generator=gen) * 1e-4
    weight = (w0 + delta) if given else None
    stored, facts = stored_matrix(w0, delta, dtype, weight)
    expect = (weight if given else w0 + delta).to(dtype)
    assert torch.equal(stored, expect) and stored.dtype == dtype
    norms = realized_norms(delta, expect.to(w0.dtype) - w0)
    assert facts["stored_error_norm"] == norms["stored_error_norm"] and facts["stored_edit_norm"] == norms["stored_edit_norm"]
    kept = stored.clone()
    stored_matrix(w0 * 2, delta, dtype, None)  # the next matrix: the first result is its own tensor, untouched
    assert torch.equal(stored, kept)


def test_a_build_does_not_hold_its_kept_buffers_after_it(step_pair, tmp_path, monkeypatch):
    """The merge thread's buffers kept from matrix to matrix (each the largest matrix's size) are dropped
    when the build ends, so a process that goes on to score does not hold them."""
    from rankedit.core import kept

    taken = []
    real = kept.kept
    monkeypatch.setattr("rankedit.edits.realized.kept", lambda *a, **k: taken.append(a[0]) or real(*a, **k))
    base, tuned = step_pair
    build_edit("rank-k", base, tuned, tmp_path / "e", k=1)
    assert "edit as written" in taken  # the build used one on this thread
    assert kept.held() == 0
    stored_matrix(torch.zeros(4, 4), torch.ones(4, 4), torch.bfloat16)
    assert kept.held() == 4 * 4 * 4  # outside a build it stays until released
    kept.release()
    assert kept.held() == 0
