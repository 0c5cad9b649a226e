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
- ``decomposition floor``: only the three ``gram_svd`` calls per matrix (dW's
  spectrum, W0's and W1's with their top-k triplets), on the same matrices under
  the same thread policy; the time reported is those calls alone;
- ``analyze cached base``: analyze again with W0's parts in the base cache
  (``rankedit.analysis.base_cache``), as for the second and third run of a study;
  W0's eigendecomposition is made all the same (the propensity share needs all of
  its vectors), so the cache saves only the top-k triplets, norm and mask cut-offs;
- ``task_arithmetic``: the reference.

The table adds each case's ratio to the decomposition floor. The analyze cases
use a cache folder of their own under the work folder: the plain case starts it
empty, the cached case reuses what the plain case stored.

    python bench/bench_analyze.py                   # full 24 layers (make bench)
    python bench/bench_analyze.py --layers 4 --repeat 1
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

CASES = {
    "task_arithmetic": "mergekit task_arithmetic, weight 1 (the reference)",
    "analyze": "rankedit analyze BASE TUNED -o OUT (all metrics, k=16, figures)",
    "stream + cheap metrics": "the same tensor stream with only sparsity_bf16 and rel_update_norm",
    "decomposition floor": "the gram_svd calls alone (3 per matrix), same matrices and threads",
    "analyze cached base": "analyze with W0's parts (triplets, norm, mask cut-offs) in the base cache",
}
FLOOR = "decomposition floor"


def _floor(b: Path, t: Path) -> float:
    """Seconds spent in the three gram_svd calls per matrix that analyze makes (nothing else timed)."""
    import time

    from rankedit.analysis.analyze import _matrix_names
    from rankedit.files.checkpoint import Checkpoint
    from rankedit.analysis.geometry import DEFAULT_K, default_k
    from rankedit.core.linalg import gram_svd
    from rankedit.core.modules import as_linear, classify
    from rankedit.core.threads import hot_path_threads

    cb, ct = Checkpoint(b), Checkpoint(t)
    infos = {n: classify(n, cb.info(n).shape, cb.model_type, cb.config) for n in cb.names}
    names = _matrix_names(cb, cb.names, infos)
    spent = 0.0
    with hot_path_threads("analyze", max(min(cb.info(n).shape) for n in names)):
        for n in names:
            f0, f1 = (as_linear(ck.get(n), infos[n]).float() for ck in (cb, ct))
            kk = default_k(tuple(f0.shape), DEFAULT_K)
            t0 = time.perf_counter()
            gram_svd(f1 - f0)
            gram_svd(f0, kk)
            gram_svd(f1, kk)
            spent += time.perf_counter() - t0
    return spent


def _stream_cheap(b: Path, t: Path) -> None:
    from rankedit.analysis import geometry
    from rankedit.files.checkpoint import Checkpoint

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

    import rankedit.analysis.analyze  # noqa: F401
    import rankedit.analysis.plots  # noqa: F401

    b, t = work / "base", work / "tuned"
    shutil.rmtree(out, ignore_errors=True)
    cache = work / "base-cache"
    os.environ["RANKEDIT_CACHE"] = str(cache)
    if case == "analyze":
        shutil.rmtree(cache, ignore_errors=True)  # cold: W0 decomposed (and stored) here
    elif case == "analyze cached base" and not any(cache.rglob("*.safetensors")):
        rankedit.analysis.analyze.analyze(b, t, None, k=16, progress=False)  # untimed warm-up
    if case == FLOOR:
        return {"case": case, "wall_s": _floor(b, t), "peak_rss_mb": harness.peak_rss_mb(),
                "rss_after_imports_mb": harness.peak_rss_mb()}
    jobs = {
        "task_arithmetic": lambda: harness.task_arithmetic(b, [t], out),
        "analyze": lambda: rankedit.analysis.analyze.analyze(b, t, out, k=16, progress=False),
        "analyze cached base": lambda: rankedit.analysis.analyze.analyze(b, t, out, k=16, progress=False),
        "stream + cheap metrics": lambda: _stream_cheap(b, t),
    }
    if case not in jobs:
        raise SystemExit(f"unknown case {case}")
    return harness.timed(jobs[case], case)


if __name__ == "__main__":
    harness.main(__file__, __doc__, CASES, run_case, reference="task_arithmetic", work_name="bench-analyze", checkpoints=0,
                 also_vs=FLOOR)
