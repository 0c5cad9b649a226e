"""The ``--device`` every command takes: checked in one place, before any work.

Without the check, a ``cuda`` device on a machine without one fails deep inside
torch or mergekit with a traceback, after the inputs were read.
"""

from __future__ import annotations

import re

from rankedit.core.errors import RankeditError


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` that this machine has; otherwise one line naming the problem."""
    if device == "cpu":
        return
    m = re.fullmatch(r"cuda(?::(\d+))?", device or "")
    if m is None:
        raise RankeditError(f"--device must be cpu or cuda[:N], got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise RankeditError("--device cuda was given but no CUDA device is available")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise RankeditError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
