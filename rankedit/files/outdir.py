"""Which output directories a command may write, and which it may replace.

One policy for every command (analyze, edit, score, run):

- OUT must not be, contain or lie inside any input, and must not be the
  current directory or one of its parents: refused even with ``--overwrite``;
- an existing, non-empty OUT is replaced only when it is rankedit's own output
  of the same kind holding nothing rankedit did not write (``rankedit.files.inventory``),
  or when the user passed ``--overwrite``;
- otherwise one error line names the files that would be lost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from rankedit.files import inventory
from rankedit.core.errors import RankeditError

PathLike = str | os.PathLike
# what each kind is called in messages
WHAT = {"analyze": "analysis", "edit": "edit", "score": "scores", "run": "run", "trajectory": "trajectory"}


def _real(p: PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(p)))


def _names(files: list[str], shown: int = 3) -> str:
    head = ", ".join(files[:shown])
    return head + (f" and {len(files) - shown} more" if len(files) > shown else "")


def check_inputs(out: PathLike, inputs: Iterable[PathLike | None] = ()) -> None:
    """Refuse an OUT that is, contains or lies inside an input, the current directory or one of its parents."""
    real = _real(out)
    cwd = _real(Path.cwd())
    if real == cwd or real in cwd.parents:
        where = "the current directory" if real == cwd else "a parent of the current directory"
        raise RankeditError(f"refusing to write output to {out}: it is {where}; choose a new directory for -o")
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


def check_replace(out: PathLike, kind: str, overwrite: bool = False) -> None:
    """Allow writing over an existing OUT only if nothing the user owns would be lost."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise RankeditError(f"output path exists and is not a directory: {out}")
    if overwrite:
        return
    own_kind, foreign = inventory.foreign_files(out, kind)
    if own_kind and not foreign:
        return
    if not own_kind:  # another kind of output, or none: everything in it would go
        foreign = [p.relative_to(out).as_posix() for p in inventory.files(out) if p.name != inventory.INVENTORY]
        if not foreign:
            return  # empty, or only empty folders
    what = WHAT.get(kind, kind)
    why = f"{out} holds files rankedit did not write" if own_kind else f"{out} exists and is not a rankedit {what} output"
    raise RankeditError(f"{why}; replacing it would lose {_names(foreign)} ({len(foreign)} file(s)); "
                        "choose another -o, or pass --overwrite to replace it")


def check_out(out: PathLike, kind: str, inputs: Iterable[PathLike | None] = (), overwrite: bool = False) -> None:
    check_inputs(out, inputs)
    check_replace(out, kind, overwrite)


def claim_dir(out: PathLike, kind: str, inputs: Iterable[PathLike | None] = (), overwrite: bool = False) -> Path:
    """Create (or reuse) a resumable output directory such as run's OUT, marked as rankedit's.

    Unlike ``atomic_dir`` nothing is replaced: what is already there stays, so a
    rerun resumes. A directory holding a user's files is reused only with ``overwrite``.
    """
    out = Path(out).absolute()
    check_out(out, kind, inputs, overwrite)
    data = inventory.read(out)
    if data is None or data.get("kind") != kind:
        # new, empty, or (with --overwrite) a directory whose files are kept but not counted as ours
        out.mkdir(parents=True, exist_ok=True)
        inventory.start(out, kind)
    return out
