"""What an edit costs to store: parameters and bytes of the smallest artifact that rebuilds it.

Each edit's record names a ``storage`` function ``(params, MatrixSize) -> Storage`` for one
matrix; the build records it per matrix and summed in ``rankedit_edit.json`` beside the
bytes of the same matrices' full delta in bf16 (``bf16_delta_bytes``), so the ratio is
immediate. The artifact is the one from which the edit is rebuilt exactly given the base
(docs/science.md, "Storage cost"): values are counted in the source matrix's dtype
(``itemsize``), positions and signs in bits. Controls are charged what their edit is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

BF16_BYTES = 2


@dataclass(frozen=True)
class MatrixSize:
    """What a storage cost depends on besides the edit's parameters."""

    shape: tuple[int, int]  # (m, n), nn.Linear's (out, in)
    itemsize: int = BF16_BYTES  # bytes of one stored value: the source dtype's (a LoRA export: its factors')
    density: Optional[float] = None  # fraction of entries the build kept (masks, DARE)
    rank: Optional[int] = None  # rank of the factors the build stored (ranks chosen per matrix)


@dataclass(frozen=True)
class Storage:
    params: int  # values stored (a sign counts as one value of one bit)
    bytes: int  # bytes of the artifact


def bitmask_bytes(numel: int) -> int:
    """A packed bitmask: one bit per entry."""
    return math.ceil(numel / 8)


def index_bytes(numel: int) -> int:
    """One flat position as safetensors would store it: int32, or int64 past 2³¹ entries."""
    return 4 if numel <= 2**31 else 8


def dense(size: MatrixSize) -> Storage:
    """Every entry of the (m, n) delta."""
    m, n = size.shape
    return Storage(m * n, m * n * size.itemsize)


def dense_cost(p, size: MatrixSize) -> Storage:
    """The default record: a full delta (scale, extrapolate, off-principal)."""
    return dense(size)


def low_rank(size: MatrixSize, k: int) -> Storage:
    """LoRA factors B (m x k) and A (k x n), the rescale folded into them, in float32 (float64 for a
    float64 source): factors rounded to bf16 would rebuild weights a bf16 step away from the build's,
    so the faithful artifact keeps them at the precision the edit computed them in."""
    m, n = size.shape
    return Storage(k * (m + n), k * (m + n) * scalar_bytes(size.itemsize))


def sparse(size: MatrixSize, density: float) -> Storage:
    """The kept values and their positions: a packed bitmask, or a list of flat indices where that is smaller."""
    m, n = size.shape
    kept = int(round(density * m * n))
    positions = min(bitmask_bytes(m * n), kept * index_bytes(m * n))
    return Storage(kept, kept * size.itemsize + positions)


def scalar_bytes(itemsize: int) -> int:
    """A scale the edit computed: in its own precision (float32, float64 for a float64 source), since one
    rounded to bf16 would not rebuild the edit's bytes; a few per matrix, so the cost is nil."""
    return max(itemsize, 4)


def signs(size: MatrixSize, scales: int) -> Storage:
    """One sign bit per entry plus ``scales`` scales (``scalar_bytes`` each)."""
    m, n = size.shape
    return Storage(m * n + scales, bitmask_bytes(m * n) + scales * scalar_bytes(size.itemsize))


def bf16_delta_bytes(shape: tuple[int, int]) -> int:
    """The reference: the full delta of the matrix in bf16."""
    return shape[0] * shape[1] * BF16_BYTES
