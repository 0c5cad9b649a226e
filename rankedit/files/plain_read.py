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

import struct

import torch

from rankedit.core.errors import RankeditError
from rankedit.files.checkpoint import Checkpoint, first_line, read_header

_TORCH = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def read_tensor(ck: Checkpoint, name: str) -> torch.Tensor:
    """Tensor ``name`` of ``ck`` (in its stored dtype), equal to ``ck.get(name)``."""
    path = ck.path / ck.info(name).file
    entry = read_header(path)[name]  # checks the file holds every range it declares
    begin, end = (int(x) for x in entry["data_offsets"])
    if entry["dtype"] not in _TORCH:
        return ck.get(name)  # a dtype torch cannot take from a buffer: the memory map's reader
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            fh.seek(8 + n + begin)
            buf = bytearray(end - begin)
            if fh.readinto(buf) != end - begin:
                raise OSError(f"short read of {end - begin} bytes")
    except OSError as e:
        raise RankeditError(f"{path}: cannot read tensor {name} ({first_line(e)})") from None
    if not buf:
        return torch.empty([int(d) for d in entry["shape"]], dtype=_TORCH[entry["dtype"]])
    return torch.frombuffer(buf, dtype=_TORCH[entry["dtype"]]).reshape([int(d) for d in entry["shape"]])
