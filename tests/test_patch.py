"""Exact patches: encodings counted by hand, bit-exact round trips (every dtype, tied embeddings,
shards, a chain of 5), and damaged inputs refused in one line with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rankedit.cli.main import main
from rankedit.core.errors import RankeditError
from rankedit.files import patch_format as pf
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.patch import write_chain, write_patch
from rankedit.files.patch_apply import apply_patch
from rankedit.files.shards import write_shards


# ---- pure functions, counted by hand ----------------------------------------------------------

def test_sizes_by_hand():
    # 100 bf16 entries, 3 changed: bitmap 13 + 6, index 3*4 + 6, full 200
    assert pf.encoding_sizes(100, 3, 2, 40) == {"bitmap": 19, "index": 18, "xor-zstd": 40, "full": 200}
    assert pf.smallest(pf.encoding_sizes(100, 3, 2, 40)) == "index"
    # 64 fp32 entries, 10 changed: bitmap 8 + 40 = 48 beats index 40 + 40 = 80
    assert pf.smallest(pf.encoding_sizes(64, 10, 4, 1000)) == "bitmap"
    # 64 bf16 entries, 2 changed: bitmap 8 + 4 = 12, index 2*4 + 4 = 12: a tie goes to the bitmap
    assert pf.encoding_sizes(64, 2, 2, 99)["bitmap"] == pf.encoding_sizes(64, 2, 2, 99)["index"] == 12
    assert pf.smallest(pf.encoding_sizes(64, 2, 2, 99)) == "bitmap"
    # every entry of 8 fp16 changed, XOR incompressible: full (16) beats bitmap (1 + 16)
    assert pf.smallest(pf.encoding_sizes(8, 8, 2, 30)) == "full"
    assert pf.encoding_sizes(2**31, 1, 2, 0)["index"] == 8 + 2  # past 2**31 entries an index is int64


def _roundtrip(w0, w1):
    enc, parts, rec = pf.encode(w0, w1)
    back = pf.decode(w0, enc, parts, list(w1.shape), w1.dtype)
    assert pf.tensor_sha256(back) == pf.tensor_sha256(w1)
    return enc, parts, rec


def test_encoding_choice_on_small_tensors():
    w0 = torch.zeros(100, dtype=torch.bfloat16)
    w1 = w0.clone()
    w1[[3, 50, 99]] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.bfloat16)
    enc, parts, rec = _roundtrip(w0, w1)
    assert rec["changed"] == 3 and rec["sizes"]["bitmap"] == 19 and rec["sizes"]["index"] == 18
    assert rec["sizes"]["xor-zstd"] > 18  # zstd's frame alone is over 9 bytes here
    assert enc == "index" and parts["index"].tolist() == [3, 50, 99] and parts["index"].dtype == torch.int32
    # 40 of 64 fp32 entries changed: bitmap 8 + 160 beats index 320; the XOR of random bits does not compress
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, generator=g)
    b = a.clone()
    pos = torch.randperm(64, generator=g)[:40]
    b.view(-1)[pos] = torch.randn(40, generator=g)
    enc, parts, rec = _roundtrip(a, b)
    assert (rec["changed"], rec["sizes"]["bitmap"], rec["sizes"]["index"]) == (40, 168, 320)
    assert enc == "bitmap" and parts["mask"].numel() == 8 and parts["values"].numel() == 40
    # a run of identical small flips: the XOR is one repeated pattern, zstd wins
    c = torch.zeros(4096, dtype=torch.float16)
    d = c.clone()
    d[::2] = torch.tensor(2.0**-24, dtype=torch.float16)  # the smallest subnormal: XOR 0x0001
    enc, _, rec = _roundtrip(c, d)
    assert enc == "xor-zstd" and rec["sizes"]["xor-zstd"] < 100 < rec["sizes"]["bitmap"]
    # -0.0 is not 0.0: a bit-exact patch sees it
    z = torch.zeros(4)
    nz = z.clone()
    nz[1] = -0.0
    enc, _, rec = _roundtrip(z, nz)
    assert rec["changed"] == 1 and enc == "bitmap"  # 1 + 4 bytes beats index's 4 + 4
    assert pf.encode(z, z.clone())[0] == pf.SAME
    assert pf.encode(None, z)[0] == "full" and pf.encode(z.double(), z)[0] == "full"  # no base tensor, another dtype


def test_damaged_parts_are_a_value_error():
    w0 = torch.zeros(100, dtype=torch.bfloat16)
    w1 = w0.clone()
    w1[5] = 1
    enc, parts, _ = pf.encode(w0, w1)
    with pytest.raises(ValueError):
        pf.decode(w0, enc, {**parts, "index": torch.tensor([500], dtype=torch.int32)}, [100], torch.bfloat16)
    with pytest.raises(ValueError):
        pf.decode(w0[:50], enc, parts, [100], torch.bfloat16)


# ---- whole checkpoints --------------------------------------------------------------------------

def _step(prev: Path, out: Path, share: float, seed: int) -> Path:
    """A 'trained' copy of ``prev``: a share of every tensor's entries (matrices, norms, embeddings) moved."""
    ck = Checkpoint(prev)
    out.mkdir(parents=True)
    for f in prev.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copyfile(f, out / f.name)
    g = torch.Generator().manual_seed(seed)
    for fname in dict.fromkeys(ck.info(n).file for n in ck.names):
        held = {}
        for n in (n for n in ck.names if ck.info(n).file == fname):
            w = ck.get(n).clone()
            flat = w.view(-1)
            hit = torch.rand(flat.numel(), generator=g) < share
            flat[hit] = (flat[hit].float() + 1e-2 * torch.randn(int(hit.sum()), generator=g)).to(w.dtype)
            held[n] = w
        save_file(held, str(out / fname), metadata={"format": "pt"})
    return out


def _hashes(path) -> dict[str, str]:
    ck = Checkpoint(path)
    return {n: pf.tensor_sha256(ck.get(n)) for n in ck.names}


def _tied(src: Path, out: Path, dtype: torch.dtype) -> Path:
    """``src`` in ``dtype`` with tied embeddings, as transformers saves them: no lm_head in the file."""
    ck = Checkpoint(src)
    out.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True, "dtype": str(dtype)[6:]}))
    save_file({n: ck.get(n).to(dtype) for n in ck.names if n != "lm_head.weight"}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def models(tiny_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("patch")
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        base = _tied(tiny_pair[0], root / f"{name}-base", dtype)
        out[name] = (base, _step(base, root / f"{name}-tuned", 0.05, seed=2))
    return root, out


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_round_trip_is_bit_exact(models, dtype, tmp_path):
    _, pairs = models
    base, tuned = pairs[dtype]
    res = write_patch(base, tuned, tmp_path / "p", progress=False)
    b, t = _hashes(base), _hashes(tuned)
    assert res["changed_tensors"] == sum(b[n] != t[n] for n in t) > 0 and 0 < res["ratio"] < 0.6
    man = json.loads((tmp_path / "p" / "patch.json").read_text())
    assert "lm_head.weight" not in man["tuned"]["tensors"]  # tied: one tensor in the file, one in the patch
    assert set(man["base"]["tensors"]) == set(Checkpoint(base).names)
    out = apply_patch(tmp_path / "p", base, tmp_path / "rebuilt", progress=False)
    assert _hashes(out) == _hashes(tuned)
    assert (out / "config.json").read_bytes() == (tuned / "config.json").read_bytes()
    assert sorted(p.name for p in out.iterdir() if p.name != ".rankedit-output.json") == sorted(
        p.name for p in tuned.iterdir())


def test_unchanged_checkpoint_is_names_only(models, tmp_path):
    _, pairs = models
    base, _ = pairs["bf16"]
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    res = write_patch(base, copy, tmp_path / "p", progress=False)
    assert res["patch_bytes"] == 0 and res["encodings"] == {"same": res["tensors"]}
    assert not list((tmp_path / "p").glob("payload-*"))
    assert _hashes(apply_patch(tmp_path / "p", base, tmp_path / "o", progress=False)) == _hashes(base)


def test_sharded_inputs_keep_their_layout(models, tmp_path):
    _, pairs = models
    base, tuned = pairs["bf16"]
    ck = Checkpoint(tuned)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copyfile(tuned / "config.json", sharded / "config.json")
    sizes = [(n, ck.info(n).numel * 2) for n in ck.names]
    write_shards(sharded, sizes, ck.get, 20_000)
    assert len(list(sharded.glob("*.safetensors"))) > 3
    write_patch(base, sharded, tmp_path / "p", progress=False, payload_bytes=4_000)
    assert len(list((tmp_path / "p").glob("payload-*.safetensors"))) > 1
    out = apply_patch(tmp_path / "p", base, tmp_path / "o", progress=False)
    assert _hashes(out) == _hashes(tuned)
    assert {f.name for f in out.glob("*.safetensors")} == {f.name for f in sharded.glob("*.safetensors")}
    assert (out / "model.safetensors.index.json").read_bytes() == (sharded / "model.safetensors.index.json").read_bytes()
    # the same base resharded: its files' sha256 differ, every tensor's is the recorded one
    b = Checkpoint(base)
    resharded = tmp_path / "base-resharded"
    resharded.mkdir()
    shutil.copyfile(base / "config.json", resharded / "config.json")
    write_shards(resharded, [(n, b.info(n).numel * 2) for n in b.names], b.get, 30_000)
    assert _hashes(apply_patch(tmp_path / "p", resharded, tmp_path / "o2", progress=False)) == _hashes(tuned)


@pytest.fixture(scope="module")
def chain(models):
    root, pairs = models
    base, _ = pairs["bf16"]
    cks, prev = [], base
    for k in range(1, 6):
        prev = _step(prev, root / "run" / f"step-{10 * k}", 0.02, seed=10 + k)
        cks.append(prev)
    res = write_chain(base, cks, root / "run.patch", progress=False)
    return base, cks, root / "run.patch", res


def test_chain_of_five_rebuilds_every_step(chain, tmp_path):
    base, cks, patch, res = chain
    assert [ln["label"] for ln in res["links"]] == [f"step-{10 * k}" for k in range(1, 6)]
    # each step moves 2% of the entries, so the step from the previous one beats the patch from the base
    assert [ln["against"] for ln in res["links"]] == ["base"] + ["previous"] * 4
    for k, ck in enumerate(cks, 1):
        out = apply_patch(patch, base, tmp_path / f"o{k}", step=f"step-{10 * k}" if k % 2 else k, progress=False)
        assert _hashes(out) == _hashes(ck)


def test_cli_round_trip(chain, tmp_path, capsys):
    base, cks, _, _ = chain
    main(["patch", str(base), str(cks[0]), "-o", str(tmp_path / "p")])
    assert "written to" in capsys.readouterr().out
    main(["apply", str(tmp_path / "p"), str(base), "-o", str(tmp_path / "o"), "--quiet"])
    assert _hashes(tmp_path / "o") == _hashes(cks[0])
    main(["patch", str(base), "--chain", str(cks[0]), str(cks[1]), "-o", str(tmp_path / "c")])
    assert "step-20:" in capsys.readouterr().out
    main(["apply", str(tmp_path / "c"), str(base), "--step", "step-10", "-o", str(tmp_path / "o2"), "--quiet"])
    assert _hashes(tmp_path / "o2") == _hashes(cks[0])
    main(["patch", str(base), "--run-dir", str(cks[0].parent), "-o", str(tmp_path / "r"), "--quiet"])
    # quiet: each command's output path alone, the apply before it and this patch
    assert capsys.readouterr().out == f"{tmp_path / 'o2'}\n{tmp_path / 'r'}\n"
    main(["apply", str(tmp_path / "r"), str(base), "--step", "step-30", "-o", str(tmp_path / "o3"), "--quiet"])
    assert _hashes(tmp_path / "o3") == _hashes(cks[2])


def test_api_names():
    import rankedit

    assert rankedit.patch is write_patch and rankedit.patch_chain is write_chain and rankedit.apply_patch is apply_patch


# ---- refused in one line, nothing written -------------------------------------------------------

def _refused(capsys, argv, out: Path, *words):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert all(w in err for w in words), err
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_damaged_patches_are_refused(models, chain, tmp_path, capsys):
    _, pairs = models
    base, tuned = pairs["fp32"]
    good = tmp_path / "good"
    write_patch(base, tuned, good, progress=False)
    dest = tmp_path / "dest" / "out"
    dest.parent.mkdir()
    # a flipped byte in a payload
    bad = tmp_path / "corrupt"
    shutil.copytree(good, bad)
    pay = next(bad.glob("payload-*.safetensors"))
    data = bytearray(pay.read_bytes())
    data[-5] ^= 0xFF
    pay.write_bytes(bytes(data))
    _refused(capsys, ["apply", str(bad), str(base), "-o", str(dest)], dest, "damaged", "sha256")
    # a truncated payload
    pay.write_bytes(bytes(data[: len(data) // 2]))
    _refused(capsys, ["apply", str(bad), str(base), "-o", str(dest)], dest, "damaged")
    # a truncated manifest
    man = bad / "patch.json"
    shutil.copyfile(good / "patch.json", man)
    man.write_text(man.read_text()[:100])
    _refused(capsys, ["apply", str(bad), str(base), "-o", str(dest)], dest, "not valid JSON")
    # a wrong base: same names and shapes, other values
    other, _ = pairs["bf16"]
    _refused(capsys, ["apply", str(good), str(other), "-o", str(dest)], dest, "another base")
    wrong = _step(base, tmp_path / "wrong-base", 0.001, seed=99)
    _refused(capsys, ["apply", str(good), str(wrong), "-o", str(dest)], dest, "another base", "sha256")
    # a missing link in a chain
    base_c, _, patch, _ = chain
    holed = tmp_path / "holed"
    shutil.copytree(patch, holed)
    shutil.rmtree(holed / "links" / "00003")
    _refused(capsys, ["apply", str(holed), str(base_c), "--step", "step-50", "-o", str(dest)], dest,
             "link step-30", "missing", "step-50")
    _refused(capsys, ["apply", str(holed), str(base_c), "--step", "step-70", "-o", str(dest)], dest, "no step step-70")
    assert apply_patch(holed, base_c, tmp_path / "ok", step=2, progress=False).is_dir()  # before the hole: fine
    with pytest.raises(RankeditError, match="not a chain"):
        apply_patch(good, base, dest, step=1, progress=False)


def test_new_tensors_other_dtypes_and_sub_folders(models, tmp_path):
    _, pairs = models
    base, _ = pairs["bf16"]
    ck = Checkpoint(base)
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    shutil.copyfile(base / "config.json", tuned / "config.json")
    (tuned / "extras").mkdir()  # a sub-folder: named in the manifest, not copied
    held = {n: ck.get(n) for n in ck.names if n != "model.norm.weight"}  # a tensor of the base dropped
    first = ck.names[0]
    held[first] = held[first].float()  # another dtype: stored in full
    held["extra.bias"] = torch.arange(5, dtype=torch.int64)  # a tensor the base lacks
    save_file(held, str(tuned / "model.safetensors"), metadata={"format": "pt"})
    res = write_patch(base, tuned, tmp_path / "p", progress=False)
    man = json.loads((tmp_path / "p" / "patch.json").read_text())
    assert man["not_copied"] == ["extras"] and res["encodings"] == {"full": 2, "same": len(held) - 2}
    assert man["tuned"]["tensors"]["extra.bias"]["encoding"] == man["tuned"]["tensors"][first]["encoding"] == "full"
    out = apply_patch(tmp_path / "p", base, tmp_path / "o", progress=False)
    assert _hashes(out) == _hashes(tuned) and "model.norm.weight" not in Checkpoint(out).names


def test_decode_in_memory_and_patch_size(models, chain, tmp_path):
    from rankedit.files.patch import patch_size
    from rankedit.files.patch_apply import decode_patch

    base, cks, patch, _ = chain
    ck = Checkpoint(base)
    held = {n: ck.get(n) for n in ck.names}
    got = decode_patch(patch, held, step=3)  # through links 1-3, the base's tensors already in memory
    assert {n: pf.tensor_sha256(w) for n, w in got.items()} == _hashes(cks[2])
    with pytest.raises(RankeditError, match="another base"):  # the tensors given are not the base's
        decode_patch(patch, {n: w for n, w in held.items() if n != "lm_head.weight" and n != ck.names[0]})
    wrong = {n: w + 1 if w.is_floating_point() else w for n, w in held.items()}
    with pytest.raises(RankeditError, match="another sha256"):  # a changed tensor rebuilt on a wrong base
        decode_patch(patch, wrong, step=1)
    # the bytes `rankedit compress` reports for the exact patch are the payload write_patch writes
    _, pairs = models
    for k, (b, t) in enumerate(pairs.values()):
        size = patch_size(b, t)
        res = write_patch(b, t, tmp_path / f"p{k}", progress=False)
        assert (size["patch_bytes"], size["encodings"]) == (res["patch_bytes"], res["encodings"])
        assert size["patch_bytes"] > 0 and size["checkpoint_bytes"] == res["checkpoint_bytes"]
