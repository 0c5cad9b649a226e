"""One tensor of a checkpoint read with plain file reads, not through a memory map.

``Checkpoint.get`` reads through safetensors' memory map, and every page it
touches counts in the process's resident memory for as long as the map lives.
Work done beside a merge (``rankedit.edits.ahead``) reads every matrix a second
time while mergekit maps the same files: through a second map, a whole
checkpoint's pages would be counted twice. Read here, the bytes go through the
kernel's page cache (shared, and not the process's) into one buffer that is
freed with the tensor.
"""

from __future__ import annotations

import functools
import os
import struct

import torch

from rankedit.core.errors import RankeditError
from rankedit.files.checkpoint import Checkpoint, first_line, read_header


@functools.lru_cache(maxsize=64)
def _layout(path: str, size: int, mtime_ns: int) -> tuple[int, dict]:
    """(where the data starts, the checked header) of one file, read once per version of it, not per tensor."""
    header = read_header(path)  # checks the file holds every range it declares
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
    return 8 + n, header


def read_tensor(ck: Checkpoint, name: str) -> torch.Tensor:
    """Tensor ``name`` of ``ck`` (in its stored dtype), equal to ``ck.get(name)``."""
    info = ck.info(name)
    path = ck.path / info.file
    try:
        st = os.stat(path)
        start, header = _layout(str(path), st.st_size, st.st_mtime_ns)
        begin, end = (int(x) for x in header[name]["data_offsets"])
        dtype = getattr(torch, info.dtype)
        with open(path, "rb") as fh:
            fh.seek(start + begin)
            buf = bytearray(end - begin)
            if fh.readinto(buf) != end - begin:
                raise OSError(f"short read of {end - begin} bytes")
    except AttributeError:  # a dtype torch does not name: the memory map's reader
        return ck.get(name)
    except OSError as e:
        raise RankeditError(f"{path}: cannot read tensor {name} ({first_line(e)})") from None
    if not buf:
        return torch.empty(list(info.shape), dtype=dtype)
    return torch.frombuffer(buf, dtype=dtype).reshape(list(info.shape))
