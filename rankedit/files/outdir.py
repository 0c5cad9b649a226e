"""Which output directories a command may write, and which it may replace.

One policy for every command (analyze, edit, score, kl, trajectory, compress, run, apply):
an output folder only ever loses what rankedit wrote there.

- OUT must not be, contain or lie inside any input, and must not be the
  current directory, the home folder, the filesystem root, rankedit's cache, or
  a folder holding one of them: refused even with ``--overwrite``;
- OUT's path must be UTF-8 (the file formats below it store names as UTF-8);
- an existing OUT holding anything rankedit did not write, or a file rankedit
  wrote that changed since (``rankedit.files.inventory``), is never replaced:
  one error line names those files, whatever the flags; users delete their own;
- an earlier output of the same kind (command and method) holding nothing else
  is replaced; one of another kind needs ``--overwrite``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from rankedit.files import inventory
from rankedit.core.errors import RankeditError

PathLike = str | os.PathLike
# what each kind is called in messages; a kind may carry a method after ':' (edit:rank-k)
WHAT = {"analyze": "analysis", "edit": "edit", "score": "scores", "run": "run", "trajectory": "trajectory"}
SAFE = ("rankedit replaces only its own earlier output and never deletes anything else, --overwrite included; "
        "choose a new folder for -o, or move or delete those files yourself")


def _real(p: PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(p)))


def _names(files: list[str], shown: int = 3) -> str:
    head = ", ".join(files[:shown])
    return head + (f" and {len(files) - shown} more" if len(files) > shown else "")


def what(kind: str) -> str:
    """A kind as messages name it: 'edit:rank-k' -> 'rank-k edit'."""
    cmd, _, method = kind.partition(":")
    name = WHAT.get(cmd, cmd)
    return f"{method} {name}" if method else name


def cache_path() -> Path:
    """rankedit's cache folder ($RANKEDIT_CACHE or ~/.cache/rankedit), not created here."""
    return Path(os.environ.get("RANKEDIT_CACHE") or Path.home() / ".cache" / "rankedit")


def check_path_text(out: PathLike) -> None:
    """A path that is not UTF-8 cannot be handed to the writers (safetensors, JSON): say so, not 'corrupt'."""
    raw = os.fsencode(out)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        shown = raw.decode("utf-8", "backslashreplace")
        raise RankeditError(f"refusing to write output to {shown}: the path is not valid UTF-8 (byte "
                            f"0x{raw[e.start]:02x} at {e.start}); choose a UTF-8 name for -o") from None


def check_location(out: PathLike) -> None:
    """Refuse the places no command may write over: the cwd, home, /, the cache, and folders holding them."""
    check_path_text(out)
    real = _real(out)
    if real == Path(real.anchor):
        raise RankeditError(f"refusing to write output to {out}: it is the filesystem root; choose a new directory for -o")
    home = _real(Path.home())
    if real == home or real in home.parents:
        where = "the home folder" if real == home else "a folder holding the home folder"
        raise RankeditError(f"refusing to write output to {out}: it is {where}; choose a new directory for -o")
    cache = _real(cache_path())
    if real == cache or real in cache.parents:
        where = "rankedit's cache" if real == cache else f"a folder holding rankedit's cache ({cache})"
        raise RankeditError(f"refusing to write output to {out}: it is {where}; choose a new directory for -o")
    cwd = _real(Path.cwd())
    if real == cwd or real in cwd.parents:
        where = "the current directory" if real == cwd else "a parent of the current directory"
        raise RankeditError(f"refusing to write output to {out}: it is {where}; choose a new directory for -o")


def check_inputs(out: PathLike, inputs: Iterable[PathLike | None] = ()) -> None:
    """Refuse an OUT that is, contains or lies inside an input, or is a place no output may go."""
    check_location(out)
    real = _real(out)
    for inp in inputs:
        if inp is None or not Path(inp).exists():
            continue  # a Hub id: its files live in the HF cache, never under a user's OUT
        r = _real(inp)
        if real == r:
            raise RankeditError(f"refusing to write output to {out}: it is the input {inp}")
        if r in real.parents:
            raise RankeditError(f"refusing to write output to {out}: it lies inside the input {inp}")
        if real in r.parents:
            raise RankeditError(f"refusing to write output to {out}: it contains the input {inp}")


def check_replace(out: PathLike, kind: str, overwrite: bool = False, resume: bool = False) -> None:
    """Allow writing over an existing OUT only if nothing but rankedit's own files would be lost.

    ``resume``: OUT is kept and added to (run's folder), not replaced: its empty folders are not at stake."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink():  # replacing it would replace the link, and writing through it another folder
        raise RankeditError(f"output path {out} is a symbolic link (to {os.readlink(out)}); rankedit never writes "
                            "through a link: choose a new folder for -o")
    if not out.is_dir():
        raise RankeditError(f"output path exists and is not a directory: {out}")
    data = inventory.read(out)
    same = data is not None and data.get("kind") == kind
    foreign = inventory.foreign_files(out, empty_dirs=not (resume and same))
    if foreign:
        why = (f"{out} holds files rankedit did not write, or changed since it wrote them" if data is not None
               else f"{out} exists and is not a rankedit {what(kind)} output")
        raise RankeditError(f"{why}: {_names(foreign)} ({len(foreign)} file(s)); {SAFE}")
    if same or not any(inventory.files(out)):
        return  # an earlier output of this kind, or an empty folder
    if not overwrite:
        was = f"a rankedit {what(data['kind'])} output" if data is not None and isinstance(data.get("kind"), str) \
            else "rankedit outputs"
        raise RankeditError(f"{out} holds {was} (nothing else); pass --overwrite to replace it with this "
                            f"{what(kind)}, or choose another -o")


def check_out(out: PathLike, kind: str, inputs: Iterable[PathLike | None] = (), overwrite: bool = False) -> None:
    check_inputs(out, inputs)
    check_replace(out, kind, overwrite)


def claim_dir(out: PathLike, kind: str, inputs: Iterable[PathLike | None] = (), overwrite: bool = False) -> Path:
    """Create (or reuse) a resumable output directory such as run's OUT, marked as rankedit's.

    Unlike ``atomic_dir`` nothing of this kind is replaced: what is already there stays, so a
    rerun resumes. A folder holding a user's files is never used; an output of another kind is
    cleared (every file in it is rankedit's, checked) only with ``overwrite``.
    """
    out = Path(out).absolute()
    check_inputs(out, inputs)
    data = inventory.read(out)
    same = data is not None and data.get("kind") == kind
    check_replace(out, kind, overwrite, resume=True)
    if not same:
        if out.is_dir():
            for p in list(out.iterdir()):  # all rankedit's: check_replace found nothing else
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        out.mkdir(parents=True, exist_ok=True)
        inventory.start(out, kind)
    return out
