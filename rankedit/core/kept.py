"""Buffers a thread keeps from one matrix to the next, released when the build ends.

A fresh full-size allocation per matrix is returned to the system after use and paged in anew
each time: 150 ms against 17 ms for a copy into kept memory on a 1536 x 4224 float64 matrix (one
thread). So the hot paths that need one full-size temporary per matrix (a float64 copy for the
certificate, the edit as written) take it from here. Each buffer is one matrix's size, so the
build that used them releases them (``release``, at the end of
``rankedit.edits.edit_plan.computed_ahead``): a process that goes on to score or to build another
edit does not hold them. A buffer starts where its allocation does, so products on it see the same
alignment in every thread (BLAS results can depend on it).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a buffer is made: the manifest imports realized.py, which imports this
    import torch

_local = threading.local()


def kept(purpose: str, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised buffer of ``like``'s shape and device (``dtype``: like's unless given) that this thread
    keeps for ``purpose``; valid until this thread's next call for the same purpose."""
    import torch

    dtype = dtype or like.dtype
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get(purpose)
    if buf is None or buf.numel() < like.numel() or buf.dtype != dtype or buf.device != like.device:
        bufs[purpose] = None  # the old one freed before the new one is allocated
        buf = bufs[purpose] = torch.empty(like.numel(), dtype=dtype, device=like.device)
    return buf[: like.numel()].view(like.shape)


def held() -> int:
    """Bytes of the buffers this thread keeps."""
    return sum(b.numel() * b.element_size() for b in (getattr(_local, "bufs", None) or {}).values() if b is not None)


def release() -> None:
    """Drop this thread's buffers."""
    _local.bufs = {}
