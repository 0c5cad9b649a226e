"""Temporary siblings and the system facts every writer needs (no inventory, no output policy).

Temporary siblings are named ``.NAME.tmp-PID-RANDOM``: one whose process is
gone was left by a killed run and is removed by the next write beside it.
Files get the permissions of any file the user creates (the umask decides),
not the 0700/0600 of ``tempfile``. ``rankedit.files.atomic`` builds rankedit's
outputs on these; ``rankedit.files.inventory`` writes its record with
``replace_text``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

# temporary siblings rankedit creates: .NAME.tmp-PID-RANDOM (the pid tells whether its maker still lives)
TMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[^/]+$")


def umask() -> int:
    try:  # Linux: read it without the set-and-restore race of os.umask
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_prefix(name: str) -> str:
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
        m = TMP_NAME.match(p.name)
        if not m or (name is not None and m.group("name") != name) or _alive(int(m.group("pid"))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


# errors only a write can cause: the disk, not the input, is at fault
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT})
OS_ERROR_TEXT = re.compile(r"\(os error (\d+)\)")


def as_os_error(e: BaseException, path: Path) -> OSError | None:
    """The system error behind a failed write, naming ``path`` when it names nothing.

    Writers in other languages (safetensors is Rust) report an OSError as their
    own exception, "... (os error 28)"; it is the same disk full, said the same way."""
    if isinstance(e, OSError):
        if e.filename is None:
            e.filename = str(path)
        return e
    m = OS_ERROR_TEXT.search(str(e)) if isinstance(e, Exception) else None
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return None


def make_temp_dir(parent: Path, name: str) -> Path:
    """A fresh ``.NAME.tmp-PID-*`` directory in ``parent`` with the umask's permissions."""
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(name), dir=parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def umask_modes(folder: Path) -> None:
    """Give what a writer created private (mergekit's 0600 shards) the mode any new file of the user gets."""
    mask = umask()
    for dirpath, _, filenames in os.walk(folder):
        os.chmod(dirpath, 0o777 & ~mask)
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


def replace_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old content or the new, never half of it."""
    path = Path(path)
    clean_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        err = as_os_error(e, path)
        if err is not None and err is not e:
            raise err from e
        raise
