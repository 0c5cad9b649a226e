"""Benchmark: what the organism's runs to merge cost (a second skill, more RL seeds of one base).

Usage: .venv/bin/python bench/bench_organism_merge.py micro          (whole builds)
       .venv/bin/python bench/bench_organism_merge.py small --steps 20 (per step, shortened recipe)

micro: builds the default organism, times adding rl-seed3 to it (``rl_seeds=3``), then builds the
two-skill organism (``skills=id,sum``) from nothing, and prints each phase's training and evaluation
seconds (organism.json) with the wall times. small: a whole small build takes 10-20 minutes, so this
runs the real phases (pinned worker, rankedit.organism.builder) on the small architecture and
recipe with the steps cut to --steps (pretraining 5x that), on the two-skill base, and prints seconds
per step of pretraining and of GRPO on each skill: multiply by the recipe's steps for a whole run.
GRPO from a briefly pretrained base writes longer completions than from the real base (up to its
14-token cap), so its steps cost at least as much as the real run's.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from rankedit.organism import build  # noqa: E402
from rankedit.organism.builder import _claim, _recipe, _run_workers, recipe_hash  # noqa: E402
from rankedit.organism.phases import PHASE_FILE  # noqa: E402


def _phases(d: Path) -> dict:
    return {p.name: {k: json.loads((p / PHASE_FILE).read_text())[k] for k in ("train_s", "eval_s")}
            for p in sorted(d.iterdir()) if (p / PHASE_FILE).is_file()}


def micro(tmp: Path) -> dict:
    t = time.time()
    one = build(size="micro", seed=0, out=tmp / "one", progress=False)
    default_wall = time.time() - t
    t = time.time()
    build(size="micro", seed=0, out=one, progress=False, rl_seeds=3)
    seed3_wall = time.time() - t
    t = time.time()
    two = build(size="micro", seed=0, out=tmp / "two", progress=False, skills="id,sum")
    two_wall = time.time() - t
    acc = json.loads((two / "organism.json").read_text())["accuracy"]
    return {"default build wall_s": round(default_wall, 1), "default phases": _phases(one),
            "adding rl-seed3 wall_s": round(seed3_wall, 1),
            "two-skill build wall_s": round(two_wall, 1), "two-skill phases": _phases(two), "two-skill accuracy": acc}


def small(tmp: Path, steps: int) -> dict:
    r = copy.deepcopy(_recipe("small", 0, "cpu", ("id", "sum")))
    r["pretrain"].update(steps=5 * steps, warmup=steps // 2)
    r["rl"]["steps"] = r["sft"]["steps"] = steps
    r["eval_limit"] = 500
    out = tmp / "small"
    _claim(out, recipe_hash(r))
    t = time.time()
    _run_workers([["base", "rl", "rl-sum", "rl-seed3"]], out, r, progress=False)  # one worker, in order
    wall = time.time() - t
    ph = _phases(out)
    per_step = {p: round(v["train_s"] / (5 * steps if p == "base" else steps), 3) for p, v in ph.items()}
    return {"steps": steps, "wall_s": round(wall, 1), "phases": ph, "train_s_per_step": per_step,
            "eval_s (500 problems a task)": {p: v["eval_s"] for p, v in ph.items()}}


if __name__ == "__main__":
    size = sys.argv[1] if len(sys.argv) > 1 else "micro"
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 20
    with tempfile.TemporaryDirectory() as tmp:
        res = micro(Path(tmp)) if size == "micro" else small(Path(tmp), steps)
    print(json.dumps({"size": size, "load_average": os.getloadavg(), **res}, indent=1), flush=True)
