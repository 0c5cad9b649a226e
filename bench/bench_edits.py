"""Wall time and peak RSS of rankedit edits against mergekit's own task_arithmetic.

Builds a random-init pair with the Qwen2.5-0.5B architecture locally (bf16,
about 1 GB per checkpoint; ``--layers N`` for a smaller one), a "tuned" twin and
four checkpoints of a pretend run, then times each case in its own subprocess
(so peak RSS is per case) and reports every edit as a ratio to
``task_arithmetic`` on the same pair in the same run.

    python bench/bench_edits.py                     # full 24 layers
    python bench/bench_edits.py --layers 4 --repeat 3
    python bench/bench_edits.py --cases "cli: rankedit edit rank-k --k 1" --load 1
    python bench/bench_edits.py --updates rl,structured,noise --cases families --layers 3

``--updates`` measures each kind of update on its own pair, in turn: ``rl`` (bf16 RL-like: sparse
changes quantized by bf16 storage, a weak top direction), ``structured`` and ``noise`` (the worst
case); ``--cases families`` is every edit family the CLI builds from a pair, as whole processes,
beside ``mergekit-yaml``.

The ``cli:`` cases time whole processes as a user does (`time rankedit edit
...`): interpreter start-up, imports, input hashing (a fresh, empty
$RANKEDIT_CACHE for each run) and the write, at default settings (no thread
variables: ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` are removed from their
environment). ``--load N`` keeps N processes spinning on a core meanwhile.
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
    "cli: mergekit-yaml": "whole process: mergekit-yaml with a task_arithmetic config, weight 1",
    "cli: rankedit edit rank-k --k 1": "whole process: rankedit edit rank-k BASE TUNED -o OUT --k 1",
    # any other "cli: rankedit edit METHOD [OPTIONS]" case runs that command the same way; with
    # " | after METHOD [OPTIONS]" that other edit runs first, untimed, into the same (then warm) cache
    "cli: rank-k torch default threads": "the same with OMP_NUM_THREADS = cores (rankedit's policy then stands aside)",
    "cli: rank-k one core": "the same with OMP_NUM_THREADS=1 (what the policy chooses on 2 cores, set by hand)",
    "floor: rank-k --k 1": "rank-k's decompositions alone (edit_svd of every edited matrix's dW, one after another)",
    "floor: rank-k --k 1 --exact-svd": "the same with exact=True: what --exact-svd cannot do without",
}


# every edit family built from a pair, as whole processes (``--cases families``); rank-k also with --exact-svd
FAMILIES = ["cli: mergekit-yaml", "cli: rankedit edit rank-k --k 1", "cli: rankedit edit rank-k --k 1 --exact-svd",
            "cli: rankedit edit random-rank-k --k 1", "cli: rankedit edit sub-rank-1",
            "cli: rankedit edit off-principal --k 16", "cli: rankedit edit rank-auto --energy 0.5",
            "cli: rankedit edit mask --source bf16", "cli: rankedit edit sign", "cli: rankedit edit dare --drop 0.9",
            "cli: rankedit edit scale --factor 0.5"]


def run_cli(argv: list[str], case: str, omp: int | None = None, before: list[str] | None = None) -> dict:
    """Wall time and peak RSS of one whole command, with no thread variables and an empty rankedit cache
    (or the cache that the untimed command ``before`` left, run first in the same environment)."""
    import os
    import resource
    import subprocess
    import tempfile
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if omp is not None:
        env["OMP_NUM_THREADS"] = str(omp)
    with tempfile.TemporaryDirectory() as cache:
        env["RANKEDIT_CACHE"] = cache
        if before is not None:
            prior = subprocess.run(before, env=env, capture_output=True, text=True)
            if prior.returncode != 0:
                raise SystemExit(f"{' '.join(before)} failed:\n{prior.stderr[-3000:]}")
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"case": case, "wall_s": wall, "peak_rss_mb": peak, "rss_after_imports_mb": 0.0}


def decompositions(base: Path, tuned: Path, exact: bool) -> None:
    """The floor of rank-k --k 1: ``edit_svd`` of dW for every matrix the edit decomposes, one after another
    at the default threads, its inputs read as the edit reads them (storage noise from the stored dtype)."""
    from safetensors import safe_open

    from rankedit.core.modules import ATTENTION, MLP, classify
    from rankedit.core.svd import edit_svd, storage_noise

    for f in sorted(base.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fb, safe_open(str(tuned / f.name), "pt") as ft:
            for name in fb.keys():
                w0 = fb.get_tensor(name)
                if w0.ndim != 2 or classify(name, tuple(w0.shape)).kind not in (ATTENTION, MLP):
                    continue
                w1 = ft.get_tensor(name)
                edit_svd(w1.float() - w0.float(), 1, 0, exact=exact,
                         noise=lambda w1=w1: storage_noise(w1.float(), w1.dtype))


def run_case(case: str, work: Path, out: Path) -> dict:
    """Executed in a fresh subprocess: one case, its wall time and this process's peak RSS."""
    import shutil

    import rankedit.edits  # noqa: F401  (import cost kept out of the timing)
    from rankedit.edits import build_edit

    b, t = work / "base", work / "tuned"
    cks = [work / f"ck{i}" for i in range(1, 5)]
    bindir = Path(sys.executable).parent
    if case == "cli: mergekit-yaml":
        yml = work / "task_arithmetic.yml"
        yml.write_text(f"merge_method: task_arithmetic\nbase_model: {b}\n"
                       f"models:\n  - model: {t}\n    parameters:\n      weight: 1.0\n")
        return run_cli([str(bindir / "mergekit-yaml"), str(yml), str(out)], case)
    rank_k_cli = [str(bindir / "rankedit"), "edit", "rank-k", str(b), str(t), "-o", str(out), "--k", "1"]
    if case.startswith("cli: rankedit edit "):  # any edit: "cli: rankedit edit METHOD [OPTIONS] [| after METHOD [OPTIONS]]"
        timed, _, after = case.removeprefix("cli: rankedit edit ").partition(" | after ")
        edit = lambda spec, o: [str(bindir / "rankedit"), "edit", *spec.split()[:1], str(b), str(t), "-o", str(o),  # noqa: E731
                                *spec.split()[1:]]
        prior = out.parent / (out.name + "-before")
        shutil.rmtree(prior, ignore_errors=True)  # the bench's own folder, as ``out``
        return run_cli(edit(timed, out), case, before=edit(after, prior) if after else None)
    if case == "cli: rank-k one core":
        return run_cli(rank_k_cli, case, omp=1)
    if case == "cli: rank-k torch default threads":
        import os

        return run_cli(rank_k_cli, case, omp=os.cpu_count())
    jobs = {
        "task_arithmetic": lambda: harness.task_arithmetic(b, [t], out),
        "task_arithmetic x4": lambda: harness.task_arithmetic(b, cks, out),
        "rank-k k=1": lambda: build_edit("rank-k", b, t, out, k=1),
        "off-principal": lambda: build_edit("off-principal", b, t, out, k=16),
        "mask bf16": lambda: build_edit("mask", b, t, out, source="bf16"),
        "extrapolate linear": lambda: build_edit("extrapolate", b, cks, out, mode="linear",
                                                 steps=[100, 200, 300, 400], target_step=1000),
    }
    if case.startswith("floor: rank-k --k 1"):
        return harness.timed(lambda: decompositions(b, t, exact=case.endswith("--exact-svd")), case)
    if case not in jobs:
        raise SystemExit(f"unknown case {case}")
    import mergekit.merge  # noqa: F401
    return harness.timed(jobs[case], case)


if __name__ == "__main__":
    harness.main(__file__, __doc__, CASES, run_case, reference="task_arithmetic", work_name="bench-edits",
                 also_vs="cli: mergekit-yaml", presets={"families": FAMILIES})
