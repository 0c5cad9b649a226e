"""Edited checkpoints end to end: through mergekit, on disk, loaded by transformers."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from rankedit.testing import synthetic
from rankedit.files.checkpoint import Checkpoint, file_sha256
from rankedit.cli.main import main
from rankedit.edits import build_edit, read_manifest
from rankedit.core.linalg import top_k_svd
from rankedit.core.modules import classify

REPO = Path(__file__).resolve().parents[1]


def tensors(d) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def matrix_names(d):
    ck = Checkpoint(d)
    return [n for n in ck.names if classify(n, ck.info(n).shape, ck.model_type).is_matrix]


def write_variant(base, out, fn):
    """Copy checkpoint ``base`` to ``out`` with every attention/MLP matrix replaced by fn(name, w0)."""
    out = Path(out)
    out.mkdir(parents=True)
    for f in Path(base).iterdir():
        if f.suffix != ".safetensors":
            shutil.copy2(f, out / f.name)
    mats = set(matrix_names(base))
    save_file({n: (fn(n, t).contiguous() if n in mats else t) for n, t in tensors(base).items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def cli(args, capsys):
    """Run the CLI in-process; returns (exit code, stderr)."""
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """A Llama whose attention and MLP matrices are all 64 x 64 (so k = 64 is full rank)."""
    root = tmp_path_factory.mktemp("square")
    base = synthetic.build_random(root / "base", "llama", seed=0, intermediate_size=64, num_key_value_heads=4)
    return base, synthetic.perturb(base, root / "tuned", scale=1e-2, seed=1)


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, tiny_pair):
    """Checkpoints W0 + t·D at steps 10, 20, 40, and the exact checkpoint at step 100."""
    root = tmp_path_factory.mktemp("linear_run")
    base, _ = tiny_pair
    g = torch.Generator().manual_seed(5)
    D = {n: 1e-4 * torch.randn(Checkpoint(base).info(n).shape, generator=g) for n in matrix_names(base)}
    cks = {t: write_variant(base, root / f"ck{t}", lambda n, w, t=t: w + t * D[n]) for t in (10, 20, 40, 100)}
    return base, cks


def test_rank_k_full_rank_no_rescale_reproduces_tuned(square, tmp_path):
    base, tuned = square
    out = build_edit("rank-k", base, tuned, tmp_path / "full", k=64, scale="none")
    got, want = tensors(out), tensors(tuned)
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=0, atol=2e-6)
    man = read_manifest(out)
    assert {m["rank_kept"] for m in man["matrices"]} == {64}
    assert man["summary"]["energy_kept"] == pytest.approx(1.0, abs=1e-6)


def test_rank1_of_rank1_update_reproduces_it(tiny_pair, tmp_path):
    base, _ = tiny_pair
    tuned = synthetic.perturb(base, tmp_path / "r1", scale=1e-2, rank=1, seed=3)
    out = build_edit("rank-k", base, tuned, tmp_path / "rank1", k=1)
    got, want = tensors(out), tensors(tuned)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=0, atol=2e-6)
    man = read_manifest(out)
    assert all(m["rank_kept"] == 1 and m["energy_kept"] == pytest.approx(1.0, abs=1e-5) for m in man["matrices"])


def test_off_principal_and_principal_only_on_disk(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    off = tensors(build_edit("off-principal", base, tuned, tmp_path / "off", k=8))
    only = tensors(build_edit("principal-only", base, tuned, tmp_path / "only", k=8))
    w0, w1 = tensors(base), tensors(tuned)
    for n in matrix_names(base):
        d_off, d_only = off[n] - w0[n], only[n] - w0[n]
        torch.testing.assert_close(d_off + d_only, w1[n] - w0[n], rtol=0, atol=1e-6)
        svd = top_k_svd(w0[n], 8, method="exact")
        assert float((svd.U.T @ d_off).norm()) < 1e-4 * float(d_off.norm())
        assert float((d_off @ svd.V).norm()) < 1e-4 * float(d_off.norm())


def test_mask_all_ones_reproduces_tuned_and_random_density(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    full = tensors(build_edit("mask", base, tuned, tmp_path / "ones", source="magnitude", density=1.0))
    for n, t in tensors(tuned).items():
        assert torch.equal(full[n], t), n
    rnd = build_edit("mask", base, tuned, tmp_path / "rnd", source="random", density=0.3, seed=4)
    man = read_manifest(rnd)
    assert all(abs(m["density"] - 0.3) < 0.01 for m in man["matrices"])
    bf16 = read_manifest(build_edit("mask", base, tuned, tmp_path / "bf16", source="bf16"))
    ctrl = read_manifest(build_edit("mask", base, tuned, tmp_path / "ctrl", source="random"))
    for a, b in zip(bf16["matrices"], ctrl["matrices"]):
        assert abs(a["density"] - b["density"]) < 0.01  # the control matches the bf16 mask's density


def test_mask_from_another_run(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    other = synthetic.perturb(base, tmp_path / "other", scale=1e-2, density=0.3, seed=9)
    out = build_edit("mask", base, tuned, tmp_path / "from", source="from", mask_from=other)
    w0, w1, wo, got = tensors(base), tensors(tuned), tensors(other), tensors(out)
    for n in matrix_names(base):
        m = w0[n].to(torch.bfloat16) != wo[n].to(torch.bfloat16)
        torch.testing.assert_close(got[n], torch.where(m, w1[n], w0[n]), rtol=0, atol=1e-7)
    assert read_manifest(out)["inputs"]["other"]["path"] == str(Path(other).resolve())


def test_extrapolate_linear_recovers_final_checkpoint_via_cli(linear_run, tmp_path, capsys):
    base, cks = linear_run
    out = tmp_path / "extra"
    code, err = cli(["edit", "extrapolate", str(base), str(cks[10]), str(cks[20]), str(cks[40]), "--steps", "10,20,40",
                     "--target-step", "100", "-o", str(out), "--quiet"], capsys)
    assert code == 0, err
    got, want = tensors(out), tensors(cks[100])
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=0, atol=1e-6)
    man = read_manifest(out)
    assert [t["step"] for t in man["inputs"]["tuned"]] == [10, 20, 40]
    assert man["params"]["mode"] == "linear" and man["params"]["target_step"] == 100


def test_scale_one_equals_mergekit_task_arithmetic(tiny_pair, tmp_path):
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    base, tuned = tiny_pair
    ours = tensors(build_edit("scale", base, tuned, tmp_path / "scale1", factor=1.0, rest="tuned"))
    cfg = MergeConfiguration.model_validate({"merge_method": "task_arithmetic", "base_model": str(base),
                                             "models": [{"model": str(tuned), "parameters": {"weight": 1.0}}]})
    run_merge(cfg, str(tmp_path / "ta"), MergeOptions(quiet=True, copy_tokenizer=False, write_model_card=False))
    theirs = tensors(tmp_path / "ta")
    assert ours.keys() == theirs.keys()
    for n in theirs:
        assert torch.equal(ours[n], theirs[n]), n


def test_manifest_and_byte_identical_outputs(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    a = build_edit("random-rank-k", base, tuned, tmp_path / "a" / "out", k=2, seed=3)
    b = build_edit("random-rank-k", base, tuned, tmp_path / "b" / "out", k=2, seed=3)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert {"config.json", "generation_config.json", "model.safetensors", "rankedit_edit.json"} <= set(files)
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = build_edit("random-rank-k", base, tuned, tmp_path / "c" / "out", k=2, seed=4)
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    man = json.loads((a / "rankedit_edit.json").read_text())
    assert man["method"] == "random-rank-k" and man["params"]["k"] == 2 and man["params"]["seed"] == 3
    assert man["params"]["as_lora"] is False and man["params"]["rest"] == "base"
    assert man["mergekit_version"] == "0.1.5" and man["rankedit_version"]
    assert man["inputs"]["base"]["sha256"] == {"model.safetensors": file_sha256(Path(base) / "model.safetensors")}
    assert man["inputs"]["tuned"][0]["sha256"]["model.safetensors"] == file_sha256(Path(tuned) / "model.safetensors")
    assert len(man["matrices"]) == man["summary"]["n_matrices"] == len(matrix_names(base))
    assert all(set(m) == {"name", "energy_kept", "density", "rank_kept", "svd_error", "svd_identifiable",
                          "svd_mode", "svd_residual_bound", "energy_before_rescale", "rescale", "stored_params",
                          "stored_bytes", "bf16_delta_bytes", "stored_delta_error", "energy_kept_stored", "stored_dtype"}
               for m in man["matrices"])
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma", "gpt2"])
def test_edited_checkpoints_load_and_generate(tiny_family_pairs, tmp_path, family):
    from transformers import AutoModelForCausalLM

    base, tuned = tiny_family_pairs[family]
    out = build_edit("rank-k", base, tuned, tmp_path / "rk", k=1)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    gen = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert gen.shape == (1, 7)
    w0, w1, got = tensors(base), tensors(tuned), tensors(out)
    mats = set(matrix_names(base))
    assert mats and all(torch.equal(got[n], w0[n]) for n in got if n not in mats)  # rest = base
    assert all(not torch.equal(got[n], w0[n]) and not torch.equal(got[n], w1[n]) for n in mats)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lora_export_matches_merged_logits(tiny_family_pairs, tmp_path, family):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, tuned = tiny_family_pairs[family]
    merged = build_edit("rank-k", base, tuned, tmp_path / "merged", k=3, scale="none")
    lora = build_edit("rank-k", base, tuned, tmp_path / "lora", k=3, as_lora=True)  # the truncated SVD by default
    assert {"adapter_config.json", "adapter_model.safetensors", "rankedit_edit.json"} <= {p.name for p in lora.iterdir()}
    assert read_manifest(lora)["params"]["as_lora"] is True
    x = torch.randint(0, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(merged).eval()(x).logits
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), lora).eval()
        got = peft_model(x).logits
        plain = AutoModelForCausalLM.from_pretrained(base).eval()(x).logits
    assert float((want - plain).abs().max()) > 1e-3  # the edit does something
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_config_files_recipe_and_plain_mergekit_yaml(tiny_pair, linear_run, tmp_path, capsys):
    base, tuned = tiny_pair
    recipe = yaml.safe_load((REPO / "examples" / "edit-rank1.yaml").read_text())
    recipe.update(base=str(base), tuned=str(tuned), out=str(tmp_path / "from-recipe"))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    code, err = cli(["edit", "--config", str(tmp_path / "r.yaml"), "--quiet"], capsys)
    assert code == 0, err
    direct = build_edit("rank-k", base, tuned, tmp_path / "direct", k=1)
    assert (tmp_path / "from-recipe" / "model.safetensors").read_bytes() == (direct / "model.safetensors").read_bytes()

    base2, cks = linear_run
    mk = yaml.safe_load((REPO / "examples" / "edit-mergekit.yaml").read_text())
    mk["base_model"] = str(base2)
    for entry, t in zip(mk["models"], (10, 20, 40)):
        entry["model"] = str(cks[t])
        entry["parameters"]["step"] = t
    mk["parameters"]["target_step"] = 100
    mk["out_dtype"] = "float32"
    (tmp_path / "mk.yaml").write_text(yaml.safe_dump(mk))
    code, err = cli(["edit", "--config", str(tmp_path / "mk.yaml"), "-o", str(tmp_path / "mk-out"), "--quiet"], capsys)
    assert code == 0, err
    got, want = tensors(tmp_path / "mk-out"), tensors(cks[100])
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=0, atol=1e-6)
    assert read_manifest(tmp_path / "mk-out")["method"] == "rankedit_extrapolate"


def _bad_inputs(tmp, tiny_pair, family_pairs, linear_run):
    base, tuned = (str(p) for p in tiny_pair)
    wide = synthetic.build_random(tmp / "wide", "llama", seed=0, hidden_size=96)
    _, cks = linear_run
    c10, c20 = str(cks[10]), str(cks[20])
    out = str(tmp / "OUT")
    return [
        (["rank-k", base, str(wide), "-o", out], "shape mismatch"),
        (["rank-k", base, tuned, "--k", "0", "-o", out], "k"),
        (["rank-k", base, tuned, "--k", "33", "-o", out], "above the rank"),
        (["rank-k", base, str(family_pairs["gpt2"][1]), "-o", out], "architecture mismatch"),
        (["extrapolate", base, c10, "--steps", "10", "--target-step", "50", "-o", out], "at least two"),
        (["extrapolate", base, c20, c10, "--steps", "20,10", "--target-step", "50", "-o", out], "increasing"),
        (["extrapolate", base, c10, c20, "--steps", "10,10", "--target-step", "50", "-o", out], "duplicate"),
        (["extrapolate", base, c10, c20, "--steps", "10,20,30", "--target-step", "50", "-o", out], "steps"),
        (["mask", base, tuned, "--source", "from", "--from", str(wide), "-o", out], "shape mismatch"),
        (["mask", base, tuned, "--source", "from", "-o", out], "--from"),
        (["rank-k", base, base, "-o", out], "same checkpoint"),
        (["rank-k", base, str(tmp / "missing"), "-o", out], "not found"),
        (["scale", base, tuned, tuned, "--factor", "2", "-o", out], "one tuned"),
    ]


def test_bad_input_one_line_error_nothing_left(tiny_pair, tiny_family_pairs, linear_run, tmp_path, capsys):
    for args, needle in _bad_inputs(tmp_path, tiny_pair, tiny_family_pairs, linear_run):
        code, err = cli(["edit", *args], capsys)
        assert code == 1, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, err)
        assert not (tmp_path / "OUT").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".OUT")]


def test_failure_mid_merge_leaves_no_output(tiny_pair, tmp_path, monkeypatch):
    import rankedit.edits.mergekit_methods as mm

    base, tuned = tiny_pair
    out = tmp_path / "out"
    build_edit("scale", base, tuned, out, factor=0.5)
    before = (out / "model.safetensors").read_bytes()
    real, calls = mm.apply_edit, []

    def failing(*a, **kw):
        calls.append(1)
        if len(calls) % 5 == 0:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C half-way
        return real(*a, **kw)

    monkeypatch.setattr(mm, "apply_edit", failing)
    with pytest.raises(KeyboardInterrupt):
        build_edit("scale", base, tuned, out, factor=2.0)
    with pytest.raises(KeyboardInterrupt):
        build_edit("scale", base, tuned, tmp_path / "new", factor=2.0)
    assert (out / "model.safetensors").read_bytes() == before  # the old complete OUT is untouched
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
