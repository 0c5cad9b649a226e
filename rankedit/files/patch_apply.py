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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

import torch

from rankedit.core.errors import RankeditError
from rankedit.files import patch_format as pf
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import Checkpoint, file_sha256, first_line
from rankedit.files.outdir import check_out
from rankedit.files.patch import FILES, FORMAT, MANIFEST, VERSION, encode_workers
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


_KEYS = {"full": ("full",), "xor-zstd": ("xor",), "bitmap": ("mask", "values"), "index": ("index", "values")}


class Rebuilder:
    """Rebuilds TUNED's tensors, one by name, from a link path (``chain_path``) and the base's tensors
    (``base_get(name)``, which the caller has identified as the recorded base).

    ``tensor(name)`` checks the rebuilt tensor's sha256 against the manifest's, except for a tensor
    unchanged (``same``) in every link: that is the base's own tensor, whose identity the caller
    has checked already (``check_base``), so it is not hashed again. Thread-safe for distinct names."""

    def __init__(self, patch: Path, links: list[tuple[Path, dict]], base_get):
        self.patch, self.links, self.base_get = patch, links, base_get
        self.tensors = links[-1][1]["tuned"]["tensors"]
        self._handles: dict[Path, object] = {}

    def _part(self, folder: Path, name: str, t: dict, key: str) -> torch.Tensor:
        f = folder / str(t.get("payload"))
        h = self._handles.get(f)
        if h is None:  # two threads may open one file twice: harmless
            h = self._handles[f] = safe_open(str(f), framework="pt", device="cpu")
        return h.get_tensor(f"{name}.{key}")

    def _value(self, i: int, name: str) -> tuple[torch.Tensor, bool]:
        """Link ``i``'s tensor, and whether it is the base's own (unchanged in links 0..i)."""
        folder, link = self.links[i]
        t = link["tuned"]["tensors"][name]
        enc = t["encoding"]
        if enc == pf.SAME:  # the tensor of the checkpoint before, bit for bit
            return (self.base_get(name), True) if i == 0 else self._value(i - 1, name)
        parts = {k: self._part(folder, name, t, k) for k in _KEYS.get(enc, ())}
        w0 = None
        if enc != "full":
            w0 = self.base_get(name) if i == 0 else self._value(i - 1, name)[0]
        return pf.decode(w0, enc, parts, t["shape"], getattr(torch, t["dtype"])), False

    def tensor(self, name: str) -> torch.Tensor:
        try:
            w, own = self._value(len(self.links) - 1, name)
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
            raise RankeditError(f"{self.patch}: damaged, cannot rebuild {name} ({first_line(e)})") from None
        if not own and pf.tensor_sha256(w) != self.tensors[name]["sha256"]:
            raise RankeditError(f"{self.patch}: {name} rebuilt with another sha256 than recorded (damaged patch)")
        return w.contiguous()


def _in_order(pool, fn, items, window: int):
    """``fn`` over ``items`` in ``pool``, results in order, at most ``window`` + 1 in flight."""
    items, pending = iter(items), deque()
    while True:
        for it in items:
            pending.append(pool.submit(fn, it))
            if len(pending) > window:
                break
        if not pending:
            return
        yield pending.popleft().result()


def apply_patch(patch, base, out, *, step: str | int | None = None, progress: bool = True,
                overwrite: bool = False) -> Path:
    """Rebuild, bit for bit, the checkpoint ``patch`` stores (for a chain: checkpoint ``step``, its
    label or 1-based position, default the last) on top of ``base``, as a new folder ``out``.
    Tensors are rebuilt ``encode_workers()`` at a time; one weight file of TUNED is held at a time."""
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
    rb = Rebuilder(patch, links, base_ck.get)
    last_folder, last = links[-1]
    workers = encode_workers()
    with atomic_dir(out, kind=OUT_KIND, inputs=inputs, overwrite=overwrite) as tmp, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        bar = tqdm(total=len(rb.tensors), desc="apply patch", disable=not progress)
        for fname, f in last["tuned"]["weight_files"].items():
            held = {}
            for name, w in zip(f["tensors"], _in_order(pool, rb.tensor, f["tensors"], workers)):
                held[name] = w
                bar.update()
            save_file(held, str(tmp / Path(fname).name), metadata=f.get("metadata") or None)
            del held
        bar.close()
        for name in last.get("files") or {}:
            shutil.copyfile(last_folder / FILES / name, tmp / Path(name).name)
        check_output(tmp, out)  # never rename a non-finite or incomplete model into place
    return Path(out)


def decode_patch(patch, base_tensors: Mapping[str, torch.Tensor], *, step: str | int | None = None) -> dict:
    """TUNED's tensors, rebuilt in memory from ``patch`` and BASE's tensors already in memory (as an
    inference engine holds its weights when a training step's patch arrives).

    The caller vouches that ``base_tensors`` are the recorded base (hashing them again would cost
    more than the patch); the patch's files are checked (sha256), ``base_tensors`` must name the
    recorded base's tensors, and every tensor the patch changes is checked against its recorded
    sha256 after rebuilding. An unchanged tensor is returned as the caller's own object."""
    patch = Path(patch)
    links = chain_path(patch, read_manifest(patch), None if step is None else str(step))
    for folder, link in links:
        check_files(folder, link)
    want = set(links[0][1]["base"].get("tensors") or {})
    if want != set(base_tensors):
        diff = sorted(want ^ set(base_tensors))
        raise RankeditError(f"{patch} was made for another base: the tensors given "
                            f"{'lack' if diff[0] in want else 'have'} {diff[0]}")
    rb = Rebuilder(patch, links, base_tensors.__getitem__)
    names = list(rb.tensors)
    workers = encode_workers()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(names, _in_order(pool, rb.tensor, names, workers)))
