"""Exact patches as whole processes: `rankedit patch` and `rankedit apply` beside copying the
checkpoint, and the patch's bytes beside the full checkpoint and zstd of its weight files.

Inputs, side by side in one run:

- ``micro-rl``: the micro organism's base and its RL model (``--organism DIR``, else
  ``rankedit.organism.build(size="micro")``), and its RL run's checkpoints as a chain
  (``rankedit patch BASE --run-dir RL/checkpoints``);
- ``rl-like``: a Qwen2.5-0.5B-architecture pair with ``--layers`` layers, bf16, its tuned
  twin a 1e-3 RMS update of every attention/MLP matrix (about a quarter to a half of those
  bf16 entries change; the embedding and norms do not), as ``bench/harness.py`` builds it.

Per input: ``cp -r`` of TUNED (the floor a patch is compared with), zstd (level 3, the
zstandard package) of TUNED's weight files, ``rankedit patch`` and ``rankedit apply`` (each
its own process, so start-up is included: ``rankedit --version`` times it alone, and
``python -c "import torch"`` the import every command that reads tensors pays), and bytes:
the patch's payload, the patch folder on disk, TUNED's weight files and their zstd. Every
rebuilt checkpoint is checked tensor by tensor (sha256) against TUNED. Each timed case runs
``--repeat`` times, the validation memo in a cache folder of the bench's own (the first run
fills it). Then, on the ``rl-like`` pair in this one warm process (torch imported, page cache
hot), ``--repeat`` + 1 times, interleaved, in wall and CPU seconds (``in_process``): encoding
beside ``safetensors.save_file`` of TUNED's tensors, rebuilding them in memory
(``decode_patch``) beside reading TUNED's weight files, and ``apply`` beside a read and a write
of TUNED and ``shutil.copytree``. With ``--frontier REPORT`` (a compress.json or a run's
report.json, e.g. docs/organism-compress.json; read, nothing rerun): the report's smallest lossy
edit whose R interval covers 1 (else R >= 0.95), beside the organism's exact patch, their ratio
only when the report scored the same organism.

    python bench/bench_patch.py --layers 2 --repeat 3 --frontier docs/organism-compress.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def _run(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return wall


def _du(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _zstd(files: list[Path]) -> tuple[int, float]:
    import zstandard

    t0 = time.perf_counter()
    n = 0
    for f in files:
        with open(f, "rb") as src:
            n += len(zstandard.ZstdCompressor(level=3).compress(src.read()))
    return n, time.perf_counter() - t0


def _same_tensors(a: Path, b: Path) -> bool:
    from rankedit.files.checkpoint import Checkpoint
    from rankedit.files.patch_format import tensor_sha256

    ca, cb = Checkpoint(a), Checkpoint(b)
    return set(ca.names) == set(cb.names) and all(tensor_sha256(ca.get(n)) == tensor_sha256(cb.get(n)) for n in ca.names)


def bench_pair(label: str, base: Path, tuned: Path, work: Path, repeat: int, env: dict) -> dict:
    from rankedit.files.checkpoint import Checkpoint

    rk = [sys.executable, "-m", "rankedit"]
    work.mkdir(parents=True, exist_ok=True)
    weights = Checkpoint(tuned).weight_files
    full = sum(f.stat().st_size for f in weights)
    zbytes, zsec = _zstd(weights)
    res = {"input": label, "checkpoint_bytes": full, "zstd_bytes": zbytes, "zstd_s": zsec,
           "startup_s": [], "import_torch_s": [], "copy_s": [], "patch_s": [], "apply_s": []}
    for _ in range(repeat):
        for key, argv, out in (("startup_s", [*rk, "--version"], None),
                               ("import_torch_s", [sys.executable, "-c", "import torch, safetensors.torch"], None),
                               ("copy_s", ["cp", "-r", str(tuned), str(work / "copy")], work / "copy"),
                               ("patch_s", [*rk, "patch", str(base), str(tuned), "-o", str(work / "p"), "--quiet"], work / "p"),
                               ("apply_s", [*rk, "apply", str(work / "p"), str(base), "-o", str(work / "a"), "--quiet"], work / "a")):
            if out is not None and key != "apply_s":
                shutil.rmtree(out, ignore_errors=True)
            if key == "apply_s":
                shutil.rmtree(work / "a", ignore_errors=True)
            res[key].append(_run(argv, env))
    man = json.loads((work / "p" / "patch.json").read_text())
    res.update(patch_bytes=man["patch_bytes"], patch_folder_bytes=_du(work / "p"), encodings=man["encodings"],
               bit_exact=_same_tensors(work / "a", tuned))
    return res


def in_process(base: Path, tuned: Path, work: Path, repeat: int) -> dict:
    """patch and apply in one warm process (torch imported, page cache hot), interleaved with what they
    are held to, each timed in wall seconds and in this process's CPU seconds (all threads; on a loaded
    machine the CPU seconds are the steadier of the two):

    - ``patch_s`` beside ``save_file_s``: encoding against writing TUNED's tensors (already in memory)
      with ``safetensors.save_file``;
    - ``decode_s`` beside ``read_s``: rebuilding TUNED's tensors in memory from the patch and BASE's
      tensors already in memory (``decode_patch``, as an inference engine receives a step) against
      reading TUNED's weight files from disk (their bytes, the floor of any reader);
    - ``apply_s`` (the whole command: check, rebuild, write, check the output) beside
      ``read_write_s`` (``load_file`` and ``save_file``: TUNED read and written again) and ``copytree_s``.
    """
    os.environ["RANKEDIT_CACHE"] = str(work.parent / "cache")
    from safetensors.torch import load_file, save_file

    from rankedit.cli.main import run_command
    from rankedit.files.checkpoint import Checkpoint
    from rankedit.files.patch_apply import decode_patch

    files = Checkpoint(tuned).weight_files
    base_tensors = {k: v for f in Checkpoint(base).weight_files for k, v in load_file(f).items()}
    tuned_tensors = [load_file(f) for f in files]
    ops = {
        "patch_s": lambda: run_command(["patch", str(base), str(tuned), "-o", str(work / "p"), "--quiet"]),
        "save_file_s": lambda: [save_file(t, str(work / "copy" / f"again-{f.name}")) for t, f in zip(tuned_tensors, files)],
        "decode_s": lambda: decode_patch(work / "p", base_tensors),
        "read_s": lambda: [f.read_bytes() for f in files],
        "apply_s": lambda: run_command(["apply", str(work / "p"), str(base), "-o", str(work / "a"), "--quiet"]),
        "read_write_s": lambda: [save_file(load_file(f), str(work / "copy" / f"again-{f.name}")) for f in files],
        "copytree_s": lambda: shutil.copytree(tuned, work / "copy2"),
    }
    res = {"input": "rl-like, in one process", **{k: [] for k in ops}, **{k.replace("_s", "_cpu_s"): [] for k in ops}}
    for _ in range(repeat):
        for d in ("p", "a", "copy", "copy2"):
            shutil.rmtree(work / d, ignore_errors=True)
        (work / "copy").mkdir(parents=True)
        for key, fn in ops.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            res[key].append(round(time.perf_counter() - t0, 4))
            res[key.replace("_s", "_cpu_s")].append(round(time.process_time() - c0, 4))
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items() if isinstance(v, list)}
    res["ratios_of_medians"] = {
        f"{a}/{b}": round(med[a] / med[b], 3) for a, b in (
            ("patch_s", "save_file_s"), ("patch_cpu_s", "save_file_cpu_s"), ("decode_s", "read_s"),
            ("decode_cpu_s", "read_cpu_s"), ("apply_s", "read_write_s"), ("apply_cpu_s", "read_write_cpu_s"))}
    return res


def smallest_lossy(report: Path) -> dict | None:
    """The smallest lossy edit of R equal to the exact patch's (1) on the frontier a report holds:
    the fewest stored bytes among edits whose R interval covers 1, else among those with R >= 0.95
    (read from a ``rankedit compress`` compress.json or a ``rankedit run`` report; nothing is rerun)."""
    doc = json.loads(report.read_text())
    rows = []
    if "candidates" in doc:  # compress.json: one row per candidate, R per judged task (the worst decides)
        for c in doc["candidates"]:
            rs = [c["retention"].get(t) or {} for t in doc["judged_tasks"]]
            if rs and all(r.get("value") is not None for r in rs):
                rows.append({"edit": c["label"], "bytes": c["stored_bytes"], "R": min(r["value"] for r in rs),
                             "ci_low": min(r["ci_low"] for r in rs), "ci_high": min(r["ci_high"] for r in rs)})
    else:  # a run's report: its frontier rows, one per edit and task
        for r in doc.get("frontier") or []:
            if not r["control"] and r.get("retention") is not None and r.get("storage_bytes"):
                rows.append({"edit": r["edit"], "bytes": r["storage_bytes"], "R": r["retention"],
                             "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
    for rule, keep in (("R's 95% interval covers 1", lambda r: r["ci_low"] <= 1 <= r["ci_high"]),
                       ("R >= 0.95", lambda r: r["R"] >= 0.95)):
        hits = [r for r in rows if keep(r)]
        if hits:
            return {**min(hits, key=lambda r: (r["bytes"], -r["R"])), "rule": rule, "report": str(report)}
    return None


def bench_chain(base: Path, run_dir: Path, work: Path, env: dict) -> dict:
    from rankedit.analysis.trajectory import run_dir_checkpoints

    cks, steps = run_dir_checkpoints(run_dir)
    out = work / "chain"
    shutil.rmtree(out, ignore_errors=True)
    wall = _run([sys.executable, "-m", "rankedit", "patch", str(base), "--run-dir", str(run_dir), "-o", str(out),
                 "--quiet"], env)
    man = json.loads((out / "patch.json").read_text())
    shutil.rmtree(work / "a", ignore_errors=True)
    apply_wall = _run([sys.executable, "-m", "rankedit", "apply", str(out), str(base), "-o", str(work / "a"), "--quiet"], env)
    full = sum(sum(f.stat().st_size for f in ck.glob("*.safetensors")) for ck in cks)
    return {"input": "micro-rl chain", "checkpoints": len(cks), "checkpoints_bytes": full,
            "chain_patch_bytes": sum(ln["patch_bytes"] for ln in man["links"]), "chain_folder_bytes": _du(out),
            "against": [ln["against"] for ln in man["links"]], "patch_s": wall, "apply_last_s": apply_wall,
            "bit_exact_last": _same_tensors(work / "a", cks[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("bench-work") / "bench-patch")
    ap.add_argument("--organism", type=Path, default=None, help="a built micro organism (default: build it)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--frontier", type=Path, action="append", default=[],
                    help="a frontier report (compress.json or a run's report.json, e.g. docs/organism-compress.json): "
                         "the micro/small organism patch is set beside its smallest lossy edit of R covering 1")
    a = ap.parse_args()
    work = a.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", RANKEDIT_CACHE=str(work / "cache"))
    org = a.organism
    if org is None:
        from rankedit.organism import build

        org = build(size="micro", seed=0, progress=False)
    results = [bench_pair("micro-rl", org / "base", org / "rl", work / "micro", a.repeat, env)]
    results.append(bench_chain(org / "base", org / "rl" / "checkpoints", work / "micro", env))
    pair = harness.build_inputs(work / "inputs", a.layers, checkpoints=0)
    results.append(bench_pair("rl-like", pair["base"], pair["tuned"], work / "rl-like", a.repeat, env))
    results.append(in_process(pair["base"], pair["tuned"], work / "rl-like", a.repeat + 1))
    exact = results[0]["patch_bytes"]
    for report in a.frontier:  # the exact patch beside the report's smallest lossy edit of R = 1
        lossy = smallest_lossy(report)
        of = Path(json.loads(report.read_text())["models"]["base"]).parent.name  # e.g. small-seed0-<hash>
        same = of == Path(org).name  # bytes compare only on the organism the report scored
        results.append({"input": f"smallest lossy edit of R = 1 in {report}", "edit": lossy, "report_organism": of,
                        "bench_organism": Path(org).name, "exact_patch_bytes": exact,
                        "exact_over_lossy": exact / lossy["bytes"] if lossy and same else None})
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
