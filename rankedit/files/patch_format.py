"""The exact patch of one tensor: its encodings, their sizes, and how each is rebuilt (pure functions).

A tensor of TUNED that differs from BASE's tensor of the same name, shape and dtype is stored by
the entries whose *bit patterns* differ (so -0.0 vs 0.0 and NaN payloads count, as they should
for a bit-exact rebuild), in whichever of these is smallest:

- ``bitmap``: one bit per entry (packed, little bit order) and the new values of the changed
  entries: ``ceil(N / 8) + n * e`` bytes;
- ``index``: the changed entries' flat positions (int32, int64 past 2**31 entries) and their new
  values: ``n * (4 or 8) + n * e`` bytes;
- ``xor-zstd``: the XOR of the two tensors' bit patterns, every entry, compressed with zstd:
  the compressor's output length;
- ``full``: the tensor itself, ``N * e`` bytes (what a tensor every entry of which changed costs;
  also the only encoding of a tensor whose shape or dtype differs from the base's, or that the base
  lacks).

``N`` entries, ``n`` of them changed, ``e`` bytes each. A tie goes to the earlier of
``ENCODINGS``' order. A tensor whose bits are all equal is ``same``: named, no bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import zstandard

ENCODINGS = ("bitmap", "index", "xor-zstd", "full")
SAME = "same"
BITORDER = "little"
ZSTD_LEVEL = 3  # zstd's default: the field's choice for weight sync (fast, within a few % of level 19 on XORs)
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: torch.Tensor) -> torch.Tensor:
    """``t``'s bit patterns, flat, as integers of its width (a view where ``t`` is contiguous)."""
    flat = t.reshape(-1)
    if flat.dtype == torch.bool:
        return flat.view(torch.uint8)
    return flat.view(_BITS[flat.element_size()])


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of the tensor's bytes in C order (what a safetensors file holds for it)."""
    return hashlib.sha256(bits(t.contiguous()).numpy()).hexdigest()  # the array's buffer: no copy


def index_dtype(numel: int) -> torch.dtype:
    return torch.int32 if numel < 2**31 else torch.int64


def encoding_sizes(numel: int, changed: int, element_bytes: int, xor_zstd_bytes: int) -> dict[str, int]:
    """Bytes of each encoding of a tensor of ``numel`` entries, ``changed`` of them changed."""
    values = changed * element_bytes
    return {"bitmap": (numel + 7) // 8 + values,
            "index": changed * torch.empty((), dtype=index_dtype(numel)).element_size() + values,
            "xor-zstd": xor_zstd_bytes,
            "full": numel * element_bytes}


def smallest(sizes: dict[str, int]) -> str:
    """The encoding of fewest bytes, ties to the earlier in ``ENCODINGS``."""
    return min(ENCODINGS, key=lambda k: (sizes[k], ENCODINGS.index(k)))


def zstd_bytes(data: np.ndarray) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(memoryview(np.ascontiguousarray(data)).cast("B"))


def measure(w0: torch.Tensor, w1: torch.Tensor) -> dict:
    """What the exact patch of ``w1`` against ``w0`` (same shape and dtype) costs, without building it:
    ``entries``, ``changed`` (entries whose bits differ), each encoding's bytes, the ``encoding``
    chosen and its ``bytes`` (``same`` and 0 when nothing changed)."""
    return _measure(w0, w1)[0]


def _measure(w0: torch.Tensor, w1: torch.Tensor) -> tuple[dict, torch.Tensor | None, bytes | None]:
    if w0.shape != w1.shape or w0.dtype != w1.dtype:
        raise ValueError(f"{list(w0.shape)} {w0.dtype} vs {list(w1.shape)} {w1.dtype}: not one tensor's two versions")
    b0, b1 = bits(w0.contiguous()), bits(w1.contiguous())
    numel = w1.numel()
    if torch.equal(b0, b1):  # most tensors of a run's step: half the cost of the comparison below
        changed, diff = 0, None
    else:
        diff = b0 != b1
        changed = int(np.count_nonzero(diff.numpy()))  # 20-40x a bool tensor's sum(), which widens to int64
    if changed == 0:
        zero = {k: 0 for k in ENCODINGS}
        return {"entries": numel, "changed": 0, **zero, "encoding": SAME, "bytes": 0}, None, None
    xor = zstd_bytes((b0 ^ b1).numpy())
    sizes = encoding_sizes(numel, changed, w1.element_size(), len(xor))
    enc = smallest(sizes)
    return {"entries": numel, "changed": changed, **sizes, "encoding": enc, "bytes": sizes[enc]}, diff, xor


def encode(w0: torch.Tensor | None, w1: torch.Tensor) -> tuple[str, dict[str, torch.Tensor], dict]:
    """The smallest exact patch of ``w1`` given ``w0`` (``None``: no tensor of that name in the base).

    Returns ``(encoding, parts, record)``: ``parts`` are the tensors to store (none for ``same``),
    ``record`` has ``changed`` (entries whose bits differ) and every encoding's ``sizes`` in bytes."""
    w1 = w1.contiguous()
    n1 = w1.numel()
    if w0 is None or w0.shape != w1.shape or w0.dtype != w1.dtype:
        size = n1 * w1.element_size()
        return "full", {"full": w1}, {"changed": n1, "sizes": {"full": size}}
    m, diff, xor = _measure(w0, w1)
    enc = m["encoding"]
    if enc == SAME:
        return SAME, {}, {"changed": 0, "sizes": {}}
    rec = {"changed": m["changed"], "sizes": {k: m[k] for k in ENCODINGS}}
    if enc == "full":
        return enc, {"full": w1}, rec
    if enc == "xor-zstd":
        return enc, {"xor": torch.frombuffer(bytearray(xor), dtype=torch.uint8)}, rec
    values = w1.reshape(-1)[diff].contiguous()
    if enc == "bitmap":
        return enc, {"mask": torch.from_numpy(np.packbits(diff.numpy(), bitorder=BITORDER)), "values": values}, rec
    return enc, {"index": diff.nonzero().reshape(-1).to(index_dtype(n1)), "values": values}, rec


def decode(w0: torch.Tensor | None, encoding: str, parts: dict[str, torch.Tensor], shape: list[int],
           dtype: torch.dtype) -> torch.Tensor:
    """The tensor ``encode`` stored: ``w1`` of ``shape`` and ``dtype``, rebuilt from ``w0``.

    Raises ValueError when the parts do not fit the record (a damaged patch)."""
    if encoding == "full":
        w = parts["full"]
        if list(w.shape) != list(shape) or w.dtype != dtype:
            raise ValueError(f"stored tensor is {list(w.shape)} {w.dtype}, the record says {shape} {dtype}")
        return w
    if w0 is None or list(w0.shape) != list(shape) or w0.dtype != dtype:
        raise ValueError(f"the base tensor is not {shape} {dtype}")
    if encoding == SAME:
        return w0
    flat = bits(w0.contiguous()).clone()
    if encoding == "xor-zstd":
        raw = zstandard.ZstdDecompressor().decompress(parts["xor"].numpy().tobytes(),
                                                      max_output_size=flat.numel() * flat.element_size())
        if len(raw) != flat.numel() * flat.element_size():
            raise ValueError(f"the XOR holds {len(raw)} bytes, the tensor {flat.numel() * flat.element_size()}")
        flat ^= torch.frombuffer(bytearray(raw), dtype=flat.dtype)
        return flat.view(dtype).reshape(shape)
    values = bits(parts["values"].contiguous())
    if encoding == "bitmap":
        mask = parts["mask"]
        if mask.numel() != (flat.numel() + 7) // 8:
            raise ValueError(f"the bitmap holds {mask.numel()} bytes for {flat.numel()} entries")
        pos = torch.from_numpy(np.unpackbits(mask.numpy(), count=flat.numel(), bitorder=BITORDER).astype(bool))
        if int(pos.sum()) != values.numel():
            raise ValueError(f"the bitmap marks {int(pos.sum())} entries, {values.numel()} values are stored")
    elif encoding == "index":
        pos = parts["index"].to(torch.int64)
        if pos.numel() != values.numel() or (pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= flat.numel())):
            raise ValueError("the positions do not fit the values or the tensor")
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    if parts["values"].dtype != dtype:
        raise ValueError(f"values are {parts['values'].dtype}, the tensor {dtype}")
    flat[pos] = values
    return flat.view(dtype).reshape(shape)
