"""One folder of cached tensors under ``$RANKEDIT_CACHE``: what the caches of W0's decompositions share.

An entry is one safetensors file (never a pickle) named by its key, written to a
temporary name and renamed, that carries the key and the sha256 of its own
payload in its metadata: an entry that is truncated, altered or written for
another key reads as missing, and the caller computes it again. A cache that
cannot be read or written (even its root folder impossible) only costs time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from rankedit.core.cache_dir import cache_root


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's bytes in row-major order (any dtype; 10 ms for a 4864 x 896 float32 matrix)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy().data).hexdigest()


def entry_path(folder: str, key: str) -> Path:
    return cache_root() / folder / key[:2] / f"{key}.safetensors"


def payload_sha256(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def load_entry(folder: str, key: str, names: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    """The tensors stored under ``key`` (on the CPU), or None when there is no sound entry holding ``names``."""
    try:
        path = entry_path(folder, key)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as fh:  # metadata and tensors from one opening
            meta = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None  # truncated or not a safetensors file: computed again and rewritten
    if meta.get("key") != key or set(tensors) != set(names) or meta.get("payload_sha256") != payload_sha256(tensors):
        return None
    return tensors


def store_entry(folder: str, key: str, tensors: dict[str, torch.Tensor], fmt: str) -> None:
    """Write the entry atomically; nothing (and nothing left behind) when the cache cannot be written."""
    from safetensors.torch import save_file

    tensors = {n: t.detach().to("cpu").contiguous() for n, t in tensors.items()}
    tmp = None
    try:
        path = entry_path(folder, key)  # (the cache's root may be impossible to create: a cache miss)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        os.close(fd)
        save_file(tensors, tmp, metadata={"format": fmt, "key": key, "payload_sha256": payload_sha256(tensors)})
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
