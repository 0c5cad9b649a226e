"""What rankedit wrote into an output directory, so that it can tell its own files from a user's.

Every output directory a command publishes (analyze, edit, score, run) carries
``.rankedit-output.json``: its kind and, for every file rankedit wrote, its
size (and, for small files, a sha256 of the content). Files rankedit adds later (``push``'s model card,
the scores ``run`` copies next to an edit) are registered in the nearest such
inventory above them. A file that is not listed, or that changed since it was
written (a hand-edited card), belongs to the user: rankedit never deletes it
(``rankedit.files.outdir``), ``--overwrite`` included.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from rankedit.files.tempfiles import TMP_NAME, replace_text
from rankedit.core.names import INVENTORY



SMALL = 1 << 20  # files a person may edit by hand (cards, JSON, YAML) are checked by content


def _stat(p: Path) -> list:
    """[size, sha256 of the content for small files]: the same bytes give the same record (no times, so
    two runs write identical outputs), and a hand edit of a card or a config is seen."""
    if p.is_symlink():
        return [-1, os.readlink(p)]
    st = p.stat()
    if not stat.S_ISREG(st.st_mode):
        return [-2, stat.filemode(st.st_mode)]  # a FIFO or device is never ours, and never read (it may block)
    size = st.st_size
    if size > SMALL:
        return [size, None]
    return [size, hashlib.sha256(p.read_bytes()).hexdigest()]


def files(root: Path):
    """Every non-directory entry under ``root`` (symlinks included, never followed), skipping temp dirs."""
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        keep = []
        for n in dirnames:
            if TMP_NAME.match(n) or (d / n).is_symlink():
                if (d / n).is_symlink():
                    filenames.append(n)
                continue  # another rankedit process's work in progress, or a stale one: ours either way
            keep.append(n)
        dirnames[:] = sorted(keep)
        for n in sorted(filenames):
            if not TMP_NAME.match(n):
                yield d / n


def read(folder: Path) -> dict | None:
    try:
        data = json.loads((Path(folder) / INVENTORY).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def _write(folder: Path, data: dict) -> None:
    replace_text(Path(folder) / INVENTORY, json.dumps(data, indent=0, sort_keys=True) + "\n")


def write_inventory(folder: Path, kind: str) -> None:
    """Record every file now under ``folder`` as rankedit's own output of this kind."""
    folder = Path(folder)
    listed = {p.relative_to(folder).as_posix(): _stat(p) for p in files(folder) if p.name != INVENTORY}
    _write(folder, {"kind": kind, "files": listed})


def start(folder: Path, kind: str) -> None:
    """Mark ``folder`` as rankedit's output of this kind, owning nothing yet (files get registered)."""
    _write(folder, {"kind": kind, "files": {}})


def owner(path: Path) -> Path | None:
    """The nearest directory above ``path`` holding an inventory (None inside temporary dirs)."""
    path = Path(path).absolute()
    if any(TMP_NAME.match(part) for part in path.parts):
        return None  # still being written: the whole temp dir is recorded when it is published
    for d in path.parents:
        if (d / INVENTORY).is_file():
            return d
    return None


def register(*paths: Path) -> None:
    """Add files rankedit just wrote to the inventory of the output directory they lie in."""
    for p in paths:
        root = owner(p)
        data = read(root) if root is not None else None
        if data is None:
            continue
        data["files"][Path(p).absolute().relative_to(root).as_posix()] = _stat(Path(p))
        _write(root, data)


def empty_folders(root: Path) -> list[Path]:
    """Folders below ``root`` holding nothing at all: rankedit never leaves one, so a user made it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(n for n in dirnames if not TMP_NAME.match(n))
        d = Path(dirpath)
        if d != Path(root) and not dirnames and not filenames:
            found.append(d)
    return found


def foreign_files(out: Path, empty_dirs: bool = True) -> list[str]:
    """What under ``out`` rankedit did not write or that changed since: files, and (``empty_dirs``)
    empty folders, named 'folder/'. An earlier output holding only its own files gives []."""
    out = Path(out)
    books: dict[Path, dict] = {}
    foreign = []
    for f in files(out):
        if f.name == INVENTORY and read(f.parent) is not None:
            continue
        mine = False
        for d in [f.parent, *f.parent.parents]:
            if d not in books:
                books[d] = (read(d) or {}).get("files", {}) if (d / INVENTORY).is_file() else {}
            entry = books[d].get(f.relative_to(d).as_posix()) if d == out or out in d.parents else None
            if entry is not None and list(entry) == _stat(f):
                mine = True
                break
            if d == out:
                break
        if not mine:
            foreign.append(f.relative_to(out).as_posix())
    if empty_dirs:
        foreign += [d.relative_to(out).as_posix() + "/" for d in empty_folders(out)]
    return foreign
