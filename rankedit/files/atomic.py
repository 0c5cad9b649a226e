"""Atomic outputs: write into a temporary sibling, rename when done.

A failed or interrupted command therefore never leaves an OUT that looks
complete. Whether an existing OUT may be replaced at all is decided by
``rankedit.files.outdir`` (never a user's files, never an input); it is replaced only
after the new one is whole.

Temporary siblings are named ``.NAME.tmp-PID-RANDOM``: one whose process is
gone was left by a killed run and is removed by the next write beside it.
Outputs get the permissions of any file the user creates (the umask decides),
not the 0700/0600 of ``tempfile``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from rankedit.files import inventory


def _umask() -> int:
    try:  # Linux: read it without the set-and-restore race of os.umask
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prefix(name: str) -> str:
    return f".{name}.tmp-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale(parent: Path, name: str | None = None) -> None:
    """Remove ``.NAME.tmp-PID-*`` entries in ``parent`` whose process has died (only names rankedit makes)."""
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return
    for p in entries:
        m = inventory.TMP_NAME.match(p.name)
        if not m or (name is not None and m.group("name") != name) or _alive(int(m.group("pid"))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


# errors only a write can cause: the disk, not the input, is at fault
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT})
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def as_os_error(e: BaseException, path: Path) -> OSError | None:
    """The system error behind a failed write, naming ``path`` when it names nothing.

    Writers in other languages (safetensors is Rust) report an OSError as their
    own exception, "... (os error 28)"; it is the same disk full, said the same way."""
    if isinstance(e, OSError):
        if e.filename is None:
            e.filename = str(path)
        return e
    m = _OS_ERROR.search(str(e)) if isinstance(e, Exception) else None
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return None


def make_temp_dir(parent: Path, name: str) -> Path:
    """A fresh ``.NAME.tmp-PID-*`` directory in ``parent`` with the umask's permissions."""
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(name), dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _umask_modes(folder: Path) -> None:
    """Give what a writer created private (mergekit's 0600 shards) the mode any new file of the user gets."""
    mask = _umask()
    for dirpath, _, filenames in os.walk(folder):
        os.chmod(dirpath, 0o777 & ~mask)
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


def atomic_write_text(path: str | os.PathLike, text: str, *, register_file: bool = True) -> None:
    """Write a text file so that readers see the old content or the new, never half of it.

    The file is recorded as rankedit's in the inventory of the output directory it lies in."""
    path = Path(path)
    clean_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path.name), dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        err = as_os_error(e, path)
        if err is not None and err is not e:
            raise err from e
        raise
    if register_file:
        inventory.register(path)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, *, kind: str | None = None, inputs: Iterable[str | os.PathLike | None] = (),
               overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    With a ``kind`` (analyze, edit, score) ``out`` is a user's output: the policy
    of ``rankedit.files.outdir`` is checked before the work and again before the
    rename, and the result carries an inventory of what rankedit wrote. Without
    one it is rankedit's own (a cache entry) and is simply replaced.
    """
    from rankedit.files.outdir import check_out

    out = Path(out).absolute()
    inputs = list(inputs)
    if kind is not None:
        check_out(out, kind, inputs, overwrite)
    elif out.exists() and not out.is_dir():
        from rankedit.core.errors import RankeditError

        raise RankeditError(f"output path exists and is not a directory: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent, out.name)
    tmp = make_temp_dir(out.parent, out.name)
    old = None
    try:
        yield tmp
        _umask_modes(tmp)
        if kind is not None:
            inventory.write_inventory(tmp, kind)
            check_out(out, kind, inputs, overwrite)  # the user may have put something there meanwhile
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(out.name), dir=out.parent))
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
