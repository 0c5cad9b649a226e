"""The one place where rankedit builds mergekit's ``MergeOptions``.

mergekit keeps a whole output shard in memory before writing it, and its
default shard is 5 GB, so a big edit peaked at about three times the
checkpoint. ``shard_bytes`` bounds the shard instead: a quarter of the model,
kept between 256 MB (no swarm of tiny files) and 1 GB (the buffer of a 70B
edit stays a fraction of a few GB). mergekit's ``out_shard_size`` is compared
with tensor bytes (``numel * element_size``), whatever its help text says.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

SHARD_CAP = 1_000_000_000  # bytes
SHARD_FLOOR = 250_000_000


def shard_bytes(total_bytes: int, cap: int = SHARD_CAP, floor: int = SHARD_FLOOR) -> int:
    """Bytes per output shard for a model of ``total_bytes``: total/4 clamped to [min(floor, cap), cap]."""
    if cap < 1:
        raise ValueError(f"shard cap must be at least 1 byte, got {cap}")
    return int(min(cap, max(min(floor, cap), math.ceil(total_bytes / 4))))


def checkpoint_bytes(path: Path) -> int:
    """Bytes of a local checkpoint's safetensors weights (what the merged copy will roughly hold)."""
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def merge_options(device: str, progress: bool, copy_tokenizer: bool, input_bytes: int,
                  max_shard_bytes: Optional[int] = None):
    """MergeOptions for a rankedit merge: bounded shards, no mergekit model card (it would name the
    temporary directory), the tokenizer copied when the base has one."""
    from mergekit.options import MergeOptions

    cap = SHARD_CAP if max_shard_bytes is None else max_shard_bytes
    return MergeOptions(device=device, quiet=not progress, copy_tokenizer=copy_tokenizer, write_model_card=False,
                        out_shard_size=shard_bytes(input_bytes, cap))
