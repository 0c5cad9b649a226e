"""The ``--device`` every command takes (and a plan's ``device`` keys): checked in one place, before any work.

Without the check, a ``cuda`` device on a machine without one fails deep inside
torch or mergekit with a traceback, after the inputs were read.
"""

from __future__ import annotations

import re

from rankedit.core.errors import RankeditError


def device_problem(device: str, gpu_only: bool = False) -> str | None:
    """Why ``device`` cannot be used here, or None. CUDA is probed only when asked for."""
    if device == "cpu" and not gpu_only:
        return None
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        return f"must be {'cuda or cuda:N' if gpu_only else 'cpu, cuda or cuda:N'}, got {device!r}"
    import torch

    if not torch.cuda.is_available():
        return f"{device!r} asks for a CUDA GPU, but none is available on this machine"
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        return f"{device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` that this machine has; otherwise one line naming the problem."""
    why = device_problem(device)
    if why:
        raise RankeditError(f"--device {why}")
