"""Wall time and peak RSS of rankedit edits against mergekit's own task_arithmetic.

Builds a random-init pair with the Qwen2.5-0.5B architecture locally (bf16,
about 1 GB per checkpoint; ``--layers N`` for a smaller one), a "tuned" twin and
four checkpoints of a pretend run, then times each case in its own subprocess
(so peak RSS is per case) and reports every edit as a ratio to
``task_arithmetic`` on the same pair in the same run.

    python bench/bench_edits.py                     # full 24 layers
    python bench/bench_edits.py --layers 4 --repeat 3
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

CASES = {
    "task_arithmetic": "mergekit task_arithmetic, weight 1 (the reference)",
    "rank-k k=1": "rankedit edit rank-k --k 1",
    "off-principal": "rankedit edit off-principal --k 16",
    "mask bf16": "rankedit edit mask --source bf16",
    "extrapolate linear": "rankedit edit extrapolate --mode linear, 4 checkpoints",
    "task_arithmetic x4": "mergekit task_arithmetic over the same 4 checkpoints (same bytes read as extrapolate)",
}


def run_case(case: str, work: Path, out: Path) -> dict:
    """Executed in a fresh subprocess: one case, its wall time and this process's peak RSS."""
    import rankedit.edits  # noqa: F401  (import cost kept out of the timing)
    from rankedit.edits import build_edit

    b, t = work / "base", work / "tuned"
    cks = [work / f"ck{i}" for i in range(1, 5)]
    jobs = {
        "task_arithmetic": lambda: harness.task_arithmetic(b, [t], out),
        "task_arithmetic x4": lambda: harness.task_arithmetic(b, cks, out),
        "rank-k k=1": lambda: build_edit("rank-k", b, t, out, k=1),
        "off-principal": lambda: build_edit("off-principal", b, t, out, k=16),
        "mask bf16": lambda: build_edit("mask", b, t, out, source="bf16"),
        "extrapolate linear": lambda: build_edit("extrapolate", b, cks, out, mode="linear",
                                                 steps=[100, 200, 300, 400], target_step=1000),
    }
    if case not in jobs:
        raise SystemExit(f"unknown case {case}")
    import mergekit.merge  # noqa: F401
    return harness.timed(jobs[case], case)


if __name__ == "__main__":
    harness.main(__file__, __doc__, CASES, run_case, reference="task_arithmetic", work_name="bench-edits")
