"""Which inputs rankedit reads at all: regular files inside their folder, float matrices.

A FIFO blocks the first read forever, a device never ends, a link loop never resolves:
each is refused in one line before anything is read (``check_entries``). A shard index
entry that leads out of the checkpoint folder (``..``, an absolute path, a link out)
would read another folder's file and record it as this one's (``inside``). A 2-D
integer tensor (a quantized weight) is refused rather than measured as if its codes
were weights (``check_float_matrices``).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Sequence

from rankedit.core.errors import RankeditError


def link_problem(p: Path) -> str:
    """Why a symbolic link cannot be followed, in words."""
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop (the link leads back to itself)"
        return f"a symbolic link to {os.readlink(p)}, which does not exist"
    return "a symbolic link"


def check_entries(folder: Path) -> None:
    """Every entry of a checkpoint folder is a regular file or a folder, before any is read:
    a FIFO would block the first read forever, a device never end, a link loop never resolve."""
    for entry in sorted(folder.iterdir()):
        try:
            mode = os.stat(entry).st_mode
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise RankeditError(f"{entry}: {link_problem(entry)}") from None
            continue  # a dangling link: refused later only if it is a file rankedit reads
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise RankeditError(f"{entry}: {not_regular(mode)}; a checkpoint folder holds regular files only")


def not_regular(mode: int) -> str:
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"{kind}, not a regular file"


def inside(folder: Path, entry: str) -> bool:
    """Whether index entry ``entry`` names a file inside ``folder`` once every link is resolved.

    A Hugging Face cache snapshot links each file to the repository's blobs/ folder: inside too."""
    if not entry or os.path.isabs(entry) or ".." in Path(entry).parts:
        return False
    root = folder.resolve()
    target = (folder / entry).resolve()
    if target.is_relative_to(root):
        return True
    snapshot = root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--")
    return snapshot and target.is_relative_to(root.parent.parent / "blobs")


def check_index(idx: Path, folder: Path, weight_map: object) -> None:
    """A shard index maps tensor names to files inside ``folder``: anything else is one line naming the entry."""
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise RankeditError(f"{idx}: not a valid safetensors index (weight_map must map tensor names to file names)")
    for name, f in weight_map.items():
        if not inside(folder, f):  # '..', an absolute path or a link out: another folder's file
            raise RankeditError(f"{idx}: entry {name!r} -> {f!r} points outside the checkpoint folder; "
                                "a checkpoint reads only its own files")


def is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def check_float_matrices(ckpts: Sequence, labels: Sequence[str]) -> None:
    """rankedit measures and edits float matrices: a 2-D integer tensor (a quantized weight, e.g. int8)
    would be analysed as if its codes were weights, and mergekit fails on one that differs between
    inputs. Refused in one line naming it, as is a tensor that is a float in one input and not in another."""
    for c, lab in zip(ckpts, labels):
        ints = [n for n in c.names if len(c.info(n).shape) == 2 and not is_float(c.info(n).dtype)]
        if ints:
            n = ints[0]
            who = str(c.path) if lab == str(c.path) else f"{lab} ({c.path})"
            raise RankeditError(f"{who}: {len(ints)} matrix(es) of a non-float dtype, e.g. {n} "
                                f"({c.info(n).dtype}); rankedit reads float weights only (a quantized checkpoint? "
                                "use its float original)")
    ref, ref_label = ckpts[0], labels[0]
    for c, lab in zip(ckpts[1:], labels[1:]):
        names = set(c.names)
        mixed = [n for n in ref.names if n in names and is_float(ref.info(n).dtype) != is_float(c.info(n).dtype)]
        if mixed:
            n = mixed[0]
            raise RankeditError(f"{ref_label} and {lab} store {len(mixed)} tensor(s) as float in one and not in the "
                                f"other, e.g. {n}: {ref.info(n).dtype} vs {c.info(n).dtype}; rankedit reads float "
                                "weights only")
