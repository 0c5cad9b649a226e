"""What the Ray executor costs per task, on this machine, against the local executor.

1. Ray itself: ``ray.init`` of a local instance, the first task (a worker
   process starts), and the round trip of a no-op task on a warm worker.
2. The pipeline: the micro organism's models and three edits of
   examples/organism-micro.yaml (score limit 40, no analysis), run locally and
   then under a one-CPU Ray instance, each into a fresh OUT with a fresh cache,
   so both do the same work one task at a time; the difference of the edits and
   scoring stages over the number of tasks is Ray's overhead per task
   (scheduling, a worker's imports, the result read back through the cache).
   A rerun under Ray, where every edit and score is reused, shows the cost of
   the driver's cache checks.

    python bench/bench_ray.py          # about 5 minutes on 2 busy cores
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EDITS = ("rank1", "rank1-random", "mask-bf16")


def noop(x: int) -> int:
    return x


def ray_alone(ray) -> dict:
    t = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    init_s = time.perf_counter() - t
    f = ray.remote(noop)
    t = time.perf_counter()
    ray.get(f.remote(0))
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(50):
        ray.get(f.remote(i))
    return {"init_s": init_s, "first_task_s": first_s, "noop_round_trip_ms": (time.perf_counter() - t) / 50 * 1e3}


def pipeline_runs(tmp: Path) -> dict:
    from rankedit.pipeline import run as pipeline
    from rankedit.organism import build

    reuse = os.environ.get("RANKEDIT_TEST_ORGANISM")  # the tests' organism folder, if built already
    org = build(size="micro", seed=0, out=Path(reuse) if reuse else None, progress=False)
    micro = yaml.safe_load((ROOT / "examples" / "organism-micro.yaml").read_text())
    plan = {"name": "bench", "base": str(org / "base"), "tuned": str(org / "rl"), "sft": str(org / "sft"),
            "edits": [e for e in micro["edits"] if e["name"] in EDITS],
            "score": {**micro["score"], "limit": 40}, "analyze": {"enabled": False}}
    p = tmp / "plan.yaml"
    p.write_text(yaml.safe_dump(plan))
    n_tasks = len(EDITS) + 3 + len(EDITS)  # edit builds; scorings of base, tuned, sft and the edits
    out = {}
    for name, kw in (("local", {}), ("ray", {"executor": "ray"}), ("ray, all cached", {"executor": "ray"})):
        if name != "ray, all cached":
            os.environ["RANKEDIT_CACHE"] = str(tmp / f"cache-{name}")
        t = time.perf_counter()
        report = pipeline.run(p, tmp / f"out-{name.split(',')[0]}", quiet=True, **kw)
        out[name] = {"total_s": round(time.perf_counter() - t, 1), **report["timings_s"]}
    out["tasks"] = n_tasks
    out["overhead_per_task_s"] = round(
        sum(out["ray"][s] - out["local"][s] for s in ("edits", "scoring")) / n_tasks, 2)
    return out


def main() -> None:
    import ray

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as d:
        os.environ["RANKEDIT_CACHE"] = str(Path(d) / "cache-org")
        res = {"ray": ray_alone(ray)}  # the executor finds this one-CPU instance running and uses it
        res["pipeline"] = pipeline_runs(Path(d))
        ray.shutdown()
    res["load_1min"] = os.getloadavg()[0]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
