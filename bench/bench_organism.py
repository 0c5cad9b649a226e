"""Benchmark: wall time of `rankedit organism build` from scratch, and of a cached rebuild.

Usage: .venv/bin/python bench/bench_organism.py [micro|small ...]   (default: micro small)
Builds into a fresh temporary directory, prints the per-phase timings and the
greedy accuracies from organism.json, as recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from rankedit.organism import build  # noqa: E402


def bench(size: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / size
        t = time.time()
        build(size=size, seed=0, out=out, progress=False)
        wall = time.time() - t
        t = time.time()
        build(size=size, seed=0, out=out, progress=False)
        rebuild = time.time() - t
        meta = json.loads((out / "organism.json").read_text())
    rewards = meta["rl_reward_per_step"]["rl"]
    tenth = max(1, len(rewards) // 10)
    return {
        "size": size, "wall_s": round(wall, 1), "rebuild_s": round(rebuild, 3),
        "phases_s": meta["timings_s"], "accuracy": meta["accuracy"],
        "rl_reward_first_last_10pct": [round(sum(rewards[:tenth]) / tenth, 3), round(sum(rewards[-tenth:]) / tenth, 3)],
    }


if __name__ == "__main__":
    for size in sys.argv[1:] or ["micro", "small"]:
        print(json.dumps(bench(size), indent=1), flush=True)
