"""sha256 of checkpoint files, remembered across runs (edit manifests, score cache keys, analysis keys).

Hashing a 1 GB checkpoint costs seconds, and a study builds, analyses and
scores many models from the same base and tuned checkpoints. A file's hash is cached under
``$RANKEDIT_CACHE/sha256.json``, keyed by its real path, size and mtime in
nanoseconds (as build tools do); a changed file is hashed again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from rankedit.files.atomic import atomic_write_text
from rankedit.files.checkpoint import Checkpoint, file_sha256
from rankedit.core.cache_dir import cache_root

CACHE_FILE = "sha256.json"


def _cache_path(name: str = CACHE_FILE) -> Path:
    return cache_root() / name


def file_key(path: Path) -> str:
    """What a memo is keyed by: the file's real path, size and mtime in nanoseconds."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def load_memo(name: str = CACHE_FILE) -> dict:
    try:
        return json.loads(_cache_path(name).read_text())
    except (OSError, ValueError):
        return {}


def store_memo(new: dict, name: str = CACHE_FILE) -> None:
    try:
        path = _cache_path(name)
        data = load_memo(name)
        data.update(new)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data))
    except OSError:
        pass  # a cache that cannot be written only costs time


def checkpoint_sha256(ck: Checkpoint) -> dict[str, str]:
    """``{file name: sha256}`` of a checkpoint's weight files, from the cache where still valid."""
    return files_sha256(ck.weight_files)


def files_sha256(files: Iterable[Path]) -> dict[str, str]:
    """``{file name: sha256}`` of files, from the cache where still valid."""
    cache = load_memo()
    out, new = {}, {}
    for f in files:
        key = file_key(f)
        digest = cache.get(key) or file_sha256(f)
        if key not in cache:
            new[key] = digest
        out[f.name] = digest
    if new:
        store_memo(new)
    return out
