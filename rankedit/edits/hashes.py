"""sha256 of checkpoint weight files, remembered across runs.

Hashing a 1 GB checkpoint costs seconds, and a study builds many edits from the
same base and tuned models. A file's hash is cached under
``$RANKEDIT_CACHE/sha256.json``, keyed by its real path, size and mtime in
nanoseconds (as build tools do); a changed file is hashed again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rankedit.checkpoint import Checkpoint, file_sha256

CACHE_FILE = "sha256.json"


def _cache_path() -> Path:
    from rankedit.cache import cache_root

    return cache_root() / CACHE_FILE


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _load() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _store(new: dict) -> None:
    try:
        path = _cache_path()
        data = _load()
        data.update(new)
        fd, tmp = tempfile.mkstemp(prefix=".sha256-", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def checkpoint_sha256(ck: Checkpoint) -> dict[str, str]:
    """``{file name: sha256}`` of a checkpoint's weight files, from the cache where still valid."""
    cache = _load()
    out, new = {}, {}
    for f in ck.weight_files:
        key = _key(f)
        digest = cache.get(key) or file_sha256(f)
        if key not in cache:
            new[key] = digest
        out[f.name] = digest
    if new:
        _store(new)
    return out
