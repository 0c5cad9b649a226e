"""Wall time and peak RSS of `rankedit analyze` on a Qwen2.5-0.5B-architecture pair.

Builds a random-init pair with the Qwen2.5-0.5B architecture locally (bf16,
about 1 GB per checkpoint; ``--layers N`` for a smaller one) and its tuned twin
(a 1e-3 RMS update of every tensor), then times each case in its own subprocess
(so peak RSS is per case), as a ratio to mergekit's ``task_arithmetic`` on the
same pair in the same run (a peer that reads both checkpoints and writes one):

- ``analyze``: every metric of every attention/MLP matrix (168 of them), k=16,
  with the PNG figures, as `rankedit analyze BASE TUNED -o OUT` runs it;
- ``analyze no-svd-floor``: the same stream of tensor pairs and dW, with only
  the cheap metrics (sparsity, relative norm): what the SVDs cost on top;
- ``task_arithmetic``: the reference.

    python bench/bench_analyze.py                   # full 24 layers (make bench)
    python bench/bench_analyze.py --layers 4 --repeat 1
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

CASES = {
    "task_arithmetic": "mergekit task_arithmetic, weight 1 (the reference)",
    "analyze": "rankedit analyze BASE TUNED -o OUT (all metrics, k=16, figures)",
    "stream + cheap metrics": "the same tensor stream with only sparsity_bf16 and rel_update_norm",
}


def _stream_cheap(b: Path, t: Path) -> None:
    from rankedit import geometry
    from rankedit.checkpoint import Checkpoint

    cb, ct = Checkpoint(b), Checkpoint(t)
    for name in cb.names:
        w0, w1 = cb.get(name), ct.get(name)
        geometry.sparsity_bf16(w0, w1)
        if w0.ndim == 2 and ".layers." in name:  # the attention/MLP matrices analyze measures
            geometry.rel_update_norm(w0.float(), w1.float())


def run_case(case: str, work: Path, out: Path) -> dict:
    """Executed in a fresh subprocess: one case, its wall time and this process's peak RSS."""
    import shutil

    import mergekit.merge  # noqa: F401  (import cost kept out of the timing)

    import rankedit.analysis  # noqa: F401
    import rankedit.plots  # noqa: F401

    b, t = work / "base", work / "tuned"
    shutil.rmtree(out, ignore_errors=True)
    jobs = {
        "task_arithmetic": lambda: harness.task_arithmetic(b, [t], out),
        "analyze": lambda: rankedit.analysis.analyze(b, t, out, k=16, progress=False),
        "stream + cheap metrics": lambda: _stream_cheap(b, t),
    }
    if case not in jobs:
        raise SystemExit(f"unknown case {case}")
    return harness.timed(jobs[case], case)


if __name__ == "__main__":
    harness.main(__file__, __doc__, CASES, run_case, reference="task_arithmetic", work_name="bench-analyze", checkpoints=0)
