"""The rankedit delta: how one edited matrix is stored, and rebuilt, given the base (pure functions).

A delta folder holds ``delta.safetensors`` (tensors only, never a pickle) and ``delta.json``
(``rankedit.edits.artifact``). Each edited matrix is stored by its edit's layout
(``Edit.artifact``), in exactly the bytes ``rankedit.edits.storage`` counts:

- ``sparse`` (mask, dare): the kept positions, a packed bitmask or int32/int64 flat indices,
  whichever is smaller, and the values at them. The values are the *edited matrix's* entries
  in the base's dtype, not ΔW's: a delta rounded to bf16 and added back would not give the
  build's bytes, the entries themselves do; the other entries are the base's.
- ``sign`` (sign, random-sign): one bit per entry (the sign bit of the edit's delta, so a
  −0 stays −0) and the scale(s), one per matrix or per row, in the precision the edit ran in;
  rebuilt as ``W0 + where(bit, −γ, γ)`` in that precision, as the build adds its delta.
- ``dense`` (scale, extrapolate, off-principal, any other edit): the edited matrix itself.

Positions and bitmasks are in the checkpoint's stored layout, flat; signs and scales in
nn.Linear's (out, in) layout (a row is an output unit), as the edit computed them.
"""

from __future__ import annotations

import numpy as np
import torch

from rankedit.edits.storage import bitmask_bytes, index_bytes

FORMAT = "rankedit-delta"
VERSION = 1
BITORDER = "little"  # np.packbits' order of the bits in a byte
LAYOUTS = ("sparse", "sign", "dense")


def pack_bits(flags: torch.Tensor) -> torch.Tensor:
    """A bool tensor, flat, as ceil(numel / 8) bytes (uint8)."""
    return torch.from_numpy(np.packbits(flags.reshape(-1).cpu().numpy(), bitorder=BITORDER))


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The inverse of ``pack_bits``: ``numel`` flags, flat."""
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=numel, bitorder=BITORDER).astype(bool))


def encode_sparse(edited: torch.Tensor, kept: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and layout record of the entries ``kept`` (bool, stored layout) of ``edited`` (stored dtype)."""
    flat = kept.reshape(-1).to(torch.bool).cpu()
    numel, n = flat.numel(), int(flat.sum())
    values = edited.reshape(-1).cpu()[flat].contiguous()
    if bitmask_bytes(numel) <= n * index_bytes(numel):  # storage.sparse's rule: the smaller of the two
        return {"values": values, "mask": pack_bits(flat)}, {"layout": "sparse", "positions": "mask", "kept": n}
    dtype = torch.int32 if index_bytes(numel) == 4 else torch.int64
    index = flat.nonzero().reshape(-1).to(dtype)
    return {"values": values, "index": index}, {"layout": "sparse", "positions": "index", "kept": n}


def decode_sparse(w0: torch.Tensor, parts: dict[str, torch.Tensor], rec: dict) -> torch.Tensor:
    flat = w0.reshape(-1).clone()
    if rec["positions"] == "mask":
        pos = unpack_bits(parts["mask"], flat.numel())
    else:
        pos = parts["index"].to(torch.int64)
    if int(pos.sum() if pos.dtype == torch.bool else pos.numel()) != rec["kept"]:
        raise ValueError(f"{rec['kept']} kept entries recorded, the positions hold another number")
    flat[pos] = parts["values"].to(flat.dtype)
    return flat.reshape(w0.shape)


def encode_sign(delta: torch.Tensor, scale_shape: tuple[int, ...]) -> tuple[dict[str, torch.Tensor], dict]:
    """``delta`` (out, in), the edit's final ±γ, as sign bits and γ per matrix ((1, 1)) or per row ((m, 1))."""
    per_row = tuple(scale_shape) == (delta.shape[0], 1) and delta.shape[0] != 1
    scales = delta.abs()[:, :1] if per_row else delta.abs()[:1, :1]
    return ({"signs": pack_bits(torch.signbit(delta)), "scales": scales.cpu().contiguous()},
            {"layout": "sign", "per": "row" if per_row else "matrix"})


def decode_sign(w0_linear: torch.Tensor, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """``W0 + where(bit, −γ, γ)`` in γ's precision (out, in); the caller casts back to the stored dtype."""
    scales = parts["scales"]
    neg = unpack_bits(parts["signs"], w0_linear.numel()).reshape(w0_linear.shape)
    return w0_linear.to(scales.dtype) + torch.where(neg, -scales, scales)


def encode_dense(edited: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
    return {"values": edited.cpu().contiguous()}, {"layout": "dense"}


def payload_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of the tensors' data, what a safetensors file holds besides its header."""
    return sum(t.numel() * t.element_size() for t in tensors.values())
