"""`rankedit trajectory`: one run's checkpoints against its base, matrix by matrix, step by step.

Streams like analyze: each matrix is read from the base and from every
checkpoint, measured and dropped, so memory holds one matrix per checkpoint.
Writes ``trajectory.jsonl`` (one row per matrix and step), ``summary.json``
(linearity beside its nulls, per matrix and for the whole model) and figures.
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

import numpy as np

from rankedit.analysis.analyze import dumps, write_jsonl
from rankedit.core.device import check_device
from rankedit.analysis.trajectory_patches import FIG_PATCHES, matrix_patches, patch_figure, summarize_patches
from rankedit.analysis.trajectory_math import a_final_linearity, linearity, matrix_trajectory
from rankedit.analysis.trajectory_options import TrajectoryOptions
from rankedit.core.option_rules import check_value, default
from rankedit.core.errors import RankeditError
from rankedit.core.modules import as_linear, classify
from rankedit.core.threads import hot_path_threads
from rankedit.files.atomic import atomic_dir
from rankedit.files.adapter import AdapterCheckpoint, is_adapter, open_tuned
from rankedit.files.checkpoint import Checkpoint, check_compatible
from rankedit.files.outdir import check_out
from rankedit.files.validate import check_inputs
from tqdm.auto import tqdm
from rankedit.analysis.trajectory_plots import trajectory_plots

TRAJECTORY_ROWS = "trajectory.jsonl"
TRAJECTORY_SUMMARY = "summary.json"
# trl writes checkpoint-N, others step-N, verl global_step_N; the step is N
_STEP_DIR = re.compile(r"^(?:checkpoint|step|global_step)[-_](\d+)$")
# verl's HF-format weights inside global_step_N (its FSDP shards sit in global_step_N/actor)
VERL_HF = ("actor", "huggingface")


def _has_weights(d: Path) -> bool:
    return (d / "config.json").is_file() and any(d.glob("*.safetensors"))


def step_checkpoint(step_dir: Path) -> Path:
    """The HF checkpoint inside one step folder: the folder itself (trl's checkpoint-N, step-N) or
    verl's ``global_step_N/actor/huggingface``. verl's FSDP shards alone are refused, naming the fix."""
    if _has_weights(step_dir) or is_adapter(step_dir):  # a LoRA run's checkpoint-N holds its adapter
        return step_dir
    verl = step_dir.joinpath(*VERL_HF)
    if _has_weights(verl):
        return verl
    if (step_dir / "actor").is_dir():
        raise RankeditError(
            f"{step_dir}: verl FSDP shards, no HF weights; merge them first with verl's model merger: "
            f"python -m verl.model_merger merge --backend fsdp --local_dir {step_dir / 'actor'} "
            f"--target_dir {verl}")
    raise RankeditError(f"{step_dir}: no HF checkpoint (config.json and *.safetensors) in it "
                        f"or in {'/'.join(VERL_HF)}")


def _tuned(ck, name: str, stored0):
    """A checkpoint's tensor; for a LoRA adapter's targeted matrix W0 + scale·B·A in float64, so that
    dW_t is the adapter's own update, not the rounding of merged weights."""
    if isinstance(ck, AdapterCheckpoint) and name in ck.lora:
        return stored0.double() + ck.delta(name)
    return ck.get(name, check_finite=True)


def run_dir_checkpoints(run_dir: str | Path) -> tuple[list[Path], list[int]]:
    """The checkpoint folders of a run directory and their steps, in step order.

    trl: ``checkpoint-N/`` holding the weights (or a LoRA adapter); verl: ``global_step_N/actor/huggingface/``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise RankeditError(f"--run-dir {run_dir}: no such directory")
    found = _step_dirs(root)
    if not found:
        inner = [d for d in sorted(root.iterdir()) if d.is_dir() and _step_dirs(d)]
        hint = f" (they are in {inner[0]}: give that folder)" if inner else ""
        raise RankeditError(f"--run-dir {run_dir}: no checkpoint-N, step-N or global_step_N folders in it{hint}")
    steps = [s for s, _ in found]
    if len(set(steps)) != len(steps):
        raise RankeditError(f"--run-dir {run_dir}: two folders name the same step")
    return [step_checkpoint(p) for _, p in found], steps


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the step folders directly inside ``root``, in step order."""
    return sorted((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name)))


def check_steps(steps: list[int], n_checkpoints: int) -> None:
    if len(steps) != n_checkpoints:
        raise RankeditError(f"--steps gives {len(steps)} steps for {n_checkpoints} checkpoints")
    if n_checkpoints < 3:
        raise RankeditError(f"a trajectory needs at least 3 checkpoints (a line through 2 always fits), got {n_checkpoints}")
    if any(s < 0 for s in steps):
        raise RankeditError(f"steps must be >= 0, got {steps}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise RankeditError(f"steps must be strictly increasing, in the order of the checkpoints, got {steps}")


def trajectory(
    base: str | Path,
    checkpoints: list[str | Path] | None = None,
    out: str | Path | None = None,
    *,
    steps: list[int] | None = None,
    run_dir: str | Path | None = None,
    gap_threshold: float = default(TrajectoryOptions, "gap_threshold"),
    n_null: int = default(TrajectoryOptions, "null_draws"),
    seed: int = default(TrajectoryOptions, "seed"),
    device: str = default(TrajectoryOptions, "device"),
    modules: str | None = default(TrajectoryOptions, "modules"),
    progress: bool = True,
    plots: bool = default(TrajectoryOptions, "plots"),
    overwrite: bool = False,
) -> dict:
    """Measure every attention/MLP matrix of a run at each checkpoint; optionally write OUT.

    ``checkpoints`` with ``steps`` (one per checkpoint, strictly increasing), or
    ``run_dir`` (its ``checkpoint-N`` / ``step-N`` folders; the steps from the
    names). Returns the summary (``summary.json``) with the per-step rows under
    ``"rows"``; with ``out``, writes ``trajectory.jsonl``, ``summary.json`` and
    PNG figures atomically, under the policy of ``rankedit.files.outdir``.
    """
    if (run_dir is None) == (not checkpoints):
        raise RankeditError("give either CHECKPOINTS... with --steps, or --run-dir " + (
            "(not both)" if run_dir is not None else "(neither was given)"))
    if run_dir is not None:
        if steps is not None:
            raise RankeditError("--run-dir takes the steps from the folder names; do not give --steps")
        checkpoints, steps = run_dir_checkpoints(run_dir)
    if steps is None:
        raise RankeditError("--steps is needed: the training step of each checkpoint (S1,S2,...)")
    steps = [int(s) for s in steps]
    check_steps(steps, len(checkpoints))
    for field, value in (("gap_threshold", gap_threshold), ("null_draws", n_null), ("seed", seed)):
        check_value(TrajectoryOptions, field, value, "--" + field.replace("_", "-"))  # the spec's bounds
    check_device(device)
    try:
        pattern = re.compile(modules) if modules else None
    except re.error as e:
        raise RankeditError(f"--modules is not a valid regular expression: {e}") from None

    ck0 = Checkpoint(base)
    cks = [open_tuned(c, ck0) for c in checkpoints]  # a checkpoint-N adapter is read on the base
    names = check_compatible([ck0, *cks], ["base", *[f"step {s}" for s in steps]])
    inputs = [ck0.path, *[ck.path for ck in cks]]
    if run_dir is not None:
        inputs.append(Path(run_dir))
    if out is not None:  # before the work, not after it
        check_out(out, "trajectory", inputs, overwrite)
    check_inputs([ck0, *cks])
    infos = {n: classify(n, ck0.info(n).shape, ck0.model_type) for n in names}
    selected = [n for n in names if infos[n].is_matrix and len(ck0.info(n).shape) == 2
                and (pattern is None or pattern.search(n))]
    if not selected:
        what = f" matching --modules {modules!r}" if modules else ""
        raise RankeditError(f"no 2-D attention or MLP matrices{what} in {ck0.path}")

    rows, per_matrix = [], []
    whole_gram, whole_dim = np.zeros((len(steps), len(steps))), 0
    with hot_path_threads("analyze", max(min(ck0.info(n).shape) for n in selected)):
        for name in _progress(selected, progress):
            info = infos[name]
            raw0 = ck0.get(name, check_finite=True)
            raws = [_tuned(ck, name, raw0) for ck in cks]
            # as stored: the bytes an exact patch would hold (an adapter's merged weights in the base's dtype)
            patches = matrix_patches(raw0, [w if w.dtype == raw0.dtype else w.to(raw0.dtype) for w in raws])
            w0 = as_linear(raw0, info).to(device)
            ws = [as_linear(w, info).to(device) for w in raws]
            del raw0, raws
            facts, gram = matrix_trajectory(w0, ws, gap_threshold)
            where = {"name": name, "layer": info.layer, "module": info.module, "kind": info.kind}
            rows += [{**where, "step": s, **f, **p} for s, f, p in zip(steps, facts, patches)]
            a = np.array([f["a_final"] for f in facts])
            mseed = seed + zlib.crc32(name.encode())
            per_matrix.append({**where, "shape": list(w0.shape),
                               "a_final": a_final_linearity(steps, a, tuple(w0.shape), mseed, n_null),
                               "dw": linearity(steps, gram, w0.numel(), mseed + 1, n_null)})
            whole_gram += gram
            whole_dim += w0.numel()

    params = dict(base=str(base), checkpoints=[str(c) for c in checkpoints], steps=steps,
                  run_dir=None if run_dir is None else str(run_dir), gap_threshold=gap_threshold,
                  null_draws=n_null, seed=seed, device=device, modules=modules)
    summary = summarize(rows, per_matrix, linearity(steps, whole_gram, whole_dim, seed, n_null), params)
    summary["patches"] = summarize_patches(rows, steps)
    if out is not None:
        with atomic_dir(out, kind="trajectory", inputs=inputs, overwrite=overwrite) as tmp:
            write_jsonl(tmp / TRAJECTORY_ROWS, rows)
            (tmp / TRAJECTORY_SUMMARY).write_text(dumps(summary) + "\n")
            if plots:
                trajectory_plots(rows, per_matrix, steps, tmp)
                patch_figure(summary["patches"], tmp / FIG_PATCHES)
    return {**summary, "rows": rows}


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def summarize(rows: list[dict], per_matrix: list[dict], whole: dict, params: dict) -> dict:
    """Linearity per matrix and overall; how many (matrix, step) pairs have an unidentifiable direction."""
    keys = list(per_matrix[0]["a_final"]) if per_matrix else []
    flagged = [r for r in rows if r["not_identifiable"]]
    return {
        "params": params,
        "n_matrices": len(per_matrix),
        "n_steps": len(params["steps"]),
        "not_identifiable": {"pairs": len(flagged), "of": len(rows),
                             "matrices": sorted({r["name"] for r in flagged})},
        # mean over matrices of each matrix's R² of a(t) and of its nulls
        "a_final_linearity_mean": {k: _mean([m["a_final"][k] for m in per_matrix]) for k in keys},
        # the whole model's update, flattened across all matrices, fitted by one line in t
        "dw_linearity_whole": whole,
        "matrices": per_matrix,
    }


def _progress(items: list, enabled: bool):
    if not enabled:
        return items

    return tqdm(items, desc="trajectory", unit="matrix", leave=False)
