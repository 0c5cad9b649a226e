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
hot), ``--repeat`` + 1 times: patch and apply beside ``safetensors.save_file`` of TUNED's
tensors (the write alone), reading them (``load_file`` and a copy) and ``shutil.copytree``.

    python bench/bench_patch.py --layers 2 --repeat 2
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
    """patch and apply in one warm process (torch imported), beside writing, reading and copying TUNED."""
    os.environ["RANKEDIT_CACHE"] = str(work.parent / "cache")
    from safetensors.torch import load_file, save_file

    from rankedit.cli.main import run_command
    from rankedit.files.checkpoint import Checkpoint

    res = {"input": "rl-like, in one process", "patch_s": [], "apply_s": [], "save_file_s": [], "read_s": [],
           "copytree_s": []}
    files = Checkpoint(tuned).weight_files
    for _ in range(repeat):
        for d in ("p", "a", "copy"):
            shutil.rmtree(work / d, ignore_errors=True)
        for key, fn in (
                ("patch_s", lambda: run_command(["patch", str(base), str(tuned), "-o", str(work / "p"), "--quiet"])),
                ("apply_s", lambda: run_command(["apply", str(work / "p"), str(base), "-o", str(work / "a"), "--quiet"])),
                ("copytree_s", lambda: shutil.copytree(tuned, work / "copy")),
                ("read_s", lambda: [{k: v.clone() for k, v in load_file(f).items()} for f in files]),
                ("save_file_s", lambda: [save_file({k: v.clone() for k, v in load_file(f).items()},
                                                   str(work / "copy" / f"again-{f.name}")) for f in files])):
            t0 = time.perf_counter()
            fn()
            res[key].append(time.perf_counter() - t0)
    res["save_file_s"] = [s - r for s, r in zip(res["save_file_s"], res["read_s"])]  # the write alone
    return res


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
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
