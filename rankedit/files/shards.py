"""Write a checkpoint's tensors as safetensors shards, one shard in memory at a time.

The tensors are produced one by one, in the order given, by a function of their name; a
shard is written once it holds ``shard_bytes`` (the last may hold less), and an index
names the shards when there are several, as Hugging Face lays them out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from rankedit.files.checkpoint import INDEX_FILE, SINGLE_FILE


def plan_shards(sizes: Sequence[tuple[str, int]], shard_bytes: int) -> list[list[str]]:
    """Names grouped in order into shards of at most ``shard_bytes`` (a bigger tensor alone in its own)."""
    shards: list[list[str]] = [[]]
    held = 0
    for name, nbytes in sizes:
        if shards[-1] and held + nbytes > shard_bytes:
            shards.append([])
            held = 0
        shards[-1].append(name)
        held += nbytes
    return shards


def write_shards(folder: Path, sizes: Sequence[tuple[str, int]], tensor: Callable[[str], torch.Tensor],
                 shard_bytes: int) -> list[Path]:
    """Write the tensors named in ``sizes`` (name, bytes) into ``folder``; return the files written."""
    from safetensors.torch import save_file

    shards = plan_shards(sizes, shard_bytes)
    n = len(shards)
    files, weight_map, total = [], {}, 0
    for i, names in enumerate(shards, 1):
        fname = SINGLE_FILE if n == 1 else f"model-{i:05d}-of-{n:05d}.safetensors"
        held = {}
        for name in names:
            held[name] = tensor(name).contiguous()
            total += held[name].numel() * held[name].element_size()
            weight_map[name] = fname
        save_file(held, str(folder / fname), metadata={"format": "pt"})
        files.append(folder / fname)
        del held
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        files.append(folder / INDEX_FILE)
    return files
