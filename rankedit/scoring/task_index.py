"""lm-eval's index of its own task folder: built once per process, and kept on disk between runs.

lm-eval's ``TaskManager`` reads and parses every one of its ~15k task YAMLs (and
their includes) each time it is built with its default tasks: ~10 s on an idle
core, minutes on a loaded one. The installed package does not change between
two rankedit runs, so the index (what ``TaskIndex.build`` returns: for each name
its kind, YAML path, parsed config and tags) is written as JSON under
``cache_root()/lm-eval-index/``, keyed by the folder, lm-eval's version and the
path, size and modification time of every YAML in it. An index is stored only
when JSON carries it exactly (it is read back and compared before it is kept);
a cache file that does not read back is ignored and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rankedit.core.cache_dir import cache_root
from rankedit.files.atomic import atomic_write_text

FORMAT = 1


def _stamp(folder: Path) -> str:
    """The YAMLs lm-eval indexes in ``folder`` (its own glob), each by path, size and modification time."""
    h = hashlib.sha256()
    for p in sorted(folder.glob("**/*.yaml"), key=lambda p: p.as_posix()):
        st = p.stat()
        h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _key(folder: Path) -> str:
    try:
        lm_eval_version = version("lm_eval")
    except PackageNotFoundError:
        lm_eval_version = "unknown"
    text = json.dumps([FORMAT, lm_eval_version, str(folder.resolve()), _stamp(folder)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _encode(index: dict) -> list:
    return [[name, e.name, e.kind.name, None if e.yaml_path is None else str(e.yaml_path), e.cfg, sorted(e.tags)]
            for name, e in index.items()]


def _decode(rows: list) -> dict:
    from lm_eval.tasks._index import Entry, Kind

    return {name: Entry(name=n, kind=Kind[kind], yaml_path=None if path is None else Path(path), cfg=cfg,
                        tags=set(tags)) for name, n, kind, path, cfg, tags in rows}


def cached_index(folder: Path) -> dict:
    """``TaskIndex.build([folder])``, read from rankedit's cache when this folder's YAMLs were indexed before."""
    from lm_eval.tasks._index import TaskIndex

    path = cache_root() / "lm-eval-index" / f"{_key(folder)}.json"
    if path.is_file():
        try:
            return _decode(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            pass  # unreadable (cut short, another format): indexed again and replaced below
    index = TaskIndex.build([folder])
    try:
        text = json.dumps(_encode(index))
    except (TypeError, ValueError):
        return index  # a config JSON cannot hold: indexed each time, as lm-eval does
    if _decode(json.loads(text)) == index:  # exact, or not kept
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text, register_file=False)
        except OSError:
            pass  # a full or read-only cache only costs the next run the indexing
    return index


@functools.cache
def builtin_index() -> dict:
    """lm-eval's index of its own task folder (what ``TaskManager(include_defaults=True)`` builds first),
    once per process and from the cache between runs. lm-eval's entries are read, never changed: its
    TaskFactory builds a task from a deep copy of ``entry.cfg`` or from the YAML itself."""
    import lm_eval.tasks.manager as manager

    return cached_index(Path(manager.__file__).parent)
