"""`rankedit apply ARTIFACT BASE -o OUT`: the checkpoint it writes, and one line for each bad input
(another base, a damaged payload, no record, an unknown version) with nothing left behind."""

from __future__ import annotations

import json
import shutil

import pytest

import rankedit
from rankedit.files.checkpoint import Checkpoint
from clirun import run_cli  # tests/ is on sys.path (no package)


@pytest.fixture(scope="module")
def artifact(tiny_pair, tmp_path_factory):
    base, tuned = tiny_pair
    out = tmp_path_factory.mktemp("apply-cli") / "art"
    rankedit.write_artifact(base, tuned, "mask", {"source": "magnitude", "density": 0.1}, out, progress=False)
    return out


def test_apply_writes_the_edited_checkpoint(tiny_pair, artifact, tmp_path, capsys):
    code, out, err = run_cli(["apply", artifact, tiny_pair[0], "-o", tmp_path / "applied"], capsys)
    assert code == 0, err
    assert "written to" in out
    ck = Checkpoint(tmp_path / "applied")
    assert (tmp_path / "applied" / "config.json").is_file() and ck.names == Checkpoint(tiny_pair[0]).names
    assert rankedit.apply is not None and callable(rankedit.write_artifact)


def test_help_has_an_example(capsys):
    code, out, _ = run_cli(["apply", "--help"], capsys)
    assert code == 0 and "Examples:" in out and "rankedit apply" in out


def _damaged_copy(artifact, tmp_path, how):
    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    if how == "payload":
        raw = bytearray((bad / "delta.safetensors").read_bytes())
        raw[-3] ^= 0xFF  # one byte of the values
        (bad / "delta.safetensors").write_bytes(bytes(raw))
    elif how == "record":
        (bad / "delta.json").unlink()
    elif how == "version":
        rec = json.loads((bad / "delta.json").read_text())
        (bad / "delta.json").write_text(json.dumps(dict(rec, version=99)))
    elif how == "truncated":
        raw = (bad / "delta.safetensors").read_bytes()
        (bad / "delta.safetensors").write_bytes(raw[: len(raw) // 2])
    return bad


@pytest.mark.parametrize("how,says", [("payload", "damaged"), ("truncated", "damaged"), ("record", "no delta.json"),
                                      ("version", "version 99")])
def test_a_damaged_artifact_is_one_line_and_nothing_is_written(tiny_pair, artifact, tmp_path, capsys, how, says):
    bad = _damaged_copy(artifact, tmp_path, how)
    code, _, err = run_cli(["apply", bad, tiny_pair[0], "-o", tmp_path / "out"], capsys)
    assert code != 0
    assert err.startswith("error:") and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_another_base_is_refused(tiny_pair, tiny_family_pairs, artifact, tmp_path, capsys):
    for other in (tiny_pair[1], tiny_family_pairs["qwen2"][0]):  # same shapes, other weights; another model
        code, _, err = run_cli(["apply", artifact, other, "-o", tmp_path / "out"], capsys)
        assert code != 0 and err.startswith("error:") and "made for another base" in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_folder_rankedit_did_not_write_is_never_replaced(tiny_pair, artifact, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = run_cli(["apply", artifact, tiny_pair[0], "-o", mine], capsys)
    assert code != 0 and "notes.txt" in err
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1


def test_edit_artifact_then_apply_gives_the_edit_s_checkpoint_byte_for_byte(tiny_pair, tmp_path, capsys):
    """`rankedit edit METHOD --artifact` writes the compact artifact; applying it rebuilds the very
    tensors `rankedit edit METHOD` builds through mergekit."""
    base, tuned = tiny_pair
    code, out, err = run_cli(["edit", "sign", base, tuned, "--artifact", "-o", tmp_path / "art"], capsys)
    assert code == 0, err
    assert "rankedit-delta artifact" in out and "rankedit apply" in out
    assert {"delta.json", "delta.safetensors"} <= {p.name for p in (tmp_path / "art").iterdir()}
    code, _, err = run_cli(["apply", tmp_path / "art", base, "-o", tmp_path / "applied", "--quiet"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["edit", "sign", base, tuned, "-o", tmp_path / "built", "--quiet"], capsys)
    assert code == 0, err
    applied, built = Checkpoint(tmp_path / "applied"), Checkpoint(tmp_path / "built")
    assert applied.names == built.names
    assert all(applied.get(n).equal(built.get(n)) for n in built.names)


def test_apply_overwrite_replaces_another_rankedit_output_never_a_users_folder(tiny_pair, artifact, tmp_path, capsys):
    """--overwrite exists (it did not), and replaces only what rankedit wrote."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for flags in ([], ["--overwrite"]):
        code, _, err = run_cli(["apply", artifact, tiny_pair[0], "-o", out, "--quiet", *flags], capsys)
        assert code == 1 and "notes.txt" in err and (out / "notes.txt").read_text() == "mine"
    out = tmp_path / "built"
    code, _, err = run_cli(["edit", "sign", *tiny_pair, "-o", out, "--quiet"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["apply", artifact, tiny_pair[0], "-o", out, "--quiet"], capsys)
    assert code == 1 and "pass --overwrite" in err
    code, _, err = run_cli(["apply", artifact, tiny_pair[0], "-o", out, "--quiet", "--overwrite"], capsys)
    assert code == 0, err
    assert (out / "config.json").is_file()
