"""`rankedit apply PATCH BASE -o OUT`: rebuild, bit for bit, the checkpoint an exact patch stores.

Before any work: every manifest on the way is read and its format version checked, each link of
a chain is there and continues the one before it (its base tensors' sha256 are the previous
checkpoint's), every payload and copied file has its recorded sha256, and BASE is the recorded
base (its weight files' sha256, or, where those differ, e.g. BASE was resharded, the sha256 of
every tensor). Then TUNED's weight files are written in its own shard layout, one file in memory
at a time, each tensor's sha256 compared with the manifest's, TUNED's other files copied, and
the folder checked whole and finite (``rankedit.files.validate.check_output``) before it is
renamed into place. The patch folder itself: ``rankedit.files.patch``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from rankedit.core.errors import RankeditError
from rankedit.files import patch_format as pf
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import Checkpoint, file_sha256, first_line
from rankedit.files.outdir import check_out
from rankedit.files.patch import FILES, FORMAT, MANIFEST, VERSION
from safetensors import safe_open
from tqdm.auto import tqdm
from rankedit.files.hashes import checkpoint_sha256
from rankedit.files.validate import check_output

OUT_KIND = "edit"  # a rebuilt checkpoint, as `rankedit apply` writes for artifacts


def read_manifest(folder: Path, kinds: tuple[str, ...] = ("patch", "chain")) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise RankeditError(f"{folder}: no such patch folder")
    if not path.is_file():
        raise RankeditError(f"{folder}: no {MANIFEST}, so not a patch rankedit wrote (or it is incomplete)")
    try:
        man = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RankeditError(f"{path}: damaged, not valid JSON ({first_line(e)})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise RankeditError(f"{path}: not a rankedit patch manifest")
    if man.get("version") != VERSION:
        raise RankeditError(f"{path}: patch format version {man.get('version')!r} is unknown to this rankedit "
                            f"(it reads version {VERSION})")
    ok = man.get("kind") in kinds and (isinstance(man.get("links"), list) and man["links"] if man.get("kind") == "chain"
                                       else isinstance((man.get("tuned") or {}).get("tensors"), dict))
    if not ok:
        raise RankeditError(f"{path}: damaged manifest (kind {man.get('kind')!r})")
    return man


def chain_path(patch: Path, man: dict, step: str | None) -> list[tuple[Path, dict]]:
    """The links to apply, in order, from the last one against the base to ``step`` (default: the last)."""
    if man["kind"] == "patch":
        if step is not None:
            raise RankeditError(f"{patch} holds one checkpoint, not a chain: --step does not apply")
        return [(patch, man)]
    links = man["links"]
    labels = [str(ln.get("label")) for ln in links]
    if step is None:
        k = len(links) - 1
    elif str(step) in labels:
        k = labels.index(str(step))
    elif str(step).isdigit() and 1 <= int(step) <= len(links):
        k = int(step) - 1
    else:
        raise RankeditError(f"{patch}: no step {step} in the chain (steps: {', '.join(labels)}, or 1..{len(links)})")
    target, path = labels[k], []
    while True:
        folder = patch / str(links[k].get("folder"))
        if not folder.is_dir():
            raise RankeditError(f"{patch}: the chain's link {labels[k]} ({links[k].get('folder')}) is missing, "
                                f"so step {target} cannot be rebuilt")
        link = read_manifest(folder, ("patch",))
        path.append((folder, link))
        if links[k].get("against") == "base":
            break
        if k == 0:
            raise RankeditError(f"{patch}: damaged manifest (its first link is not against the base)")
        k -= 1
    path.reverse()
    for (_, prev), (folder, link) in zip(path, path[1:]):  # each link continues the checkpoint before it
        want = {n: t.get("sha256") for n, t in link["base"]["tensors"].items()}
        if want != {n: t.get("sha256") for n, t in prev["tuned"]["tensors"].items()}:
            raise RankeditError(f"{folder}: this link does not continue the one before it (a link from another chain?)")
    return path


def check_files(folder: Path, man: dict) -> None:
    """Every payload and copied file of one link is there with its recorded sha256."""
    for p in man.get("payloads") or []:
        f = folder / str(p.get("file"))
        if not f.is_file():
            raise RankeditError(f"{folder}: {f.name} is missing")
        if file_sha256(f) != p.get("sha256"):
            raise RankeditError(f"{f}: damaged, its sha256 is not the one {MANIFEST} records")
    for name, sha in (man.get("files") or {}).items():
        f = folder / FILES / name
        if not f.is_file() or file_sha256(f) != sha:
            raise RankeditError(f"{f}: missing or damaged, its sha256 is not the one {MANIFEST} records")


def check_base(man: dict, base: Checkpoint, patch: Path) -> None:
    """Refuse a base other than the recorded one: its weight files' sha256, else every tensor's."""
    rec = man["base"]
    want = rec.get("tensors") or {}
    if set(want) != set(base.names):
        diff = sorted(set(want) ^ set(base.names))
        raise RankeditError(f"{patch} was made for another base: {base.path} {'lacks' if diff[0] in want else 'has'} "
                            f"tensor {diff[0]}")
    if checkpoint_sha256(base) == rec.get("files"):
        return
    for name, t in want.items():
        w = base.get(name)
        if pf.tensor_sha256(w) != t.get("sha256"):
            raise RankeditError(f"{patch} was made for another base: {name} of {base.path} is not the recorded one "
                                "(sha256 differs)")


def apply_patch(patch, base, out, *, step: str | int | None = None, progress: bool = True,
                overwrite: bool = False) -> Path:
    """Rebuild, bit for bit, the checkpoint ``patch`` stores (for a chain: checkpoint ``step``, its
    label or 1-based position, default the last) on top of ``base``, as a new folder ``out``."""
    from safetensors.torch import save_file

    patch = Path(patch)
    man = read_manifest(patch)
    base_ck = Checkpoint(base)
    inputs = [patch, base_ck.path]
    check_out(out, OUT_KIND, inputs, overwrite)  # before the work, not after it
    links = chain_path(patch, man, None if step is None else str(step))
    for folder, link in links:
        check_files(folder, link)
    check_base(links[0][1], base_ck, patch)
    handles: dict[Path, object] = {}

    def part(folder: Path, name: str, t: dict, key: str) -> torch.Tensor:
        f = folder / str(t.get("payload"))
        if f not in handles:
            handles[f] = safe_open(str(f), framework="pt", device="cpu")
        return handles[f].get_tensor(f"{name}.{key}")

    def value(i: int, name: str) -> torch.Tensor:
        folder, link = links[i]
        t = link["tuned"]["tensors"][name]
        enc = t["encoding"]
        keys = {"full": ("full",), "xor-zstd": ("xor",), "bitmap": ("mask", "values"), "index": ("index", "values")}
        parts = {k: part(folder, name, t, k) for k in keys.get(enc, ())}
        w0 = None
        if enc != "full":
            w0 = base_ck.get(name) if i == 0 else value(i - 1, name)
        return pf.decode(w0, enc, parts, t["shape"], getattr(torch, t["dtype"]))

    last_folder, last = links[-1]
    tensors = last["tuned"]["tensors"]
    with atomic_dir(out, kind=OUT_KIND, inputs=inputs, overwrite=overwrite) as tmp:
        bar = tqdm(total=len(tensors), desc="apply patch", disable=not progress)
        for fname, f in last["tuned"]["weight_files"].items():
            held = {}
            for name in f["tensors"]:
                try:
                    w = value(len(links) - 1, name)
                except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
                    raise RankeditError(f"{patch}: damaged, cannot rebuild {name} ({first_line(e)})") from None
                if pf.tensor_sha256(w) != tensors[name]["sha256"]:
                    raise RankeditError(f"{patch}: {name} rebuilt with another sha256 than recorded (damaged patch)")
                held[name] = w.contiguous()
                bar.update()
            save_file(held, str(tmp / Path(fname).name), metadata=f.get("metadata") or None)
            del held
        bar.close()
        for name in last.get("files") or {}:
            shutil.copyfile(last_folder / FILES / name, tmp / Path(name).name)
        check_output(tmp, out)  # never rename a non-finite or incomplete model into place
    return Path(out)
