"""How many CPU threads torch gets while lm-eval scores one model."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.files.checkpoint import Checkpoint
from rankedit.core.threads import torch_threads


# Below this many parameters a CPU forward pass is so small that torch's intra-op
# threads only add synchronisation: one thread scored the organism 3-4x faster
# than two on a 2-core machine (BENCHMARKS.md, "Scoring").
SINGLE_THREAD_MAX_PARAMS = 50_000_000


@contextlib.contextmanager
def cpu_threads_for(path: Path, device: str):
    """Run tiny models single-threaded on the CPU; leave everything else alone."""
    small = False
    if device == "cpu":
        try:
            ck = Checkpoint(path)
            small = sum(ck.info(n).numel for n in ck.names) < SINGLE_THREAD_MAX_PARAMS
        except RankeditError:
            small = False
    with torch_threads(1 if small else None):
        yield
