"""Shared parts of the bench/ scripts: the locally built Qwen2.5-0.5B-architecture inputs,
one subprocess per measured case (so peak RSS is per case), and the ratio table.

A bench script defines CASES (name -> description) and ``run_case(case, work, out)``
(the timed work, executed inside the child) and calls ``main(...)``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


# The three kinds of update ``--updates`` compares: (structured, spike, density) of ``synthetic.perturb``
UPDATES = {
    # bf16 RL-like: sparse changes (10% of entries, a few bf16 ulps each after storage) with a weak top
    # direction (20% of the norm before storage; rank-1 energy ‖dW_1‖/‖dW‖ 0.065-0.077 as stored)
    "rl": (0.0, 0.2, 0.1),
    "structured": (0.5, 0.0, 1.0),  # half the energy in a rank-8 part with halving values: clear top directions
    "noise": (0.0, 0.0, 1.0),  # dense Gaussian: a flat spectrum, no identifiable top direction (the worst case)
    # issue #32's pair: a different update per module on a Qwen2-shaped model (hidden 1536, MLP 4224): built by
    # ``mixed_pair`` (its own shapes and per-module updates), not by ``synthetic.perturb``
    "mixed": None,
}
# issue #32's shapes: Qwen2-like, hidden 1536, MLP 4224 (12 heads of 128, 2 key/value heads), a 4096-token
# vocabulary (the embeddings are not what is measured)
MIXED_CONFIG = dict(hidden_size=1536, intermediate_size=4224, num_attention_heads=12, num_key_value_heads=2,
                    vocab_size=4096, max_position_embeddings=4096, rope_theta=1000000.0, rms_norm_eps=1e-6,
                    tie_word_embeddings=True)


def mixed_update(name: str, w, gen):
    """Issue #32's update of one bf16 matrix (float32 delta): q_proj/up_proj 10% of entries changed at random,
    o_proj/down_proj dense Gaussian changes, v_proj changes mostly below bf16 resolution, k_proj/gate_proj an
    exact rank-1; sizes relative to the matrix's RMS, RL-sized."""
    import torch

    wf = w.float()
    rms = float(wf.pow(2).mean().sqrt())
    m, n = wf.shape
    if any(t in name for t in ("q_proj", "up_proj")):
        return 3e-3 * rms * torch.randn(m, n, generator=gen) * (torch.rand(m, n, generator=gen) < 0.1)
    if any(t in name for t in ("o_proj", "down_proj")):
        return 1e-3 * rms * torch.randn(m, n, generator=gen)
    if "v_proj" in name:
        return 2e-4 * rms * torch.randn(m, n, generator=gen)  # bf16 keeps about 1 in 25 of these
    a, b = torch.randn(m, 1, generator=gen), torch.randn(1, n, generator=gen)
    return 1e-3 * rms * (a @ b) / float(a.norm() * b.norm()) * (m * n) ** 0.5  # k_proj, gate_proj: exact rank-1


def mixed_pair(work: Path, layers: int) -> dict:
    """Base (random init, bf16) and its tuned twin with ``mixed_update`` on every attention/MLP matrix,
    written one file at a time."""
    import torch
    from safetensors.torch import load_file, save_file

    from rankedit.testing import synthetic

    work.mkdir(parents=True, exist_ok=True)
    base, tuned = work / "base", work / "tuned"
    if not (base / "config.json").exists():
        synthetic.build_random(base, "qwen2", seed=0, dtype=torch.bfloat16, **dict(MIXED_CONFIG, num_hidden_layers=layers))
    if not (tuned / "config.json").exists():
        shutil.copytree(base, tuned, dirs_exist_ok=True)
        gen = torch.Generator().manual_seed(32)
        for f in sorted(base.glob("*.safetensors")):
            tensors = load_file(str(f))
            out = {k: ((w.float() + mixed_update(k, w, gen)).to(w.dtype) if w.ndim == 2 and "proj" in k else w)
                   for k, w in tensors.items()}
            save_file(out, str(tuned / (f.name + ".tmp")), metadata={"format": "pt"})
            (tuned / (f.name + ".tmp")).replace(tuned / f.name)
    return {"base": base, "tuned": tuned}


def build_inputs(work: Path, layers: int, checkpoints: int = 4, structured: float = 0.0,
                 base_decay: float = 0.0, spike: float = 0.0, density: float = 1.0) -> dict:
    """base (random init, bf16), its tuned twin (1e-3 RMS update) and `checkpoints` run checkpoints.

    ``structured``: the share of each update's energy in a rank-8 part with halving singular
    values (``synthetic.perturb``); 0 is pure noise, whose flat spectrum sends every SVD edit
    to its exact fallback (no identifiable top direction), the worst case. ``base_decay``:
    the base's matrices get singular values s_i ∝ i^-base_decay (``synthetic.decay_spectrum``),
    as trained weights decay; 0 keeps the random init's flat spectrum. ``spike``, ``density``: a weak
    rank-1 direction over sparse changes (``synthetic.perturb``; ``UPDATES["rl"]``)."""
    import torch

    from rankedit.testing import synthetic

    work.mkdir(parents=True, exist_ok=True)
    base = work / "base"
    if not (base / "config.json").exists():
        cfg = dict(synthetic.QWEN25_05B, num_hidden_layers=layers)
        synthetic.build_random(base, "qwen2", seed=0, dtype=torch.bfloat16, **cfg)
        if base_decay:
            synthetic.decay_spectrum(base, base_decay)
    paths = {"base": base}
    for i, name in enumerate(["tuned"] + [f"ck{j}" for j in range(1, checkpoints + 1)]):
        p = work / name
        if not (p / "config.json").exists():
            # RL-sized updates (1e-3 of each matrix's RMS): about half the bf16 entries change
            scale = 1e-3 if name == "tuned" else 3e-4 * i
            synthetic.perturb(base, p, scale=scale, seed=10 + i, dtype=torch.bfloat16, structured=structured,
                              spike=spike, density=density)
        paths[name] = p
    return paths


def task_arithmetic(base: Path, models: list[Path], out: Path) -> None:
    """mergekit's own task_arithmetic (weights summing to 1): the peer every case is compared with."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    w = 1.0 / len(models)
    cfg = MergeConfiguration.model_validate({
        "merge_method": "task_arithmetic", "base_model": str(base),
        "models": [{"model": str(m), "parameters": {"weight": w}} for m in models]})
    run_merge(cfg, str(out), MergeOptions(quiet=True, copy_tokenizer=False, write_model_card=False))


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM starts afresh at exec; ru_maxrss would carry the
    parent's peak over (the parent built the inputs), so it is only the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], None], case: str) -> dict:
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return {"case": case, "wall_s": wall, "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": rss_before}


def _measure(script: str, chosen: list[str], runs: dict, work: Path, repeat: int) -> None:
    for r in range(repeat):
        for c in chosen:  # interleaved, so drift in machine load hits every case alike
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)  # the bench's own folder: every case writes into a new one
            proc = subprocess.run([sys.executable, script, "--_one", c, "--work", str(work), "--_out", str(out)],
                                  capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            if proc.returncode != 0:
                raise SystemExit(f"{c} failed:\n{proc.stderr[-3000:]}")
            runs[c].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  run {r + 1}: {c}: {runs[c][-1]['wall_s']:.2f} s, {runs[c][-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)


def main(script: str, doc: str, cases: dict[str, str], run_case: Callable[[str, Path, Path], dict],
         reference: str, work_name: str, checkpoints: int = 4, also_vs: str | None = None,
         build: Callable[..., dict] | None = None, title: str = "Qwen2.5-0.5B architecture",
         default_layers: int = 24, presets: dict[str, list[str]] | None = None) -> dict:
    """``build(work, layers, checkpoints, structured, base_decay)`` writes the inputs (default ``build_inputs``,
    which also takes the update kind's spike and density)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=default_layers, help=f"decoder layers (default {default_layers})")
    ap.add_argument("--work", type=Path, default=None, help=f"where the checkpoints live (default: $RANKEDIT_CACHE/{work_name}-L<layers>)")
    ap.add_argument("--structured", type=float, default=0.0,
                    help="share of each update's energy in a rank-8 part (0: pure noise, the worst case for SVD edits)")
    ap.add_argument("--base-decay", type=float, default=0.0,
                    help="base spectrum s_i ∝ i^-ALPHA, as trained weights decay (0: the random init's flat one)")
    ap.add_argument("--updates", default=None,
                    help="comma-separated kinds of update, each measured on its own pair in turn: "
                         + ", ".join(UPDATES) + " (rl: bf16 RL-like, sparse quantized with a weak top direction; "
                         "overrides --structured)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per case (the median is reported)")
    ap.add_argument("--cases", default=",".join(cases), help="comma-separated subset of: " + ", ".join(cases)
                    + "".join(f"; or {name}: {', '.join(c)}" for name, c in (presets or {}).items()))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--load", type=int, default=0, help="keep N processes spinning on a core while measuring")
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._one:
        print(json.dumps(run_case(args._one, args.work, args._out)))
        return
    if presets and args.cases in presets:
        args.cases = ",".join(presets[args.cases])

    if args.updates:
        kinds = [u.strip() for u in args.updates.split(",")]
        bad = [u for u in kinds if u not in UPDATES]
        if bad:
            raise SystemExit(f"unknown update kind {bad[0]}; choose among {', '.join(UPDATES)}")
        results = {}
        for kind in kinds:
            print(f"\n=== update: {kind} ===")
            results[kind] = _one_pair(args, script, cases, reference, work_name, checkpoints, also_vs, kind, build, title)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return results
    result = _one_pair(args, script, cases, reference, work_name, checkpoints, also_vs, None, build, title)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _one_pair(args, script: str, cases: dict[str, str], reference: str, work_name: str, checkpoints: int,
              also_vs: str | None, kind: str | None, build: Callable[..., dict] | None = None,
              title: str = "Qwen2.5-0.5B architecture") -> dict:
    """Build (or find) one pair and measure every chosen case on it, side by side; print the table."""
    from rankedit.core.cache_dir import cache_root

    structured, spike, density = (UPDATES[kind] or (0.0, 0.0, 1.0)) if kind else (args.structured, 0.0, 1.0)
    work = args.work / kind if args.work and kind else args.work
    work = work or cache_root() / (f"{work_name}-L{args.layers}"
                                   + (f"-s{structured:g}" if structured else "")
                                   + (f"-spike{spike:g}-dens{density:g}" if spike else "")
                                   + (f"-d{args.base_decay:g}" if args.base_decay else ""))
    t0 = time.perf_counter()
    if kind == "mixed":
        work = work.with_name(work.name + "-mixed")
        mixed_pair(work, args.layers)
    elif build is not None:
        build(work, args.layers, checkpoints, structured, args.base_decay)
    else:
        build_inputs(work, args.layers, checkpoints, structured, args.base_decay, spike, density)
    print(f"inputs ready in {work} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    size = sum(f.stat().st_size for f in (work / "base").glob("*.safetensors")) / 1e9
    for d in work.iterdir():  # warm the page cache so the first case is not penalised
        for f in d.glob("*.safetensors"):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass

    chosen = [c.strip() for c in args.cases.split(",")]
    if reference not in chosen:
        chosen.insert(0, reference)
    if also_vs and also_vs not in chosen:
        chosen.insert(1, also_vs)
    runs: dict[str, list[dict]] = {c: [] for c in chosen}
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        _measure(script, chosen, runs, work, args.repeat)
    finally:
        for p in burners:
            p.kill()
            p.wait()

    def med(c, key):
        return statistics.median(x[key] for x in runs[c])

    ref_t, ref_m = med(reference, "wall_s"), med(reference, "peak_rss_mb")
    rows = [{"case": c, "what": cases.get(c, c), "wall_s": med(c, "wall_s"), "peak_rss_mb": med(c, "peak_rss_mb"),
             "rss_after_imports_mb": med(c, "rss_after_imports_mb"),
             "time_ratio": med(c, "wall_s") / ref_t, "rss_ratio": med(c, "peak_rss_mb") / ref_m} for c in chosen]
    if also_vs:
        for r in rows:
            r[f"time_ratio_{also_vs}"] = r["wall_s"] / med(also_vs, "wall_s")
    result = {"update": kind or ("structured" if structured else "noise"), "structured": structured, "spike": spike,
              "density": density, "layers": args.layers, "checkpoint_gb": size, "repeat": args.repeat,
              "cpu_count": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "background_load": args.load,
              "load_average": os.getloadavg(), "rows": rows}
    print(f"\nbackground processes spinning: {args.load}")
    shape = "issue #32's Qwen2-like shapes (hidden 1536, MLP 4224)" if kind == "mixed" else title
    print(f"{shape}, {args.layers} layers, {size:.2f} GB per checkpoint (bf16), median of {args.repeat}")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    extra = f"{'x ' + also_vs:>24}" if also_vs else ""
    print(f"{'case':<24}{'wall s':>9}{'x ' + reference:>20}{'peak RSS MB':>13}{'x ' + reference:>20}{extra}")
    for r in rows:
        extra = f"{r[f'time_ratio_{also_vs}']:>24.2f}" if also_vs else ""
        print(f"{r['case']:<24}{r['wall_s']:>9.2f}{r['time_ratio']:>20.2f}{r['peak_rss_mb']:>13.0f}{r['rss_ratio']:>20.2f}{extra}")
    return result
