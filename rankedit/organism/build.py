"""Build the organism: base -> (rl, rl-seed2, sft), cached, atomic per phase, organism.json.

Why these learning rates and this base (small recipe). Real RLVR recipes use
1e-6 to 5e-7 and the trial organism showed bf16-unchanged sparsity only at 1e-6
to 3e-6. The whole build must fit in 12 minutes on 2 CPU cores, which leaves
400-600 optimizer steps per tuning run. Measured (BENCHMARKS.md): on a base
pretrained with 10% worked-format answers (annealed, 34% greedy) RL at 1e-5 x
200 steps moved greedy accuracy by +1 point, 3e-5 x 600 by +1.7/+2.6 (two
seeds), 1e-4 made it worse (23% at step 240); GRPO raised the sampled reward
(0.264 -> 0.307) but the base's greedy answer was already its mode, so RL
mostly sharpened it. A corpus with dropped carries/borrows (40% or 60% of
answers careless) did not help (+1.7 / +2.5 greedy over 300 steps): it lowered
the probability of the right answer instead of hiding it. What works is the
elicitation RL is credited with in the literature: pretraining writes 45% of
answers in the teacher's worked format (answer digits in carry order first, a
scratchpad), so the annealed base chooses between two strategies about half
and half and greedily scores ~34%, while forced into the worked format it
scores ~41%. GRPO with the exact reward shifts it to the better strategy and
sharpens it: 3e-5 x 300 steps gave +11.8 on 2000 problems (5e-5 with warmup:
+10.8), 3e-5 x 600 steps +16.3/+16.0 on all 5000 (two seeds; SFT +43.4), but
its completions are twice as long, so that build took 12 min 21 s; 400 steps
fit (BENCHMARKS.md has the final numbers). The organism uses
3e-5 for RL and SFT alike, so the same-learning-rate comparison is direct; it
sits above the real-recipe band, so bf16 sparsity will be weak, and the
checkpoints every 10% give the matched-update-size comparison.

Layout of DIR: base/, rl/, rl-seed2/, sft/ (each a bf16 HF checkpoint; the
tuned ones with checkpoints/step-N), organism.json, and a .rankedit-organism
marker holding the recipe hash. Each phase is trained into a temporary sibling
and renamed when complete, so a rerun after an interruption redoes exactly the
phases that are missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from rankedit.atomic import atomic_dir, atomic_write_text
from rankedit.cache import cache_root
from rankedit.errors import RankeditError
from rankedit.organism.model import recipe
from rankedit.organism.phases import PHASE_FILE, PHASES, run_phase

ORGANISM_VERSION = 1  # bump when the code changes what a recipe builds
MARKER = ".rankedit-organism"
TUNING = ("rl", "rl-seed2", "sft")
PARALLEL = {"micro": False, "small": True}  # micro: in-process, no 3x import cost


def recipe_hash(r: dict) -> str:
    blob = json.dumps({"organism_version": ORGANISM_VERSION, **r}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_dir(size: str, seed: int, device: str = "cpu") -> Path:
    r = _recipe(size, seed, device)
    return cache_root() / "organism" / f"{size}-seed{seed}-{recipe_hash(r)}"


def _recipe(size: str, seed: int, device: str) -> dict:
    r = recipe(size, seed)
    if device != "cpu":
        r["device"] = device  # weights differ across devices; cpu keeps the plain hash
    return r


def _claim(out: Path, h: str) -> None:
    """Make out ours: empty/new -> write the marker; ours -> fine; anything else -> error."""
    if out.exists() and not out.is_dir():
        raise RankeditError(f"output path exists and is not a directory: {out}")
    marker = out / MARKER
    if marker.exists():
        found = marker.read_text().strip()
        if found != h:
            raise RankeditError(f"{out} holds an organism of another recipe ({found}, this one is {h}); choose another -o")
        return
    if out.exists() and any(out.iterdir()):
        raise RankeditError(f"output directory {out} holds something that is not a rankedit organism; choose an empty or new -o")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(h + "\n")


def _publish_mode(d: Path) -> None:
    """Temporary dirs are created 0700; a published phase is readable like any checkpoint."""
    for p in [d, *d.rglob("*")]:
        if p.is_dir():
            os.chmod(p, 0o755)


def _complete(d: Path) -> bool:
    return (d / PHASE_FILE).is_file()


def _clean_stale(out: Path) -> None:
    """Remove what an interrupted build left: temporary phase dirs, progress and log files."""
    for p in out.glob(".*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in list(out.glob(".*.progress")) + list(out.glob(".organism.json.tmp")):
        p.unlink(missing_ok=True)
    for phase in PHASES:
        if (out / phase).exists() and not _complete(out / phase):
            shutil.rmtree(out / phase)


def _bar(phase: str, total: int, position: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"organism {phase:<8}", position=position, leave=True, disable=not enabled, unit="step")


def _steps(phase: str, r: dict) -> int:
    return r[{"base": "pretrain", "sft": "sft"}.get(phase, "rl")]["steps"]


def _run_inprocess(phase: str, out: Path, r: dict, progress: bool) -> None:
    bar = _bar(phase, _steps(phase, r), 0, progress)

    def on_step(step, total, _loss=None):
        bar.n = step
        bar.refresh()

    try:
        with atomic_dir(out / phase) as tmp:
            run_phase(phase, out, tmp, r, on_step)
        _publish_mode(out / phase)
    finally:
        bar.close()


def _run_parallel(phases: list[str], out: Path, r: dict, progress: bool) -> None:
    """One worker process per phase, one thread each; bars follow their progress files."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    jobs = {}
    try:
        for i, phase in enumerate(phases):
            tmp = Path(tempfile.mkdtemp(prefix=f".{phase}.tmp-", dir=out))
            log = open(out / f".{phase}.log", "w")
            proc = subprocess.Popen(
                [sys.executable, "-m", "rankedit.organism.worker", phase, str(out), str(tmp)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, text=True,
            )
            proc.stdin.write(json.dumps(r))
            proc.stdin.close()
            jobs[phase] = (proc, tmp, log, _bar(phase, _steps(phase, r), i, progress))
        while any(j[0].poll() is None for j in jobs.values()):
            for phase, (proc, tmp, log, bar) in jobs.items():
                prog = out / f".{phase}.progress"
                try:
                    bar.n = int(prog.read_text().split()[0])
                    bar.refresh()
                except (OSError, ValueError, IndexError):
                    pass
            time.sleep(0.5)
        failed = [p for p, j in jobs.items() if j[0].returncode != 0]
        for phase, (proc, tmp, log, bar) in jobs.items():
            log.close()
            bar.close()
            if phase not in failed:
                os.replace(tmp, out / phase)  # complete: publish the phase
                _publish_mode(out / phase)
                (out / f".{phase}.progress").unlink(missing_ok=True)
        if failed:
            tail = (out / f".{failed[0]}.log").read_text().strip().splitlines()[-1:] or ["no output"]
            raise RankeditError(f"organism phase {failed[0]} failed: {tail[0]} (log: {out / f'.{failed[0]}.log'})")
    finally:
        for phase, (proc, tmp, log, bar) in jobs.items():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _versions() -> dict:
    v = {"python": platform.python_version()}
    for pkg in ("rankedit", "torch", "transformers", "trl", "datasets", "tokenizers", "accelerate"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            v[pkg] = None
    return v


def _summary(out: Path, r: dict, h: str, wall: dict) -> dict:
    recs = {p: json.loads((out / p / PHASE_FILE).read_text()) for p in PHASES}
    rewards = {}
    for p in ("rl", "rl-seed2"):
        rewards[p] = [round(e["reward"], 4) for e in recs[p].get("log", []) if "reward" in e]
    return {
        "rankedit_organism_version": ORGANISM_VERSION,
        "recipe_hash": h,
        "recipe": r,
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "timings_s": {p: {"train": recs[p]["train_s"], "eval": recs[p]["eval_s"]} for p in PHASES} | {"wall": wall},
        "accuracy": {p: recs[p]["accuracy"] for p in PHASES},
        "rl_reward_per_step": rewards,
        # mean reward over the first and the last 10% of steps: a real GRPO run should rise
        "rl_reward_first_last_10pct": {p: [round(sum(v[: max(1, len(v) // 10)]) / max(1, len(v) // 10), 4),
                                           round(sum(v[-max(1, len(v) // 10):]) / max(1, len(v) // 10), 4)]
                                       for p, v in rewards.items() if v},
        "evaluation": "greedy, max 16 new tokens, answer = last integer before </s>, exact match; "
                      "bf16 checkpoint weights computed in fp32 (plain lm_eval computes in bf16 unless dtype=float32)",
        "sft_loss_per_step": [round(e["loss"], 4) for e in recs["sft"].get("log", []) if "loss" in e],
        "base_pretrain_loss_first_last": recs["base"].get("loss_first_last"),
        "checkpoints": {p: sorted((c.name for c in (out / p / "checkpoints").iterdir()), key=lambda s: int(s.split("-")[1]))
                        for p in TUNING},
    }


def _sigterm_as_interrupt() -> None:
    """Let `kill` unwind like Ctrl-C, so temporary phase dirs and worker processes are cleaned up."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


def build(size: str = "small", seed: int = 0, out: str | os.PathLike | None = None, device: str = "cpu",
          progress: bool = True) -> Path:
    """Build (or reuse) the organism; returns its directory. Equal to `rankedit organism build`."""
    if device not in ("cpu", "cuda"):
        raise RankeditError(f"unknown device {device!r}; choose cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RankeditError("--device cuda asked for, but no CUDA GPU is available")
    r = _recipe(size, seed, device)
    h = recipe_hash(r)
    out = Path(out).absolute() if out is not None else cache_root() / "organism" / f"{size}-seed{seed}-{h}"
    _claim(out, h)
    _sigterm_as_interrupt()
    if (out / "organism.json").is_file() and all(_complete(out / p) for p in PHASES):
        return out  # this recipe was built before: instant
    _clean_stale(out)
    wall = {}
    t = time.time()
    if not _complete(out / "base"):
        _run_inprocess("base", out, r, progress)
    wall["base"] = round(time.time() - t, 1)
    t = time.time()
    todo = [p for p in TUNING if not _complete(out / p)]
    if todo and PARALLEL[size] and (os.cpu_count() or 1) > 1 and device == "cpu":
        _run_parallel(todo, out, r, progress)
    else:
        for p in todo:
            _run_inprocess(p, out, r, progress)
    wall["tuning"] = round(time.time() - t, 1)
    for p in out.glob(".*.log"):
        p.unlink()
    atomic_write_text(out / "organism.json", json.dumps(_summary(out, r, h, wall), indent=1) + "\n")
    return out
