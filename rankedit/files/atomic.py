"""Atomic outputs: write into a temporary sibling, rename when done.

A failed or interrupted command therefore never leaves an OUT that looks
complete. Whether an existing OUT may be replaced at all is decided by
``rankedit.files.outdir`` (never a user's files, never an input); it is replaced only
after the new one is whole.

Temporary siblings and modes: ``rankedit.files.tempfiles``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from rankedit.files import inventory
from rankedit.files.tempfiles import as_os_error, clean_stale, make_temp_dir, replace_text, temp_prefix, umask_modes
from rankedit.core.errors import RankeditError
from rankedit.files.outdir import check_out


def atomic_write_text(path: str | os.PathLike, text: str, *, register_file: bool = True) -> None:
    """Write a text file so that readers see the old content or the new, never half of it.

    The file is recorded as rankedit's in the inventory of the output directory it lies in."""
    replace_text(Path(path), text)
    if register_file:
        inventory.register(Path(path))


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, *, kind: str | None = None, inputs: Iterable[str | os.PathLike | None] = (),
               overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    With a ``kind`` (analyze, edit, score) ``out`` is a user's output: the policy
    of ``rankedit.files.outdir`` is checked before the work and again before the
    rename, and the result carries an inventory of what rankedit wrote. Without
    one it is rankedit's own (a cache entry) and is simply replaced.
    """
    out = Path(out).absolute()
    inputs = list(inputs)
    if kind is not None:
        check_out(out, kind, inputs, overwrite)
    elif out.exists() and not out.is_dir():
        raise RankeditError(f"output path exists and is not a directory: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent, out.name)
    tmp = make_temp_dir(out.parent, out.name)
    old = None
    try:
        yield tmp
        umask_modes(tmp)
        if kind is not None:
            inventory.write_inventory(tmp, kind)
            check_out(out, kind, inputs, overwrite)  # the user may have put something there meanwhile
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / out.name, out)  # put the previous output back
                raise
        else:
            os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        err = as_os_error(e, out)
        if err is not None and err is not e:
            raise err from e
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
