"""One build phase (base, rl, rl-seed2, sft, and the optional rl-seedN, rl-SKILL): train, save, evaluate,
into a fresh directory.

``run_phase`` is called from ``python -m rankedit.organism.worker`` only, in a
process whose float results are pinned (rankedit.organism.pinning): micro runs
its four phases in one worker, small its three tuning runs in parallel workers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from rankedit.organism import tasks
from rankedit.organism.greedy_eval import accuracy
from rankedit.organism.model import load_fp32, save_checkpoint
from rankedit.core.names import ORGANISM_PHASE
from rankedit.organism.runs import phase_seed, phase_skill
from rankedit.organism.pretrain import pretrain
from rankedit.organism.rl import train_rl
from rankedit.organism.sft import train_sft

PHASE_FILE = ORGANISM_PHASE  # written last inside a phase dir: its presence means complete


def publish_mode(d: Path) -> None:
    """Temporary dirs are created 0700; a published phase is readable like any checkpoint."""
    for p in [d, *d.rglob("*")]:
        if p.is_dir():
            os.chmod(p, 0o755)


def evaluate_all(model, r: dict) -> dict[str, float]:
    """Greedy accuracy (%) on the build's test sets (the first eval_limit problems when set)."""
    lim = r.get("eval_limit")
    sets = tasks.eval_sets()
    return {name: round(100 * accuracy(model, sets[name][:lim] if lim else sets[name]), 2)
            for name in tasks.build_sets(r.get("skills", ("id",)))}


def run_phase(phase: str, organism_dir: Path, tmp: Path, r: dict, on_step: Callable | None = None,
              pins: dict | None = None) -> dict:
    """Train one phase into tmp (later renamed to organism_dir/phase); returns its record.

    pins: what the process runs with (pinning.effective()), kept in the record."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars, one per checkpoint
    hf_logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()  # trl's dataset preparation bars
    datasets.logging.set_verbosity_error()
    torch.set_num_threads(r[{"base": "pretrain", "sft": "sft"}.get(phase, "rl")]["threads"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    seed = phase_seed(phase, r["seed"])
    t0 = time.time()
    record: dict = {"phase": phase, "seed": seed, "pins": pins}
    if phase == "base":
        model, losses = pretrain(r, seed, on_step)
        record["loss_first_last"] = [round(sum(losses[:20]) / 20, 4), round(sum(losses[-20:]) / 20, 4)]
    elif phase_skill(phase) is not None:
        model, log = train_rl(organism_dir / "base", tmp, r, seed, on_step, skill=phase_skill(phase))
        record["skill"] = phase_skill(phase)
        record["log"] = log
    elif phase == "sft":
        model, log = train_sft(organism_dir / "base", tmp, r, seed, on_step)
        record["log"] = log
    else:
        raise ValueError(phase)
    record["train_s"] = round(time.time() - t0, 1)
    shutil.rmtree(tmp / "_trainer", ignore_errors=True)
    save_checkpoint(model.cpu(), tmp)
    t1 = time.time()
    # score what was published (bf16 weights, fp32 compute), not the in-memory fp32 master copy
    record["accuracy"] = evaluate_all(load_fp32(tmp).to(r.get("device", "cpu")), r)
    record["eval_s"] = round(time.time() - t1, 1)
    (tmp / PHASE_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
