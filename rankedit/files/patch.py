"""`rankedit patch`: a checkpoint, or a run of them, stored as an exact (lossless) patch of its base.

A patch folder holds ``patch.json`` (the manifest), ``payload-NNNNN.safetensors`` (the encoded
tensors, ``rankedit.files.patch_format``; tensors only, never a pickle) and ``files/`` (TUNED's
other files: config.json, tokenizer, generation config, its shard index), so that the rebuilt
folder is a whole checkpoint. The manifest names every tensor of TUNED with its shape, dtype,
sha256, encoding and the bytes every encoding would have cost; an unchanged tensor is named only.
It records the sha256 of every tensor of BASE and of BASE's weight files, TUNED's shard layout
and each weight file's metadata, and each payload file's sha256.

A chain (``write_chain``) stores checkpoints CK1..CKn of one run: ``links/00001`` .. ``links/0000n``,
each a patch folder as above, link k against CK(k-1) or against BASE, whichever is smaller
(link 1 is against BASE). ``apply_patch(..., step=...)`` rebuilds any CKk by applying the links
from the last one against BASE up to k, one tensor at a time.

Encoding streams the tensors, ``encode_workers()`` threads side by side (each reading, comparing,
encoding and hashing one tensor of each input; at most one more waits its turn), and holds at
most one payload file (up to ``PAYLOAD_BYTES``) in memory; rebuilding holds one of TUNED's weight files. Application is
refused in one line, before anything is written, when the manifest or a payload is damaged
(sha256), a link is missing, or BASE is not the recorded base; every rebuilt tensor's sha256 is
compared with the manifest's before it is written.

Rebuilding (``apply_patch``) lives in ``rankedit.files.patch_apply``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from rankedit.core.errors import RankeditError
from rankedit.core.names import INVENTORY
from rankedit.files import patch_format as pf
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import Checkpoint, file_sha256
from safetensors import safe_open
from tqdm.auto import tqdm
from rankedit.files.hashes import checkpoint_sha256
from rankedit.files.validate import check_inputs

FORMAT = "rankedit-patch"
VERSION = 1
MANIFEST = "patch.json"
FILES = "files"  # TUNED's non-weight files, copied
LINKS = "links"
KIND = "patch"  # the output folder's kind (``rankedit.files.outdir``)
PAYLOAD_BYTES = 1 << 30  # a payload file is written once it holds this much (bounded memory)


def encode_workers() -> int:
    """Threads that encode (or rebuild) tensors side by side: the CPUs this process may use, at most 4
    (each holds one tensor of each input)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, n))


def is_patch(folder) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def write_patch(base, tuned, out, *, overwrite: bool = False, progress: bool = True,
                payload_bytes: int = PAYLOAD_BYTES) -> dict:
    """Write the exact patch of ``tuned`` against ``base`` to the new folder ``out``; return its summary
    (``path``, ``tensors``, ``changed_tensors``, ``encodings`` (count per encoding), ``patch_bytes``
    (payload data on disk), ``checkpoint_bytes`` (TUNED's weight files) and ``ratio``)."""
    base_ck, tuned_ck = Checkpoint(base), Checkpoint(tuned)
    inputs = [base_ck.path, tuned_ck.path]
    check_inputs([base_ck, tuned_ck])
    with atomic_dir(out, kind=KIND, inputs=inputs, overwrite=overwrite) as tmp:
        man = write_link(base_ck, tuned_ck, tmp, progress=progress, payload_bytes=payload_bytes)
        _dump(tmp / MANIFEST, man)
    return summary(man, Path(out))


def write_chain(base, checkpoints: Sequence, out, *, labels: Sequence[str] | None = None, overwrite: bool = False,
                progress: bool = True, payload_bytes: int = PAYLOAD_BYTES) -> dict:
    """Write checkpoints CK1..CKn of one run as a chain of exact patches from ``base`` (see the module's
    doc) to the new folder ``out``; return ``{"path", "links": [summary of each link, with "label" and
    "against"]}``. ``labels``: each checkpoint's name for ``apply --step`` (default ``chain_labels``)."""
    if not checkpoints:
        raise RankeditError("a chain needs at least one checkpoint besides the base")
    base_ck = Checkpoint(base)
    cks = [Checkpoint(c) for c in checkpoints]
    check_inputs([base_ck, *cks])
    labels = chain_labels([c.path for c in cks]) if labels is None else [str(x) for x in labels]
    if len(labels) != len(cks) or len(set(labels)) != len(labels):
        raise RankeditError(f"a chain needs one distinct name per checkpoint ({len(labels)} for {len(cks)})")
    links = []
    with atomic_dir(out, kind=KIND, inputs=[base_ck.path, *[c.path for c in cks]], overwrite=overwrite) as tmp:
        for k, ck in enumerate(cks):
            folder = tmp / LINKS / f"{k + 1:05d}"
            man = write_link(base_ck, ck, folder, progress=progress, payload_bytes=payload_bytes)
            against = "base"
            if k:  # the step from the previous checkpoint, when it is smaller than the patch from the base
                trial = tmp / LINKS / f"{k + 1:05d}.previous"
                step = write_link(cks[k - 1], ck, trial, progress=progress, payload_bytes=payload_bytes)
                if step["patch_bytes"] < man["patch_bytes"]:
                    shutil.rmtree(folder)
                    trial.rename(folder)
                    man, against = step, "previous"
                else:
                    shutil.rmtree(trial)
            man["against"] = against
            _dump(folder / MANIFEST, man)
            links.append({"label": labels[k], "against": against, "folder": f"{LINKS}/{k + 1:05d}",
                          "patch_bytes": man["patch_bytes"], "checkpoint_bytes": man["checkpoint_bytes"]})
        _dump(tmp / MANIFEST, {"format": FORMAT, "version": VERSION, "kind": "chain", "links": links,
                               "base": {"files": man_base_files(base_ck)}})
    return {"path": str(out), "links": links}


def chain_labels(paths: Sequence[Path]) -> list[str]:
    """Each checkpoint's name in a chain: its folder's name (step-40) where those are unique, else its position."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names) and not any(n.isdigit() for n in names):
        return names
    return [str(i) for i in range(1, len(paths) + 1)]


def man_base_files(ck: Checkpoint) -> dict[str, str]:
    return checkpoint_sha256(ck)


def write_link(base_ck: Checkpoint, tuned_ck: Checkpoint, folder: Path, *, progress: bool = True,
               payload_bytes: int = PAYLOAD_BYTES) -> dict:
    """Encode ``tuned_ck`` against ``base_ck`` into ``folder`` (payloads and files/); return the manifest
    (the caller writes it, once the folder is whole)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    base_tensors, tensors, held, counts = {}, {}, {}, {}
    payloads: list[dict] = []
    held_bytes, base_names = 0, set(base_ck.names)

    def flush():
        nonlocal held_bytes
        if held:
            fname = f"payload-{len(payloads) + 1:05d}.safetensors"
            save_file(held, str(folder / fname), metadata={"format": FORMAT})
            payloads.append({"file": fname, "sha256": file_sha256(folder / fname),
                             "bytes": sum(t.numel() * t.element_size() for t in held.values())})
            held.clear()
            held_bytes = 0

    def one(name: str):
        """Read, compare, encode and hash one tensor (numpy, hashlib and zstd free the GIL: tensors overlap)."""
        w1 = tuned_ck.get(name)
        w0 = base_ck.get(name) if name in base_names else None
        b_rec = None if w0 is None else _tensor_record(w0)  # read once: the base's record from the same tensor
        enc, parts, rec = pf.encode(w0, w1)
        t_rec = b_rec if enc == pf.SAME else _tensor_record(w1)  # the same bits: the same sha256, not hashed twice
        return b_rec, t_rec, enc, parts, rec

    workers = encode_workers()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        base_files = pool.submit(man_base_files, base_ck)  # the base's file hashes overlap the tensors' work
        window: deque = deque()  # at most ``workers`` + 1 tensors of each input in memory
        names = iter(tuned_ck.names)
        bar = tqdm(total=len(tuned_ck.names), desc=f"patch {tuned_ck.path.name}", disable=not progress)
        while True:
            for name in names:
                window.append((name, pool.submit(one, name)))
                if len(window) > workers:
                    break
            if not window:
                break
            name, fut = window.popleft()
            b_rec, t_rec, enc, parts, rec = fut.result()
            if b_rec is not None:
                base_tensors[name] = b_rec
            counts[enc] = counts.get(enc, 0) + 1
            tensors[name] = {**t_rec, "encoding": enc, **rec}
            if parts:
                if held_bytes >= payload_bytes:
                    flush()
                held.update({f"{name}.{k}": v.contiguous() for k, v in parts.items()})
                held_bytes += sum(v.numel() * v.element_size() for v in parts.values())
                tensors[name]["payload"] = f"payload-{len(payloads) + 1:05d}.safetensors"
            del parts, fut
            bar.update()
        bar.close()
        base_file_sha = base_files.result()
    flush()
    for name in base_ck.names:  # every tensor of the base, so its identity can be checked tensor by tensor
        if name not in base_tensors:
            base_tensors[name] = _tensor_record(base_ck.get(name))
    base_tensors = {n: base_tensors[n] for n in base_ck.names}
    files, skipped = _copy_files(tuned_ck.path, folder / FILES)
    checkpoint_bytes = sum(f.stat().st_size for f in tuned_ck.weight_files)
    patch_bytes = sum(p["bytes"] for p in payloads)
    return {"format": FORMAT, "version": VERSION, "kind": "patch",
            "base": {"files": base_file_sha, "tensors": base_tensors},
            "tuned": {"tensors": tensors, "weight_files": _layout(tuned_ck)},
            "payloads": payloads, "files": files, "not_copied": skipped, "encodings": counts,
            "patch_bytes": patch_bytes, "checkpoint_bytes": checkpoint_bytes}


def patch_size(base, tuned) -> dict:
    """What ``write_patch`` would store, without writing it: ``patch_bytes`` (the payload: each tensor
    in its smallest encoding), ``encodings`` (count per encoding) and ``checkpoint_bytes`` (TUNED's
    weight files). Nothing is hashed: the cost is reading both checkpoints and one zstd per changed tensor."""
    base_ck, tuned_ck = Checkpoint(base), Checkpoint(tuned)
    base_names = set(base_ck.names)

    def one(name: str) -> tuple[str, int]:
        w1 = tuned_ck.get(name)
        w0 = base_ck.get(name) if name in base_names else None
        if w0 is None or w0.shape != w1.shape or w0.dtype != w1.dtype:
            return "full", w1.numel() * w1.element_size()
        m = pf.measure(w0, w1)
        return m["encoding"], m["bytes"]

    counts, total = {}, 0
    with ThreadPoolExecutor(max_workers=encode_workers()) as pool:
        for enc, n in pool.map(one, tuned_ck.names):
            counts[enc] = counts.get(enc, 0) + 1
            total += n
    return {"patch_bytes": total, "encodings": counts,
            "checkpoint_bytes": sum(f.stat().st_size for f in tuned_ck.weight_files)}


def _tensor_record(w) -> dict:
    return {"shape": list(w.shape), "dtype": str(w.dtype).removeprefix("torch."), "sha256": pf.tensor_sha256(w)}


def _layout(ck: Checkpoint) -> dict[str, dict]:
    """TUNED's weight files: the tensors in each, in the order rebuilt, and the file's metadata."""
    out = {}
    for f in ck.weight_files:
        with safe_open(str(f), framework="pt", device="cpu") as h:
            meta = h.metadata() or {}
        out[f.name] = {"tensors": [n for n in ck.names if ck.info(n).file == f.name], "metadata": meta}
    return out


def _copy_files(src: Path, dst: Path) -> tuple[dict[str, str], list[str]]:
    """Copy ``src``'s files other than its weights and rankedit's inventory; sub-folders are named, not copied."""
    dst.mkdir()
    files, skipped = {}, []
    for p in sorted(src.iterdir()):
        if p.name == INVENTORY or p.suffix == ".safetensors":
            continue
        if p.is_file():
            shutil.copyfile(p, dst / p.name)
            files[p.name] = file_sha256(dst / p.name)
        else:
            skipped.append(p.name)
    return files, skipped


def summary(man: dict, path: Path) -> dict:
    ts = man["tuned"]["tensors"]
    return {"path": str(path), "tensors": len(ts), "changed_tensors": sum(t["encoding"] != pf.SAME for t in ts.values()),
            "encodings": man["encodings"], "patch_bytes": man["patch_bytes"],
            "checkpoint_bytes": man["checkpoint_bytes"],
            "ratio": man["patch_bytes"] / man["checkpoint_bytes"] if man["checkpoint_bytes"] else 0.0}


def _dump(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
