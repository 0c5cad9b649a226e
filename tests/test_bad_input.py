"""Bad input, command by command: one line `error: ...`, exit 1, no traceback, nothing written.

Tiny local checkpoints (tests/conftest.py ``tiny_pair``) are copied and broken
on purpose: an Inf or a NaN written into one matrix, a tensor dropped or
renamed, a file cut short. Each case is run through the real CLI entry point
(analyze, edit, score, run, push; push against the local Hub server).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from clirun import run_cli  # tests/ is on sys.path (no package)
from hub_server import serving
from rankedit.files import validate
from rankedit.files.checkpoint import Checkpoint
from rankedit.core.errors import RankeditError

MATRIX = "model.layers.0.mlp.down_proj.weight"
TOKEN = "hf_FAKEtokenForBadInput0123456789abc"


# ---- broken copies of the tiny pair ---------------------------------------------------------
def _edited_copy(src: Path, dst: Path, change) -> Path:
    """A copy of checkpoint ``src`` whose tensors went through ``change(dict)``."""
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    change(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _set(value):
    def change(t):
        t[MATRIX][1, 2] = value
    return change


def _drop(t):
    del t["model.layers.1.mlp.up_proj.weight"]


def _rename(t):
    t["model.layers.1.mlp.up_projection.weight"] = t.pop("model.layers.1.mlp.up_proj.weight")


def _truncated(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    f = dst / "model.safetensors"
    os.truncate(f, f.stat().st_size - 1000)
    return dst


def _with_tokenizer(path: Path) -> Path:
    from rankedit.organism.tokenizer import build_tokenizer

    build_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bad(tiny_pair, tmp_path_factory):
    """name -> a broken copy of the tuned model (each with a tokenizer, so only its weights are wrong)."""
    root = tmp_path_factory.mktemp("bad")
    tuned = tiny_pair[1]
    out = {
        "inf": _edited_copy(tuned, root / "inf", _set(math.inf)),
        "nan": _edited_copy(tuned, root / "nan", _set(math.nan)),
        "dropped": _edited_copy(tuned, root / "dropped", _drop),
        "renamed": _edited_copy(tuned, root / "renamed", _rename),
        "truncated": _truncated(tuned, root / "truncated"),
        "sound": Path(shutil.copytree(tuned, root / "sound")),
    }
    for p in out.values():
        _with_tokenizer(p)
    return out


def _fails(args, capsys, *needles, out: Path | None = None) -> str:
    """Run the CLI; assert one error line holding every needle, exit 1, and no OUT or temporary left."""
    code, _, err = run_cli(args, capsys)
    lines = [seg for line in err.splitlines() for seg in line.split("\r") if seg.strip() and "/s]" not in seg]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    return lines[0]


# ---- the validation module itself ------------------------------------------------------------
def test_sound_checkpoint_passes_every_check(bad):
    ck = Checkpoint(bad["sound"])
    validate.check_finite(ck)
    validate.check_complete(ck)
    validate.check_tokenizer(ck.path)
    validate.check_scorable(ck)


@pytest.mark.parametrize("case,needle", [("inf", "1 of 8192 entries"), ("nan", "1 of 8192 entries"),
                                         ("truncated", "corrupt or truncated")])
def test_weight_file_check_names_the_problem(bad, case, needle):
    with pytest.raises(RankeditError, match="model.safetensors") as ei:
        validate.check_weight_file(bad[case] / "model.safetensors")
    assert needle in str(ei.value)
    if case != "truncated":
        assert MATRIX in str(ei.value) and "NaN or Inf" in str(ei.value)


def test_truncation_is_measured_from_the_header(bad):
    """The byte ranges the header promises are compared with the file's length."""
    with pytest.raises(RankeditError, match=r"ends at byte \d+ of the data, which has \d+ bytes"):
        validate.check_weight_file(bad["truncated"] / "model.safetensors")


@pytest.mark.parametrize("case,needles", [
    ("dropped", ["incomplete checkpoint", "missing 1 tensor", "model.layers.1.mlp.up_proj.weight"]),
    ("renamed", ["missing 1 tensor", "model.layers.1.mlp.up_proj.weight", "up_projection", "renamed?"]),
])
def test_completeness_against_the_architecture(bad, case, needles):
    with pytest.raises(RankeditError) as ei:
        validate.check_complete(Checkpoint(bad[case]))
    for n in needles:
        assert n in str(ei.value)


def test_manifest_json_is_strict():
    from rankedit.edits.manifest import strict_json

    assert json.loads(strict_json({"energy_kept": 0.5})) == {"energy_kept": 0.5}
    with pytest.raises(RankeditError, match="non-finite"):
        strict_json({"energy_kept": math.nan})


# ---- analyze ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case,needles", [("inf", ["NaN or Inf", MATRIX]), ("nan", ["NaN or Inf", MATRIX]),
                                          ("truncated", ["corrupt or truncated"])])
def test_analyze_refuses(tiny_pair, bad, tmp_path, capsys, case, needles):
    out = tmp_path / "out"
    _fails(["analyze", tiny_pair[0], bad[case], "-o", out, "--no-plots"], capsys, *needles, out=out)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_analyze_atol_must_be_finite(tiny_pair, tmp_path, capsys, value):
    out = tmp_path / "out"
    _fails(["analyze", *tiny_pair, "-o", out, "--atol", value], capsys, "--atol must be a finite number", out=out)


# ---- edit ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,extra", [("rank-k", ["--k", "1"]), ("mask", []), ("scale", ["--factor", "2"])])
@pytest.mark.parametrize("case", ["inf", "nan"])
def test_edit_refuses_non_finite_input(tiny_pair, bad, tmp_path, capsys, method, extra, case):
    """Before: rank-k wrote an all-NaN matrix (Inf) or died in LinAlgError (NaN); mask and scale wrote NaN."""
    out = tmp_path / "out"
    _fails(["edit", method, tiny_pair[0], bad[case], *extra, "-o", out, "--quiet"], capsys, "NaN or Inf", MATRIX,
           out=out)


@pytest.mark.parametrize("factor", ["nan", "inf", "-inf"])
def test_edit_scale_factor_must_be_finite(tiny_pair, tmp_path, capsys, factor):
    out = tmp_path / "out"
    _fails(["edit", "scale", *tiny_pair, "--factor", factor, "-o", out, "--quiet"], capsys, "factor",
           "finite number", out=out)


def test_edit_refuses_to_write_an_overflowing_result(tiny_pair, tmp_path, capsys):
    """Finite inputs and a finite factor can still overflow float32: said so, naming the factor.
    Before: 1e39 was 'NaN or Inf' in the result, 1e38 'internal: a non-finite number in rankedit_edit.json'."""
    out = tmp_path / "out"
    for factor in ("1e39", "1e38"):
        _fails(["edit", "scale", *tiny_pair, "--factor", factor, "-o", out, "--quiet"], capsys,
               f"--factor {float(factor):g} overflows float32", "nothing was written", out=out)


def test_edit_refuses_truncated_input(tiny_pair, bad, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(["edit", "rank-k", tiny_pair[0], bad["truncated"], "-o", out, "--quiet"], capsys,
           "corrupt or truncated", out=out)


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edit.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("body,needles", [
    ("method: rank-k\nbase: {base}\ntuned: {tuned}\nparams: [1]\n", ["'params' must be a mapping"]),
    ("method: rank-k\nbase: {base}\ntuned: {tuned}\nparams: {{k: true}}\n", ["k (--k): Input should be a valid integer"]),
    ("method: rank-k\nbase: {base}\ntuned: {tuned}\nparams: {{k: 0}}\n", ["k (--k): Input should be greater than or equal to 1"]),
    ("method: scale\nbase: {base}\ntuned: {tuned}\nparams: {{factor: .nan}}\n", ["factor", "finite number"]),
    ("merge_method: rankedit_rank_k\nbase_model: {base}\nmodels:\n  - model: {tuned}\nparameters: {{k: 0}}\n",
     ["parameters", "k (--k): Input should be greater than or equal to 1"]),
    ("merge_method: rankedit_rank_k\nbase_model: {base}\nmodels:\n  - model: {tuned}\nparameters: {{k: true}}\n",
     ["k (--k): Input should be a valid integer"]),
    ("merge_method: rankedit_scale\nbase_model: {base}\nmodels:\n  - model: {tuned}\nparameters: {{factor: .inf}}\n",
     ["factor", "finite number"]),
    ("merge_method: no_such_method\nbase_model: {base}\nmodels:\n  - model: {tuned}\n",
     ["unknown merge_method 'no_such_method'", "rankedit_rank_k"]),
    ("merge_method: rankedit_extrapolate\nbase_model: {base}\nmodels:\n  - model: {tuned}\n    parameters: {{step: true}}\n"
     "  - model: {base}\n    parameters: {{step: 2}}\nparameters: {{target_step: 3}}\n", ["step must be an integer"]),
])
def test_edit_config_refuses_bad_values(tiny_pair, tmp_path, capsys, body, needles):
    cfg = _yaml(tmp_path, body.format(base=tiny_pair[0], tuned=tiny_pair[1]))
    out = tmp_path / "out"
    _fails(["edit", "--config", cfg, "-o", out, "--quiet"], capsys, *needles, out=out)


def test_mergekit_yaml_refuses_non_finite_input(tiny_pair, bad, tmp_path, capsys):
    cfg = _yaml(tmp_path, f"merge_method: rankedit_rank_k\nbase_model: {tiny_pair[0]}\n"
                          f"models:\n  - model: {bad['inf']}\nparameters: {{k: 1}}\n")
    out = tmp_path / "out"
    _fails(["edit", "--config", cfg, "-o", out, "--quiet"], capsys, "NaN or Inf", MATRIX, out=out)


# ---- score -----------------------------------------------------------------------------------
def _score(models, out):
    return ["score", *models, "--suite", "organism", "--limit", "2", "--device", "cpu", "-o", out]


@pytest.mark.parametrize("case,needles", [
    ("nan", ["NaN or Inf", MATRIX]),
    ("inf", ["NaN or Inf", MATRIX]),
    ("dropped", ["incomplete checkpoint", "model.layers.1.mlp.up_proj.weight"]),
    ("renamed", ["incomplete checkpoint", "model.layers.1.mlp.up_proj.weight", "renamed?"]),
    ("truncated", ["corrupt or truncated"]),
])
def test_score_refuses_broken_weights(bad, tmp_path, capsys, case, needles):
    """Before: NaN and incomplete models were scored with exit 0 (transformers re-initialised the missing tensor)."""
    out = tmp_path / "scores"
    _fails(_score([bad[case]], out), capsys, *needles, out=out)


def test_score_refuses_a_checkpoint_without_tokenizer(tiny_family_pairs, tmp_path, capsys):
    """Before: a GPT-2 directory without tokenizer files ended in lm-eval's IndexError."""
    gpt2 = tiny_family_pairs["gpt2"][0]
    out = tmp_path / "scores"
    _fails(_score([gpt2], out), capsys, "no tokenizer", str(gpt2), out=out)


@pytest.mark.parametrize("models", [["m={a}", "m={b}"], ["{a}", "{a}"]])
def test_score_refuses_duplicate_labels(bad, tmp_path, capsys, models):
    """Before: the second row was silently renamed m-2."""
    models = [m.format(a=bad["sound"], b=bad["nan"]) for m in models]
    out = tmp_path / "scores"
    _fails(_score(models, out), capsys, "duplicate label", "LABEL=PATH", out=out)


def test_same_folder_names_get_parent_qualified_labels(tmp_path):
    from rankedit.scoring.score import model_labels

    assert model_labels([str(tmp_path / "a" / "m"), str(tmp_path / "b" / "m"), "x=" + str(tmp_path / "c")]) == {
        "a/m": str(tmp_path / "a" / "m"), "b/m": str(tmp_path / "b" / "m"), "x": str(tmp_path / "c")}


# ---- run -------------------------------------------------------------------------------------
def _plan(tmp_path: Path, base, tuned, edit: str) -> Path:
    p = tmp_path / "plan.yaml"
    p.write_text(f"base: {base}\ntuned: {tuned}\nedits:\n  - {edit}\nanalyze: {{enabled: false}}\n"
                 "score: {suite: organism, limit: 2}\n")
    return p


@pytest.mark.parametrize("case", ["inf", "nan"])
def test_run_with_non_finite_tuned_builds_nothing(tiny_pair, bad, tmp_path, capsys, case):
    """Before: the run left OUT/edits/rank1 complete-looking and full of NaN."""
    plan = _plan(tmp_path, tiny_pair[0], bad[case], "{name: rank1, method: rank-k, params: {k: 1}}")
    out = tmp_path / "run"
    _fails(["run", plan, "-o", out, "--quiet"], capsys, "NaN or Inf", MATRIX)
    assert not (out / "edits").exists() and not (out / "report.json").exists()


@pytest.mark.parametrize("case,needles", [("sound", ["no tokenizer", "base"]),
                                          ("dropped", ["missing in tuned", "model.layers.1.mlp.up_proj.weight"]),
                                          ("truncated", ["corrupt or truncated"])])
def test_run_with_unusable_models_builds_nothing(tiny_pair, bad, tmp_path, capsys, case, needles):
    """A base without tokenizer could only fail at the scoring stage, after every edit was built."""
    plan = _plan(tmp_path, tiny_pair[0], bad[case], "{name: rank1, method: rank-k, params: {k: 1}}")
    out = tmp_path / "run"
    _fails(["run", plan, "-o", out, "--quiet"], capsys, *needles)
    assert not (out / "edits").exists() and not (out / "report.json").exists()


@pytest.mark.parametrize("edit,needles", [
    ("{name: s, method: scale, params: {factor: .nan}}", ["edits.0 (s)", "params.factor", "finite number"]),
    ("{name: r, method: rank-k, params: {k: true}}", ["edits.0 (r)", "params.k", "valid integer"]),
    ("{name: r, method: rank-k, params: {k: 0}}", ["edits.0 (r)", "params.k", "greater than or equal to 1"]),
    ("{name: r, method: no-such-edit}", ["edits.0 (r)", "unknown edit method 'no-such-edit'"]),
])
def test_run_plan_values_fail_before_any_work(tiny_pair, tmp_path, capsys, edit, needles):
    """Before: `factor: .nan` failed with a traceback after all the work, and `k: true` ran as k = 1."""
    plan = _plan(tmp_path, *tiny_pair, edit)
    out = tmp_path / "run"
    _fails(["run", plan, "-o", out, "--quiet"], capsys, *needles, out=out)


# ---- push ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edit_dir(tiny_pair, tmp_path_factory):
    from rankedit.edits.build import build_edit

    return build_edit("rank-k", *tiny_pair, tmp_path_factory.mktemp("push") / "rank1", k=1)


@pytest.fixture
def server(monkeypatch, tmp_path):
    with serving(monkeypatch, tmp_path, users={TOKEN: "alice"}) as srv:
        yield srv


def _broken_edit(edit_dir: Path, tmp_path: Path, case: str) -> Path:
    d = tmp_path / "rank1"
    if case == "truncated":
        return _truncated(edit_dir, d)
    return _edited_copy(edit_dir, d, {"nan": _set(math.nan), "inf": _set(math.inf), "dropped": _drop}[case])


@pytest.mark.parametrize("case,needles", [("truncated", ["corrupt or truncated", "model.safetensors"]),
                                          ("nan", ["NaN or Inf", MATRIX]), ("inf", ["NaN or Inf", MATRIX]),
                                          ("dropped", ["incomplete checkpoint", "up_proj"])])
def test_push_refuses_broken_weights_before_any_request(server, edit_dir, tmp_path, capsys, case, needles):
    """Before: a truncated safetensors file was uploaded with exit 0."""
    d = _broken_edit(edit_dir, tmp_path, case)
    _fails(["push", d, "--repo-id", "alice/broken"], capsys, *needles)
    assert server.requests == [] and "alice/broken" not in server.repos


def test_push_of_the_sound_edit_still_uploads(server, edit_dir, tmp_path, capsys):
    d = Path(shutil.copytree(edit_dir, tmp_path / "rank1"))
    code, out, err = run_cli(["push", d, "--repo-id", "alice/sound"], capsys)
    assert code == 0, err
    assert "model.safetensors" in server.files("alice/sound")


@pytest.mark.parametrize("device, needle, cuda", [
    ("cuda", "asks for a CUDA GPU, but none is available", False),  # any machine, told it has no CUDA (as CI's has none)
    ("cuda:99", "CUDA", None),  # this machine as it is: no CUDA at all, or fewer than 100 devices
    ("bogus", "must be cpu, cuda or cuda:N", None),
])
def test_edit_refuses_a_device_it_cannot_use_before_any_work(tiny_pair, tmp_path, capsys, monkeypatch, device,
                                                              needle, cuda):
    import torch

    if cuda is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    base, tuned = tiny_pair
    out = tmp_path / "out"
    _fails(["edit", "rank-k", base, tuned, "--k", "1", "--device", device, "-o", out], capsys, needle, out=out)
