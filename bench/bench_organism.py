"""Benchmark: wall time of `rankedit organism build` from scratch, and of a cached rebuild.

Usage: .venv/bin/python bench/bench_organism.py [micro|small ...]   (default: micro small)
Builds into a fresh temporary directory, prints the per-phase timings and the
greedy accuracies from organism.json, as recorded in BENCHMARKS.md. cpu_s is
the CPU time of this process and its workers (user + system): on a shared
machine it moves less with the other jobs than the wall time does.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from rankedit.organism import build  # noqa: E402


def _cpu_s() -> float:
    return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def bench(size: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / size
        t, c = time.time(), _cpu_s()
        build(size=size, seed=0, out=out, progress=False)
        wall, cpu = time.time() - t, _cpu_s() - c
        t = time.time()
        build(size=size, seed=0, out=out, progress=False)
        rebuild = time.time() - t
        meta = json.loads((out / "organism.json").read_text())
    rewards = meta["rl_reward_per_step"]["rl"]
    tenth = max(1, len(rewards) // 10)
    return {
        "size": size, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "rebuild_s": round(rebuild, 3),
        "phases_s": meta["timings_s"], "accuracy": meta["accuracy"],
        "rl_reward_first_last_10pct": [round(sum(rewards[:tenth]) / tenth, 3), round(sum(rewards[-tenth:]) / tenth, 3)],
    }


if __name__ == "__main__":
    for size in sys.argv[1:] or ["micro", "small"]:
        print(json.dumps(bench(size), indent=1), flush=True)
