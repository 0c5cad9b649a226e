"""What machine a result was measured on: CPU model, vendor and SIMD flags, cores, platform, libraries.

Reads /proc/cpuinfo and the platform only: no torch at import, because the
organism's build workers record the CPU before torch loads (their float
settings are pinned first, rankedit.organism.pinning).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# the SIMD part of /proc/cpuinfo's flags: what unpinned kernels dispatch on
_ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "amx", "bmi", "popcnt")


def cpu() -> dict:
    """The CPU: model, vendor and SIMD flags, with the platform, the core count and the C library."""
    info: dict = {"platform": platform.platform(), "cpus": os.cpu_count(), "libc": " ".join(platform.libc_ver())}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info | {"cpu_model": platform.processor() or None, "isa": None}
    fields = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    return info | {
        "cpu_model": fields.get("model name"),
        "cpu_vendor": fields.get("vendor_id"),
        "isa": sorted(f for f in flags if f.startswith(_ISA_PREFIXES)),
    }


def describe() -> dict:
    """A JSON-able description of this machine for reports: the CPU and the versions that decide the numbers."""
    import torch

    c = cpu()
    return {"cpu": c["cpu_model"] or platform.machine(), "cores": c["cpus"],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "platform": c["platform"],
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
