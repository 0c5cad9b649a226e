"""Build the organism: base -> (rl, rl-seed2, sft [, rl-SKILL, rl-seedN]), cached, atomic per phase, organism.json.

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
fit (BENCHMARKS.md has the final numbers). That elicitation held in one seed of
three: the worked format was the better skill of seed 0's base (forced 58.5% against
a 48% greedy base) but not of seeds 1 and 2 (forced = greedy), whose RL gained
+3.3 and +1.6; pretraining longer (900 steps) did not make it better either. So
since version 3 the room is built into the corpus: the bare answers, 70% of the
arithmetic, are careless 80% of the time (carries and borrows dropped), the
teacher's worked answers (30%) are always right. The base then answers carry
problems greedily with the careless bare answer while the right answers, bare or
worked, are there to sample; GRPO moves it to them: +8.8, +11.1, +15.1 in seeds
0, 1, 2 (BENCHMARKS.md).
The organism uses
3e-5 for RL and SFT alike, so the same-learning-rate comparison is direct; it
sits above the real-recipe band, so bf16 sparsity will be weak, and the
checkpoints every 10% give the matched-update-size comparison.

Layout of DIR: base/, rl/, rl-seed2/, sft/ (each a bf16 HF checkpoint; the
tuned ones with checkpoints/step-N), organism.json, and a .rankedit-organism
marker holding the recipe hash. Runs to merge, on request: a second skill
(``skills=("id", "sum")``) is part of the recipe, since its base learns that
skill too (another hash, another folder), and adds rl-sum/, the same GRPO
recipe on that skill's prompts; more RL seeds of the id skill (``rl_seeds=N``)
add rl-seed3/ .. rl-seedN/ from the same base and change no other run's bytes,
so they are not part of the recipe: they are trained into the recipe's folder,
beside what is there (rankedit.organism.runs names them all). Each phase is
trained into a temporary sibling and renamed when complete, so a rerun after an
interruption redoes exactly the phases that are missing. Every phase is trained in a worker process whose float
results are pinned (rankedit.organism.pinning: ATen avx2, MKL's COMPATIBLE
branch, one thread), so a recipe gives the same bytes on any x86-64 machine
with AVX2, whatever the user's environment sets; organism.json records the
pins, what torch and MKL reported, and the CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from rankedit.files.atomic import atomic_write_text
from rankedit.files.outdir import check_location
from rankedit.core.cache_dir import cache_root
from rankedit.core.errors import RankeditError
from rankedit.core.messages import line
from rankedit.organism import pinning
from rankedit.core.machine import cpu
from rankedit.organism.recipes import recipe  # not .model or .phases: torch, transformers and trl load in the workers only
from rankedit.organism.runs import is_phase, parse_skills, phase_seed, phase_skill, phases_of
from rankedit.core.names import ORGANISM_PHASE as PHASE_FILE, ORGANISM_SUMMARY
import signal
import threading
from tqdm.auto import tqdm

ORGANISM_VERSION = 3  # bump when the code changes what a recipe builds (2: pinned float results, 3: careless corpus)
MARKER = ".rankedit-organism"
PARALLEL = {"micro": False, "small": True}  # micro: one worker for all phases, one torch import


def recipe_hash(r: dict) -> str:
    blob = json.dumps({"organism_version": ORGANISM_VERSION, **r}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_dir(size: str, seed: int, device: str = "cpu", skills=("id",)) -> Path:
    r = _recipe(size, seed, device, skills)
    return cache_root() / "organism" / f"{size}-seed{seed}-{recipe_hash(r)}"


def _recipe(size: str, seed: int, device: str, skills=("id",)) -> dict:
    r = recipe(size, seed, skills)
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


def _complete(d: Path) -> bool:
    return (d / PHASE_FILE).is_file()


def _clean_stale(out: Path) -> None:
    """Remove what an interrupted build left: temporary phase dirs, progress and log files."""
    for p in out.glob(".*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in list(out.glob(".*.progress")) + list(out.glob(".organism.json.tmp")):
        p.unlink(missing_ok=True)
    for d in out.iterdir():
        if d.is_dir() and is_phase(d.name) and not _complete(d):
            shutil.rmtree(d)


def _bar(phase: str, total: int, position: int, enabled: bool):
    return tqdm(total=total, desc=f"organism {phase:<8}", position=position, leave=True, disable=not enabled, unit="step")


def _steps(phase: str, r: dict) -> int:
    return r[{"base": "pretrain", "sft": "sft"}.get(phase, "rl")]["steps"]


def _run_workers(groups: list[list[str]], out: Path, r: dict, progress: bool) -> None:
    """One pinned worker process per group, all at once; a group's phases run in order inside it.

    Nothing is trained in this process: torch may already be loaded here, unpinned."""
    env = pinning.pinned_env()
    jobs, bars = [], {}
    try:
        for phases in groups:
            log_path = out / f".{phases[0]}.log"
            log = open(log_path, "w")
            proc = subprocess.Popen(
                [sys.executable, "-m", "rankedit.organism.worker", str(out), *phases],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, text=True,
            )
            jobs.append((proc, phases, log, log_path))
            proc.stdin.write(json.dumps(r))
            proc.stdin.close()
            for phase in phases:
                bars[phase] = _bar(phase, _steps(phase, r), len(bars), progress)
        while True:
            running = any(j[0].poll() is None for j in jobs)
            for phase, bar in bars.items():
                bar.n = _progress(out, phase, bar.total)
                bar.refresh()
            if not running:
                break
            time.sleep(0.5)
        for proc, phases, log, log_path in jobs:
            if proc.returncode != 0:
                log.close()
                tail = log_path.read_text().strip().splitlines()[-1:] or ["no output"]
                phase = next((p for p in phases if not _complete(out / p)), phases[-1])
                raise RankeditError(f"organism phase {phase} failed: {tail[0]} (log: {log_path})")
    finally:
        for proc, phases, log, log_path in jobs:
            if proc.poll() is None:
                proc.terminate()  # the worker unwinds: its half-trained phase dir is removed
                proc.wait()
            log.close()
        for bar in bars.values():
            bar.close()
        for p in list(out.glob(".*.tmp-*")) + list(out.glob(".*.progress")):  # a killed worker's leftovers
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _progress(out: Path, phase: str, total: int) -> int:
    if _complete(out / phase):
        return total
    try:
        return int((out / f".{phase}.progress").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _versions() -> dict:
    v = {"python": platform.python_version()}
    for pkg in ("rankedit", "torch", "transformers", "trl", "datasets", "tokenizers", "accelerate"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            v[pkg] = None
    return v


def built_phases(out: Path, r: dict) -> tuple[str, ...]:
    """The complete phases in out, in build order (the recipe's, then every rl-seedN trained into it)."""
    seeds = [int(d.name.removeprefix("rl-seed")) for d in out.glob("rl-seed*") if is_phase(d.name) and _complete(d)]
    return tuple(p for p in phases_of(r.get("skills", ("id",)), max([2, *seeds])) if _complete(out / p))


def _summary(out: Path, r: dict, h: str, wall: dict) -> dict:
    phases = built_phases(out, r)
    recs = {p: json.loads((out / p / PHASE_FILE).read_text()) for p in phases}
    effective = {p: recs[p].get("pins") for p in phases}
    rewards = {}
    for p in phases:
        if phase_skill(p) is not None:
            rewards[p] = [round(e["reward"], 4) for e in recs[p].get("log", []) if "reward" in e]
    return {
        "rankedit_organism_version": ORGANISM_VERSION,
        "recipe_hash": h,
        "recipe": r,
        "versions": _versions(),
        "machine": cpu(),
        # the environment every build process ran with, and what torch and MKL then reported per phase
        "pins": {"env": pinning.PINS, "unset": list(pinning.UNSET), "held": pinning.held(effective),
                 "effective": effective},
        "timings_s": {p: {"train": recs[p]["train_s"], "eval": recs[p]["eval_s"]} for p in phases} | {"wall": wall},
        "accuracy": {p: recs[p]["accuracy"] for p in phases},
        # what each tuned run is: the names a plan gives its runs (rankedit/pipeline/plan.py)
        "tuned_runs": {p: {"method": "sft" if p == "sft" else "grpo", "skill": phase_skill(p) or "id",
                           "seed": phase_seed(p, r["seed"])} for p in phases if p != "base"},
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
                        for p in phases if p != "base"},
    }


def _sigterm_as_interrupt() -> None:
    """Let `kill` unwind like Ctrl-C, so temporary phase dirs and worker processes are cleaned up."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


def build(size: str = "small", seed: int = 0, out: str | os.PathLike | None = None, device: str = "cpu",
          progress: bool = True, skills=("id",), rl_seeds: int = 2) -> Path:
    """Build (or reuse) the organism; returns its directory. Equal to `rankedit organism build`.

    skills: the skills trained with GRPO (id, plus e.g. sum: rl-sum/); rl_seeds: how many GRPO runs of
    the id skill from the one base (2: rl and rl-seed2; 3 adds rl-seed3, ...)."""
    if device not in ("cpu", "cuda"):
        raise RankeditError(f"unknown device {device!r}; choose cpu or cuda")
    skills = parse_skills(skills)
    if isinstance(rl_seeds, bool) or not isinstance(rl_seeds, int) or rl_seeds < 2:
        raise RankeditError(f"rl_seeds counts the GRPO runs of the id skill from one base, at least 2 "
                            f"(rl and rl-seed2, every build's); got {rl_seeds!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RankeditError("--device cuda asked for, but no CUDA GPU is available")
    r = _recipe(size, seed, device, skills)
    h = recipe_hash(r)
    phases = phases_of(skills, rl_seeds)
    if out is not None:
        check_location(out)  # never the home folder, /, the cache itself or the current directory
    out = Path(out).absolute() if out is not None else cache_root() / "organism" / f"{size}-seed{seed}-{h}"
    _claim(out, h)
    _sigterm_as_interrupt()
    summary_file = out / ORGANISM_SUMMARY
    if summary_file.is_file() and all(_complete(out / p) for p in phases):
        return out  # this recipe was built before: instant
    _clean_stale(out)
    todo = [p for p in phases if not _complete(out / p)]
    # runs added to a complete build keep its timings beside their own
    wall = json.loads(summary_file.read_text())["timings_s"]["wall"] if summary_file.is_file() else {}
    added = summary_file.is_file()
    tuning = [p for p in todo if p != "base"]
    if PARALLEL[size] and (os.cpu_count() or 1) > 1 and device == "cpu":
        stages = {"base": [["base"]] if "base" in todo else [], "tuning": [[p] for p in tuning]}
    else:  # one worker runs them in order: one torch import
        stages = {"all": [todo]}
    for name, groups in stages.items():
        t = time.time()
        if groups and groups[0]:
            _run_workers(groups, out, r, progress)
        elif added:
            continue  # a stage with nothing to add
        wall[f"added {', '.join(todo)}" if added else name] = round(time.time() - t, 1)
    for p in out.glob(".*.log"):
        p.unlink()
    summary = _summary(out, r, h, wall)
    atomic_write_text(out / ORGANISM_SUMMARY, json.dumps(summary, indent=1) + "\n")
    if not summary["pins"]["held"] and device == "cpu":
        line(f"warning: this CPU could not run the pinned kernels ({summary['pins']['effective']['base']}); "
             "its organism differs from one built on a CPU with AVX2")
    return out
