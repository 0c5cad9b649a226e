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
ZSTD_LEVEL = 1  # on bf16 XORs within 1% of level 3's bytes at 1.6x its speed (BENCHMARKS.md, exact patches)
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: torch.Tensor) -> torch.Tensor:
    """``t``'s bit patterns, flat, as integers of its width (a view where ``t`` is contiguous)."""
    flat = t.reshape(-1)
    if flat.dtype == torch.bool:
        return flat.view(torch.uint8)
    return flat.view(_BITS[flat.element_size()])


def _np_bits(t: torch.Tensor) -> np.ndarray:
    """``bits(t)`` as a numpy array sharing its memory (numpy's loops are several times torch's here)."""
    return bits(t.contiguous()).numpy()


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of the tensor's bytes in C order (what a safetensors file holds for it)."""
    return hashlib.sha256(_np_bits(t)).hexdigest()  # the array's buffer: no copy; hashlib frees the GIL


def bits_equal(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 22) -> bool:
    """Whether two bit-pattern arrays are equal, in chunks: bounded memory, and a changed tensor
    (whose first chunk differs, as an RL step's do) costs one chunk, not a pass."""
    if a.shape != b.shape:
        return False
    return all(np.array_equal(a[i:i + chunk], b[i:i + chunk]) for i in range(0, a.size, chunk))


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


def _measure(w0: torch.Tensor, w1: torch.Tensor) -> tuple[dict, np.ndarray | None, bytes | None]:
    """``measure``'s record, the XOR of the bit patterns and its zstd (``None`` when nothing changed)."""
    if w0.shape != w1.shape or w0.dtype != w1.dtype:
        raise ValueError(f"{list(w0.shape)} {w0.dtype} vs {list(w1.shape)} {w1.dtype}: not one tensor's two versions")
    b0, b1 = _np_bits(w0), _np_bits(w1)
    numel = w1.numel()
    # most tensors of a run's step are unchanged: a compare, no XOR; the XOR is one pass that gives
    # the count (nonzero entries), the zstd input and, where needed, the positions
    xor = None if bits_equal(b0, b1) else np.bitwise_xor(b0, b1)
    changed = 0 if xor is None else int(np.count_nonzero(xor))
    if changed == 0:
        zero = {k: 0 for k in ENCODINGS}
        return {"entries": numel, "changed": 0, **zero, "encoding": SAME, "bytes": 0}, None, None
    z = zstd_bytes(xor)
    sizes = encoding_sizes(numel, changed, w1.element_size(), len(z))
    enc = smallest(sizes)
    return {"entries": numel, "changed": changed, **sizes, "encoding": enc, "bytes": sizes[enc]}, xor, z


def encode(w0: torch.Tensor | None, w1: torch.Tensor) -> tuple[str, dict[str, torch.Tensor], dict]:
    """The smallest exact patch of ``w1`` given ``w0`` (``None``: no tensor of that name in the base).

    Returns ``(encoding, parts, record)``: ``parts`` are the tensors to store (none for ``same``),
    ``record`` has ``changed`` (entries whose bits differ) and every encoding's ``sizes`` in bytes."""
    w1 = w1.contiguous()
    n1 = w1.numel()
    if w0 is None or w0.shape != w1.shape or w0.dtype != w1.dtype:
        size = n1 * w1.element_size()
        return "full", {"full": w1}, {"changed": n1, "sizes": {"full": size}}
    m, xor, z = _measure(w0, w1)
    enc = m["encoding"]
    if enc == SAME:
        return SAME, {}, {"changed": 0, "sizes": {}}
    rec = {"changed": m["changed"], "sizes": {k: m[k] for k in ENCODINGS}}
    if enc == "full":
        return enc, {"full": w1}, rec
    if enc == "xor-zstd":
        return enc, {"xor": torch.frombuffer(bytearray(z), dtype=torch.uint8)}, rec
    diff = xor != 0
    values = torch.from_numpy(_np_bits(w1)[diff]).view(w1.dtype)
    if enc == "bitmap":
        return enc, {"mask": torch.from_numpy(np.packbits(diff, bitorder=BITORDER)), "values": values}, rec
    index = np.flatnonzero(diff).astype(np.int32 if index_dtype(n1) == torch.int32 else np.int64)
    return enc, {"index": torch.from_numpy(index), "values": values}, rec


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
    b0 = _np_bits(w0)
    if encoding == "xor-zstd":
        raw = zstandard.ZstdDecompressor().decompress(parts["xor"].numpy(), max_output_size=b0.nbytes)
        if len(raw) != b0.nbytes:
            raise ValueError(f"the XOR holds {len(raw)} bytes, the tensor {b0.nbytes}")
        out = np.bitwise_xor(b0, np.frombuffer(raw, dtype=b0.dtype))  # one pass: no copy of the base first
        return torch.from_numpy(out).view(dtype).reshape(shape)
    if parts["values"].dtype != dtype:
        raise ValueError(f"values are {parts['values'].dtype}, the tensor {dtype}")
    values = _np_bits(parts["values"])
    if encoding == "bitmap":
        mask = parts["mask"]
        if mask.numel() != (b0.size + 7) // 8:
            raise ValueError(f"the bitmap holds {mask.numel()} bytes for {b0.size} entries")
        pos = np.unpackbits(mask.numpy(), count=b0.size, bitorder=BITORDER).view(bool)
        if int(np.count_nonzero(pos)) != values.size:
            raise ValueError(f"the bitmap marks {int(np.count_nonzero(pos))} entries, {values.size} values are stored")
    elif encoding == "index":
        pos = parts["index"].numpy()
        if pos.size != values.size or (pos.size and (int(pos.min()) < 0 or int(pos.max()) >= b0.size)):
            raise ValueError("the positions do not fit the values or the tensor")
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    out = b0.copy()
    out[pos] = values
    return torch.from_numpy(out).view(dtype).reshape(shape)
