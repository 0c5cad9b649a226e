"""`rankedit analyze` end to end on tiny local models, and its handling of bad input."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import rankedit
from rankedit.analysis.analyze import read_jsonl
from clirun import run_cli  # tests/ is on sys.path (no package)

ROW_KEYS = {"name", "layer", "module", "kind", "shape", "sparsity_bf16", "sparsity_atol", "rank", "rank_fraction",
            "effective_rank", "stable_rank", "rank1_energy", "angle_left_deg", "angle_right_deg", "spectral_shift",
            "overlap_principal", "overlap_low", "overlap_principal_topq", "rel_update_norm"}
PNGS = {"heatmap_sparsity_bf16.png", "heatmap_angle_left_deg.png", "heatmap_spectral_shift.png",
        "heatmap_rank1_energy.png", "rank1_energy_hist.png"}




@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma", "gpt2"])
def test_analyze_runs_on_each_family(family, tiny_family_pairs, tmp_path, capsys):
    base, tuned = tiny_family_pairs[family]
    out = tmp_path / "out"
    code, stdout, err = run_cli(["analyze", base, tuned, "-o", out], capsys)
    assert code == 0, err
    rows = read_jsonl(out / "metrics.jsonl")
    n_layers = 2
    assert len(rows) == n_layers * (4 if family == "gpt2" else 7)
    for r in rows:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r["kind"] in ("attention", "mlp")
        assert "jaccard" not in r
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"params", "model", "mean", "by_kind", "by_module", "by_layer"}
    assert 0.0 <= summary["model"]["sparsity_bf16"] <= 1.0
    assert set(summary["by_layer"]) == {"0", "1"}
    assert PNGS <= {p.name for p in out.iterdir()}
    assert "Update geometry" in stdout


def test_gpt2_conv1d_is_analysed_in_linear_layout(tiny_family_pairs):
    base, tuned = tiny_family_pairs["gpt2"]
    rows = rankedit.analyze(base, tuned, progress=False)
    c_attn = next(r for r in rows if r["name"].endswith("h.0.attn.c_attn.weight"))
    assert c_attn["shape"] == [192, 64]  # stored (64, 192) as Conv1D; (out, in) after transposing
    assert {r["module"] for r in rows} == {"c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"}


def test_python_api_matches_metrics_file(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    rows = rankedit.analyze(base, tuned, tmp_path / "o", k=4, modules=r"q_proj|down_proj", progress=False, plots=False)
    assert {r["module"] for r in rows} == {"q_proj", "down_proj"}
    assert read_jsonl(tmp_path / "o" / "metrics.jsonl") == json.loads(json.dumps(rows))
    assert all(r["k"] == 4 for r in rows)


def test_known_sparsity_and_rank_through_the_whole_command(tmp_path, tiny_pair):
    """A tuned checkpoint whose q_proj differs from base in exactly 10 entries (and by a rank-1 delta)."""
    base, _ = tiny_pair
    tuned = tmp_path / "tuned"
    shutil.copytree(base, tuned)
    tensors = load_file(tuned / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    w = tensors[name]
    idx = torch.arange(10)
    w = w.clone()
    w[idx, 0] += 0.5  # ten entries of one column: a rank-1 change, big enough for bf16
    tensors[name] = w
    save_file(tensors, tuned / "model.safetensors", metadata={"format": "pt"})
    rows = {r["name"]: r for r in rankedit.analyze(base, tuned, tmp_path / "o", progress=False, plots=False)}
    r = rows[name]
    assert r["sparsity_bf16"] == 1 - 10 / w.numel()
    assert r["rank"] == 1 and r["rank1_energy"] == pytest.approx(1.0)
    other = rows["model.layers.1.mlp.up_proj.weight"]
    assert other["sparsity_bf16"] == 1.0 and other["rank"] == 0 and other["rank1_energy"] is None
    total = sum(t.numel() for t in tensors.values())
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["model"]["sparsity_bf16"] == pytest.approx(1 - 10 / total)


def test_other_tuned_adds_jaccard(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    rows = rankedit.analyze(base, tuned, other_tuned=tuned, progress=False)
    assert all(r["jaccard"] == 1.0 for r in rows)
    assert all(0 < r["jaccard_expected"] <= 1 for r in rows)


# ---- bad input ---------------------------------------------------------------------------------

def _assert_clean_failure(code, err, out_dir, *needles):
    assert code != 0
    assert "Traceback" not in err
    # progress bars redraw with carriage returns; what is left after them is the message
    lines = [seg for line in err.splitlines() for seg in line.split("\r")]
    lines = [seg for seg in lines if seg.strip() and "tensor/s]" not in seg]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out_dir.exists()
    assert not list(out_dir.parent.glob(f".{out_dir.name}.tmp-*"))


def test_missing_path(tiny_pair, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", tiny_pair[0], tmp_path / "nope", "-o", out], capsys)
    _assert_clean_failure(code, err, out, "not found", "nope")


def test_pickle_only_checkpoint_is_refused_with_a_hint(tiny_pair, tmp_path, capsys):
    binonly = tmp_path / "binonly"
    binonly.mkdir()
    shutil.copy(tiny_pair[0] / "config.json", binonly)
    (binonly / "pytorch_model.bin").write_bytes(b"not really a pickle, and never opened")
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", tiny_pair[0], binonly, "-o", out], capsys)
    _assert_clean_failure(code, err, out, "pytorch_model.bin", "never unpickles")


def test_directory_without_weights(tiny_pair, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", tiny_pair[0], empty, "-o", out], capsys)
    _assert_clean_failure(code, err, out, "no safetensors")


def test_mismatched_shapes(tiny_pair, tiny_family_pairs, tmp_path, capsys):
    from rankedit.testing import synthetic

    wide = synthetic.build_random(tmp_path / "wide", "llama", intermediate_size=96)
    capsys.readouterr()  # drop the builder's own progress output
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", tiny_pair[0], wide, "-o", out], capsys)
    _assert_clean_failure(code, err, out, "shape mismatch", "mlp")
    code, _, err = run_cli(["analyze", tiny_pair[0], tiny_family_pairs["gpt2"][1], "-o", out], capsys)
    _assert_clean_failure(code, err, out, "architecture mismatch")


def test_truncated_safetensors(tiny_pair, tmp_path, capsys):
    bad = tmp_path / "truncated"
    shutil.copytree(tiny_pair[1], bad)
    f = bad / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", tiny_pair[0], bad, "-o", out], capsys)
    _assert_clean_failure(code, err, out, "corrupt or truncated", "model.safetensors")


def test_corrupt_header(tiny_pair, tmp_path, capsys):
    bad = tmp_path / "corrupt"
    shutil.copytree(tiny_pair[1], bad)
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", tiny_pair[0], bad, "-o", out], capsys)
    _assert_clean_failure(code, err, out, "corrupt or truncated")


def test_nan_weight(tiny_pair, tmp_path, capsys):
    bad = tmp_path / "nan"
    shutil.copytree(tiny_pair[1], bad)
    tensors = load_file(bad / "model.safetensors")
    tensors["model.layers.1.mlp.down_proj.weight"][3, 3] = float("nan")
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", tiny_pair[0], bad, "-o", out], capsys)
    _assert_clean_failure(code, err, out, "NaN", "down_proj")


@pytest.mark.parametrize("args,needle", [(["--k", "0"], "--k"), (["--alpha", "1.5"], "--alpha"),
                                         (["--modules", "("], "--modules"), (["--modules", "nomatch"], "no 2-D")])
def test_impossible_parameters(tiny_pair, tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(["analyze", *tiny_pair, "-o", out, *args], capsys)
    _assert_clean_failure(code, err, out, needle)


def test_real_entry_point_exit_code(tiny_pair, tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "rankedit", "analyze", str(tiny_pair[0]), str(tmp_path / "missing"),
                        "-o", str(out)], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip().startswith("error: checkpoint not found")
    assert "Traceback" not in p.stderr


def test_help_explains():
    p = subprocess.run([sys.executable, "-m", "rankedit", "analyze", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    assert "metrics.jsonl" in p.stdout and "--other-tuned" in p.stdout


def test_no_plots_lists_only_what_was_written(tiny_pair, tmp_path, capsys):
    out = tmp_path / "np"
    code, stdout, err = run_cli(["analyze", *tiny_pair, "-o", out, "--no-plots"], capsys)
    assert code == 0, err
    assert not list(out.glob("*.png"))
    last = stdout.strip().splitlines()[-1]
    assert last.endswith(f"results in {out}/ (metrics.jsonl, summary.json)") and ".png" not in last
