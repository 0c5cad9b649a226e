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

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "task_arithmetic": "mergekit task_arithmetic, weight 1 (the reference)",
    "rank-k k=1": "rankedit edit rank-k --k 1",
    "off-principal": "rankedit edit off-principal --k 16",
    "mask bf16": "rankedit edit mask --source bf16",
    "extrapolate linear": "rankedit edit extrapolate --mode linear, 4 checkpoints",
    "task_arithmetic x4": "mergekit task_arithmetic over the same 4 checkpoints (same bytes read as extrapolate)",
}


def build_inputs(work: Path, layers: int) -> dict:
    import torch

    from rankedit import synthetic

    work.mkdir(parents=True, exist_ok=True)
    base = work / "base"
    if not (base / "config.json").exists():
        cfg = dict(synthetic.QWEN25_05B, num_hidden_layers=layers)
        synthetic.build_random(base, "qwen2", seed=0, dtype=torch.bfloat16, **cfg)
    paths = {"base": base}
    for i, name in enumerate(["tuned", "ck1", "ck2", "ck3", "ck4"]):
        p = work / name
        if not (p / "config.json").exists():
            # RL-sized updates (1e-3 of each matrix's RMS): about half the bf16 entries change
            scale = 1e-3 if name == "tuned" else 3e-4 * i
            synthetic.perturb(base, p, scale=scale, seed=10 + i, dtype=torch.bfloat16)
        paths[name] = p
    return paths


def run_case(case: str, work: Path, out: Path) -> dict:
    """Executed in a fresh subprocess: one case, its wall time and this process's peak RSS."""
    import rankedit.edits  # noqa: F401  (import cost kept out of the timing)
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from rankedit.edits import build_edit

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    b, t = work / "base", work / "tuned"
    cks = [work / f"ck{i}" for i in range(1, 5)]
    t0 = time.perf_counter()
    if case.startswith("task_arithmetic"):
        models = [t] if case == "task_arithmetic" else cks
        w = 1.0 / len(models)
        cfg = MergeConfiguration.model_validate({
            "merge_method": "task_arithmetic", "base_model": str(b),
            "models": [{"model": str(m), "parameters": {"weight": w}} for m in models]})
        run_merge(cfg, str(out), MergeOptions(quiet=True, copy_tokenizer=False, write_model_card=False))
    elif case == "rank-k k=1":
        build_edit("rank-k", b, t, out, k=1)
    elif case == "off-principal":
        build_edit("off-principal", b, t, out, k=16)
    elif case == "mask bf16":
        build_edit("mask", b, t, out, source="bf16")
    elif case == "extrapolate linear":
        build_edit("extrapolate", b, cks, out, mode="linear", steps=[100, 200, 300, 400], target_step=1000)
    else:
        raise SystemExit(f"unknown case {case}")
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"case": case, "wall_s": wall, "peak_rss_mb": peak / 1024, "rss_after_imports_mb": rss_before / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=24, help="decoder layers (24 = the real Qwen2.5-0.5B)")
    ap.add_argument("--work", type=Path, default=None, help="where the checkpoints live (default: $RANKEDIT_CACHE/bench-edits-L<layers>)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per case (the median is reported)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._one:
        print(json.dumps(run_case(args._one, args.work, args._out)))
        return

    from rankedit.cache import cache_root

    work = args.work or cache_root() / f"bench-edits-L{args.layers}"
    t0 = time.perf_counter()
    build_inputs(work, args.layers)
    print(f"inputs ready in {work} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    size = sum(f.stat().st_size for f in (work / "base").glob("*.safetensors")) / 1e9
    for d in work.iterdir():  # warm the page cache so the first case is not penalised
        for f in d.glob("*.safetensors"):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass

    cases = [c.strip() for c in args.cases.split(",")]
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    for r in range(args.repeat):
        for c in cases:  # interleaved, so drift in machine load hits every case alike
            out = work / "out"
            proc = subprocess.run([sys.executable, __file__, "--_one", c, "--work", str(work), "--_out", str(out)],
                                  capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            if proc.returncode != 0:
                raise SystemExit(f"{c} failed:\n{proc.stderr[-3000:]}")
            runs[c].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  run {r + 1}: {c}: {runs[c][-1]['wall_s']:.2f} s, {runs[c][-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)

    def med(c, key):
        return statistics.median(x[key] for x in runs[c])

    ref_t, ref_m = med("task_arithmetic", "wall_s"), med("task_arithmetic", "peak_rss_mb")
    rows = []
    for c in cases:
        rows.append({"case": c, "what": CASES[c], "wall_s": med(c, "wall_s"), "peak_rss_mb": med(c, "peak_rss_mb"),
                     "rss_after_imports_mb": med(c, "rss_after_imports_mb"),
                     "time_ratio": med(c, "wall_s") / ref_t, "rss_ratio": med(c, "peak_rss_mb") / ref_m})
    result = {"layers": args.layers, "checkpoint_gb": size, "repeat": args.repeat, "cpu_count": os.cpu_count(), "rows": rows}
    print(f"\nQwen2.5-0.5B architecture, {args.layers} layers, {size:.2f} GB per checkpoint (bf16), median of {args.repeat}")
    print(f"{'case':<22}{'wall s':>9}{'x task_arith':>14}{'peak RSS MB':>13}{'x task_arith':>14}")
    for r in rows:
        print(f"{r['case']:<22}{r['wall_s']:>9.2f}{r['time_ratio']:>14.2f}{r['peak_rss_mb']:>13.0f}{r['rss_ratio']:>14.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
