"""What decides the organism's float results, pinned in every process of a build.

Training amplifies last-bit differences into different models, so the weights
used to change with the machine: ATen's vectorised kernels differ per CPU
capability (avx512 vs avx2 vs default: even torch.randn differs), MKL's sgemm
dispatches on the CPU (and on Intel vs AMD), and thread counts change how sums
are split. The build therefore trains only in worker processes started with
PINS in their environment, overriding whatever the user set:

- ATEN_CPU_CAPABILITY=avx2: every x86-64 server of the last decade has AVX2
  (and FMA), and it is faster than `default`, which gives up vectorisation.
- MKL_CBWR=COMPATIBLE: MKL's conditional numerical reproducibility. Its named
  ISA branches (AVX2, ...) are honoured on Intel CPUs only; on others MKL
  silently falls back to AUTO, which dispatches per CPU. COMPATIBLE (SSE2
  without the approximate rcpps/rsqrtps) is the one branch every x86-64 CPU
  runs alike.
- ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA=AVX2: fp32 training here runs no
  oneDNN primitive (ONEDNN_VERBOSE prints none), pinned in case a version does.
- one thread everywhere (OpenMP, MKL, torch intra- and inter-op), MKL_DYNAMIC
  off, PYTHONHASHSEED fixed; variables that would steer MKL's dispatch are removed.

This module must not import torch: the worker applies PINS before torch loads.
"""

from __future__ import annotations

import os
from pathlib import Path
import ctypes

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_DYNAMIC": "FALSE",
    "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}
# would steer MKL's dispatch or let oneDNN round fp32 to bf16; a build runs without them
UNSET = ("MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE")
_MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
                 10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}


def pinned_env(env: dict | None = None) -> dict:
    """The environment for a build worker: the caller's, with PINS forced and UNSET removed."""
    out = {k: v for k, v in (os.environ if env is None else env).items() if k not in UNSET}
    out.update(PINS)
    return out


def apply_in_process() -> None:
    """For a worker started by hand: pin before torch is imported (the variables are read at load)."""
    for k in UNSET:
        os.environ.pop(k, None)
    os.environ.update(PINS)


def effective() -> dict:
    """What the process really runs with, read back from torch and MKL (after pinning threads)."""
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started: report what it is
        pass
    return {
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": _mkl_branch(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def held(effective_by_phase: dict) -> bool:
    """Did every phase run with the pinned kernels? (Not on a CPU without AVX2, where ATen falls back.)"""
    return all(e and e["aten_cpu_capability"] == "AVX2" and e["mkl_cbwr"] == "COMPATIBLE" and e["threads"] == 1
               for e in effective_by_phase.values())


def _mkl_branch() -> str | None:
    """MKL's active CNR branch; None where torch's MKL does not export its service call."""
    import torch

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        torch.ones(2, 2) @ torch.ones(2, 2)  # MKL reads MKL_CBWR at its first call
        code = lib.mkl_serv_cbwr_get(1)  # 1 = MKL_CBWR_BRANCH
    except (OSError, AttributeError):
        return None
    return _MKL_BRANCHES.get(code, str(code))
