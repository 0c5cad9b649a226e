"""An output folder only ever loses what rankedit wrote there; an input is read only as a regular file inside its folder.

Table-driven over every command that writes (analyze, edit, edit --config, score, kl, trajectory,
compress, run, apply, organism build) and every place a user could point -o at: the home folder,
the filesystem root, rankedit's cache and a folder holding it, a folder holding an input, a folder
of the user's own files, and a symbolic link to each, with and without --overwrite. Every case
must end in one `error:` line, and every file and folder that was there must still be there,
unchanged. HOME and RANKEDIT_CACHE point into the test's own folder: the real home folder and /
are never written (the root is only named as -o, and refused before anything is created).

Before: `edit sign BASE TUNED -o ~ --overwrite` exited 0 and the home folder's documents were gone.

The second table does the same for inputs: a FIFO (which hung forever), a character device, a
shard index entry that leads out of the checkpoint folder, a symbolic link loop, an int8 matrix,
a folder without config.json. Refusals come before any work, so the whole table is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from clirun import run_cli  # tests/ is on sys.path (no package)
from rankedit.testing import synthetic

MATRIX = "model.layers.0.mlp.down_proj.weight"
WRITERS = ("analyze", "edit", "edit-config", "score", "kl", "trajectory", "compress", "run", "apply", "organism")
PLACES = ("home", "root", "cache", "cache-parent", "input-parent", "user-folder")


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file (its sha256) and folder under ``folder``, links not followed: what must never change."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        for n in dirnames:
            snap[(d / n).relative_to(folder).as_posix() + "/"] = "dir"
        for n in filenames:
            p = d / n
            snap[p.relative_to(folder).as_posix()] = (
                "link:" + os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest())
    return snap


def _one_error_line(code: int, err: str) -> str:
    lines = [seg for line in err.splitlines() for seg in line.split("\r") if seg.strip() and "/s]" not in seg]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in err, (code, err)
    return errors[0]


@pytest.fixture(scope="module")
def inputs(tiny_pair, tmp_path_factory):
    """Inputs every writer accepts, in one folder (the 'input parent'): a pair with a tokenizer, a second
    checkpoint of the run, a prompts file, a plan, an edit recipe, and an artifact for apply."""
    from rankedit.edits.artifact import write_artifact
    from rankedit.organism.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("no_loss") / "inputs"
    base, tuned = (Path(shutil.copytree(p, root / name)) for p, name in zip(tiny_pair, ("base", "tuned")))
    for p in (base, tuned):
        build_tokenizer().save_pretrained(p)
    step2 = synthetic.perturb(base, root / "step2", scale=2e-2, seed=3)
    step3 = synthetic.perturb(base, root / "step3", scale=3e-2, seed=4)
    (root / "prompts.txt").write_text("1+1=\n")
    (root / "plan.yaml").write_text(f"base: {base}\ntuned: {tuned}\nanalyze: {{enabled: false}}\n"
                                    "score: {suite: organism, limit: 2}\nedits:\n"
                                    "  - {name: r1, method: rank-k, params: {k: 1}}\n")
    (root / "edit.yaml").write_text(f"method: rank-k\nbase: {base}\ntuned: {tuned}\nparams: {{k: 1}}\n")
    artifact = write_artifact(base, tuned, "rank-k", {"k": 1}, root / "artifact", progress=False)["path"]
    return {"root": root, "base": base, "tuned": tuned, "steps": [tuned, step2, step3], "artifact": Path(artifact)}


def _args(cmd: str, i: dict, out) -> list:
    base, tuned = i["base"], i["tuned"]
    return {
        "analyze": ["analyze", base, tuned, "-o", out, "--no-plots"],
        "edit": ["edit", "sign", base, tuned, "-o", out, "--quiet"],
        "edit-config": ["edit", "--config", i["root"] / "edit.yaml", "-o", out, "--quiet"],
        "score": ["score", tuned, "--suite", "organism", "--limit", "2", "--device", "cpu", "-o", out],
        "kl": ["kl", tuned, base, "--prompts", i["root"] / "prompts.txt", "--samples", "1", "--max-tokens", "2",
               "-o", out],
        "trajectory": ["trajectory", base, *i["steps"], "--steps", "1,2,3", "-o", out, "--no-plots", "--quiet"],
        "compress": ["compress", base, tuned, "--suite", "organism", "--limit", "2", "-o", out, "--quiet"],
        "run": ["run", i["root"] / "plan.yaml", "-o", out, "--quiet"],
        "apply": ["apply", i["artifact"], base, "-o", out, "--quiet"],
        "organism": ["organism", "build", "--size", "micro", "-o", out, "--quiet"],
    }[cmd]


def _place(place: str, tmp: Path, i: dict, monkeypatch) -> tuple[Path, Path, str]:
    """(-o, the folder whose every file must survive, what the refusal says)."""
    home = tmp / "home"
    (home / "Documents").mkdir(parents=True)
    (home / "Documents" / "thesis.tex").write_text("\\documentclass{article}\n")
    monkeypatch.setenv("HOME", str(home))
    if place == "home":
        return home, home, "home folder"
    if place == "root":
        return Path("/"), home, "filesystem root"
    cache_parent = tmp / "work"
    (cache_parent / "cache" / "scores").mkdir(parents=True)
    (cache_parent / "cache" / "scores" / "entry.json").write_text("{}\n")
    (cache_parent / "notes.md").write_text("mine\n")
    monkeypatch.setenv("RANKEDIT_CACHE", str(cache_parent / "cache"))
    if place == "cache":
        return cache_parent / "cache", cache_parent, "rankedit's cache"
    if place == "cache-parent":
        return cache_parent, cache_parent, "holding rankedit's cache"
    if place == "input-parent":
        return i["root"], i["root"], "contains the input"
    docs = tmp / "docs"
    (docs / "drafts").mkdir(parents=True)
    (docs / "letter.txt").write_text("dear\n")
    return docs, docs, "never deletes anything else"


@pytest.mark.parametrize("cmd", WRITERS)
def test_no_command_loses_a_file_wherever_out_points(inputs, cmd, tmp_path, capsys, monkeypatch):
    """Every place x (the place itself, a link to it) x (with, without --overwrite): refused, nothing lost."""
    for place in PLACES:
        for via_link in (False, True):
            for overwrite in (False, True):
                case = tmp_path / f"{place}-{int(via_link)}-{int(overwrite)}"
                case.mkdir()
                with monkeypatch.context() as mp:
                    out, guarded, needle = _place(place, case, inputs, mp)
                    if via_link:
                        (case / "link").symlink_to(out, target_is_directory=True)
                        out = case / "link"
                    before = _snapshot(guarded)
                    root_before = sorted(os.listdir("/"))
                    args = _args(cmd, inputs, out) + (["--overwrite"] if overwrite and cmd != "organism" else [])
                    code, _, err = run_cli(args, capsys)
                    line = _one_error_line(code, err)
                    why = (cmd, place, via_link, overwrite, line)
                    if place == "user-folder" and via_link and cmd != "organism":
                        needle = "is a symbolic link"
                    if cmd == "organism" and place in ("input-parent", "user-folder"):
                        needle = "not a rankedit organism"  # its own refusal of a folder it did not make
                    assert needle in line, why
                    after = _snapshot(guarded)  # rankedit's own cache may gain a record; nothing may go
                    assert {k: after.get(k) for k in before} == before, why
                    assert sorted(os.listdir("/")) == root_before, why


def test_overwrite_replaces_only_an_earlier_rankedit_output(inputs, tmp_path, capsys):
    """Another method's edit is replaced only with --overwrite (before: silently); a user's file never."""
    base, tuned = inputs["base"], inputs["tuned"]
    out = tmp_path / "e"
    code, _, err = run_cli(["edit", "rank-k", base, tuned, "--k", "1", "-o", out, "--quiet"], capsys)
    assert code == 0, err
    rank_k = _snapshot(out)
    code, _, err = run_cli(["edit", "sign", base, tuned, "-o", out, "--quiet"], capsys)
    line = _one_error_line(code, err)
    assert "holds a rankedit rank-k edit output (nothing else); pass --overwrite" in line and _snapshot(out) == rank_k
    code, _, err = run_cli(["edit", "sign", base, tuned, "-o", out, "--quiet", "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((out / "rankedit_edit.json").read_text())["method"] == "sign"
    (out / "sub").mkdir()
    for flags in ([], ["--overwrite"]):
        code, _, err = run_cli(["edit", "sign", base, tuned, "-o", out, "--quiet", *flags], capsys)
        line = _one_error_line(code, err)
        assert "sub/" in line and "never deletes anything else" in line and (out / "sub").is_dir()


# ---- inputs --------------------------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def _bad_inputs(tuned: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """kind -> (a broken copy of TUNED, what the refusal names)."""
    cases = {}
    fifo = _copy(tuned, root / "fifo")
    (fifo / "model.safetensors").unlink()
    os.mkfifo(fifo / "model.safetensors")
    cases["fifo"] = (fifo, "a FIFO (named pipe), not a regular file")
    dev = _copy(tuned, root / "device")
    (dev / "tokenizer.json").unlink()
    (dev / "tokenizer.json").symlink_to("/dev/zero")  # a character device every Linux has
    cases["device"] = (dev, "a character device, not a regular file")
    for name, entry in (("dotdot", "../tuned/model.safetensors"), ("absolute", str(tuned / "model.safetensors")),
                        ("link-out", "link.safetensors")):
        d = root / name
        d.mkdir()
        shutil.copy(tuned / "config.json", d)
        if name == "link-out":
            (d / "link.safetensors").symlink_to(tuned / "model.safetensors")
        names = list(load_file(tuned / "model.safetensors"))
        (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: entry for n in names}}))
        cases[name] = (d, "points outside the checkpoint folder")
    loop = root / "loop"
    loop.symlink_to(root / "loop")
    cases["link-loop"] = (loop, "symbolic link loop")
    inner = _copy(tuned, root / "inner-loop")
    (inner / "special_tokens_map.json").symlink_to(inner / "special_tokens_map.json")
    cases["inner-link-loop"] = (inner, "symbolic link loop")
    int8 = _copy(tuned, root / "int8")
    t = load_file(int8 / "model.safetensors")
    t[MATRIX] = (t[MATRIX] * 100).round().clamp(-127, 127).to(torch.int8)
    save_file(t, str(int8 / "model.safetensors"), metadata={"format": "pt"})
    cases["int8"] = (int8, f"e.g. {MATRIX} (int8); rankedit reads float weights only")
    return cases


@pytest.fixture(scope="module")
def bad_inputs(inputs, tmp_path_factory):
    return _bad_inputs(inputs["tuned"], tmp_path_factory.mktemp("bad_kinds"))


def _reading(cmd: str, i: dict, bad: Path, out: Path) -> list:
    base = i["base"]
    return {
        "analyze": ["analyze", base, bad, "-o", out, "--no-plots"],
        "edit": ["edit", "rank-k", base, bad, "--k", "1", "-o", out, "--quiet"],
        "score": ["score", bad, "--suite", "organism", "--limit", "2", "--device", "cpu", "-o", out],
        "kl": ["kl", bad, base, "--prompts", i["root"] / "prompts.txt", "--samples", "1", "-o", out],
        "trajectory": ["trajectory", base, bad, *i["steps"][1:], "--steps", "1,2,3", "-o", out, "--no-plots", "--quiet"],
    }[cmd]


class _Hung(Exception):
    pass


def _alarm(signum, frame):
    raise _Hung("no answer in 30 s (a FIFO read blocks forever)")


@pytest.mark.parametrize("cmd", ["analyze", "edit", "score", "kl", "trajectory"])
def test_every_bad_input_kind_is_one_line_before_any_read(inputs, bad_inputs, cmd, tmp_path, capsys):
    """Before: a FIFO hung edit and analyze forever; '..', absolute and linked-out index entries were read and
    recorded as the folder's own; a link loop was 'not found on the Hub'; int8 was analysed as floats."""
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for kind, (bad, needle) in bad_inputs.items():
            out = tmp_path / f"out-{kind}"
            signal.alarm(30)
            try:
                code, _, err = run_cli(_reading(cmd, inputs, bad, out), capsys)
            finally:
                signal.alarm(0)
            line = _one_error_line(code, err)
            assert needle in line, (cmd, kind, line)
            assert not out.exists() and not list(tmp_path.glob(f".out-{kind}.tmp-*")), (cmd, kind)
    finally:
        signal.signal(signal.SIGALRM, old)


def test_edit_without_config_is_one_line(inputs, tmp_path, capsys):
    """Before: transformers' 'ValueError: Unrecognized model' from mergekit, with a traceback."""
    noconf = _copy(inputs["tuned"], tmp_path / "noconf")
    (noconf / "config.json").unlink()
    for base, tuned in ((inputs["base"], noconf), (noconf, inputs["tuned"])):
        code, _, err = run_cli(["edit", "rank-k", base, tuned, "--k", "1", "-o", tmp_path / "o", "--quiet"], capsys)
        assert f"{noconf}: no config.json" in _one_error_line(code, err)
    (noconf / "config.json").write_text('{"hidden_size": 64}')
    code, _, err = run_cli(["edit", "rank-k", inputs["base"], noconf, "--k", "1", "-o", tmp_path / "o"], capsys)
    assert "no 'model_type'" in _one_error_line(code, err)
    (noconf / "config.json").write_bytes(b"\xff\xfe{")
    code, _, err = run_cli(["analyze", inputs["base"], noconf, "-o", tmp_path / "o", "--no-plots"], capsys)
    assert "config.json: invalid JSON" in _one_error_line(code, err)
    assert not (tmp_path / "o").exists()


def test_a_zero_update_is_named(inputs, tmp_path, capsys):
    """Before: `edit rank-k BASE COPY-OF-BASE` wrote the base back with 'energy kept n/a' and no word."""
    copy = _copy(inputs["base"], tmp_path / "copy-of-base")
    code, _, err = run_cli(["edit", "rank-k", inputs["base"], copy, "--k", "1", "-o", tmp_path / "e", "--quiet"],
                           capsys)
    line = _one_error_line(code, err)
    assert "the update is zero" in line and str(copy) in line and not (tmp_path / "e").exists()
    code, _, err = run_cli(["edit", "rank-k", inputs["base"], copy, "--k", "1", "--as-lora", "-o", tmp_path / "e",
                            "--quiet"], capsys)
    assert "the update is zero" in _one_error_line(code, err) and not (tmp_path / "e").exists()
    code, _, err = run_cli(["analyze", inputs["base"], copy, "-o", tmp_path / "a", "--no-plots"], capsys)
    assert code == 0 and f"warning: the update is zero: {copy} is identical to the base" in err


def test_a_non_utf8_out_path_is_named(inputs, tmp_path, capsys):
    """Before: a valid edit was refused as 'corrupt or truncated safetensors file'."""
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/out-\xff")
    code, _, err = run_cli(["edit", "sign", inputs["base"], inputs["tuned"], "-o", out, "--quiet"], capsys)
    line = _one_error_line(code, err)
    assert "the path is not valid UTF-8 (byte 0xff" in line and os.listdir(tmp_path) == []


def test_a_resumable_out_replaces_another_output_only_with_overwrite(tmp_path):
    """run's and compress's folders are kept and added to; another command's output there is cleared
    only with --overwrite, and only when every file in it is rankedit's."""
    from rankedit.core.errors import RankeditError
    from rankedit.files.atomic import atomic_dir
    from rankedit.files.outdir import claim_dir

    out = tmp_path / "out"
    with atomic_dir(out, kind="edit:sign") as tmp:
        (tmp / "model.safetensors").write_bytes(b"x")
    with pytest.raises(RankeditError, match="holds a rankedit sign edit output .*pass --overwrite"):
        claim_dir(out, "run")
    claim_dir(out, "run", overwrite=True)
    assert sorted(os.listdir(out)) == [".rankedit-output.json"]
    (out / "edits").mkdir()  # a run's own folder, empty after an interrupted edit: resumed
    claim_dir(out, "run")
    with atomic_dir(tmp_path / "other", kind="analyze") as tmp:
        (tmp / "summary.json").write_text("{}")
    (tmp_path / "other" / "mine").mkdir()
    for flag in (False, True):
        with pytest.raises(RankeditError, match="mine/"):
            claim_dir(tmp_path / "other", "run", overwrite=flag)
    assert (tmp_path / "other" / "mine").is_dir() and (tmp_path / "other" / "summary.json").is_file()
