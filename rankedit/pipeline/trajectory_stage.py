"""The plan's ``trajectory:`` section: `rankedit trajectory` on the run's checkpoints, into OUT/trajectory.

Skipped when OUT/trajectory holds the summary of the same inputs (their sha256) and
settings, as the analysis is. Returns what the report shows: the whole model's
linearity beside its nulls, a(t)'s mean, the unidentifiable pairs, and the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.files.atomic import atomic_write_text
from rankedit.pipeline.models import Models
from rankedit.pipeline.plan import Plan
from rankedit.pipeline.progress import say
from rankedit.analysis.trajectory import TRAJECTORY_SUMMARY, trajectory
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.hashes import checkpoint_sha256

TRAJECTORY_DIR = "trajectory"
REPORT_KEYS = ("n_matrices", "n_steps", "not_identifiable", "a_final_linearity_mean", "dw_linearity_whole")


def _key(base: str, ckpts: list[tuple[int, str]], settings: dict) -> dict:
    return {"settings": settings, "base": checkpoint_sha256(Checkpoint(base)),
            "steps": {str(s): checkpoint_sha256(Checkpoint(p)) for s, p in ckpts}}


def run_trajectory(plan: Plan, models: Models, out: Path, quiet: bool = False, overwrite: bool = False) -> dict | None:
    """Run (or reuse) the trajectory; None when the plan has no enabled ``trajectory:``."""
    spec = plan.trajectory
    if spec is None or not spec.enabled:
        return None
    _, ckpts = models.run(spec.of)
    if len(ckpts) < 3:
        raise RankeditError(f"trajectory: the {spec.of} run has {len(ckpts)} checkpoint(s); a trajectory needs 3")
    settings = spec.model_dump(mode="json", exclude={"enabled"})
    folder, key_file = out / TRAJECTORY_DIR, out / f"{TRAJECTORY_DIR}.key.json"
    key = _key(models.base, ckpts, settings)
    done = (folder / TRAJECTORY_SUMMARY).is_file() and key_file.is_file() and json.loads(key_file.read_text()) == key
    if not done:
        say(f"trajectory: {len(ckpts)} checkpoints of the {spec.of} run", quiet)
        # a LoRA run's checkpoints are read from their adapters (``models.source``): dW_t = scale·B·A exactly
        trajectory(models.base, [models.source(p) for _, p in ckpts], folder, steps=[s for s, _ in ckpts],
                   gap_threshold=spec.gap_threshold, n_null=spec.null_draws, seed=spec.seed, device=spec.device,
                   modules=spec.modules, progress=not quiet, plots=spec.plots, overwrite=overwrite)
        atomic_write_text(key_file, json.dumps(key, indent=1) + "\n")
    summary = json.loads((folder / TRAJECTORY_SUMMARY).read_text())
    return {"dir": TRAJECTORY_DIR, **{k: summary[k] for k in REPORT_KEYS},
            # the exact patch's bytes per step (rankedit.analysis.trajectory_patches); absent from old summaries
            **({"patches": summary["patches"]} if "patches" in summary else {}),
            "figures": [f"{TRAJECTORY_DIR}/{p.name}" for p in sorted(folder.glob("*.png"))]}


def _r2(d: dict) -> str:
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"R² {f(d.get('r2'))} (shuffled steps {f(d.get('r2_shuffled'))}, random vectors "
            f"{f(d.get('r2_random'))}, random walk {f(d.get('r2_walk'))})")


def patch_sentence(p: dict) -> str:
    """The exact patches of a run in one sentence (README findings and the report quote it): the last
    checkpoint against the base, checkpoint to checkpoint, and the run stored as a chain (each link the
    smaller of the two, as ``rankedit patch --run-dir`` stores it) against every checkpoint in full."""
    fb, fp = p["from_base"], p["from_previous"]
    last, full = fb[-1], fb[-1]["full_bytes"]
    step = fp[1:] or fp  # checkpoint to checkpoint (the first is against the base)
    lo, hi = min(step, key=lambda s: s["bytes"]), max(step, key=lambda s: s["bytes"])
    chain = sum(min(a["bytes"], b["bytes"]) for a, b in zip(fb, fp))
    mb = lambda n: f"{n / 1e6:.3g} MB"  # noqa: E731
    return (f"exact (lossless) patches of the measured matrices ({mb(full)} in full, `rankedit patch`'s encodings): "
            f"the last checkpoint against the base {mb(last['bytes'])} ({last['ratio']:.1%}; "
            f"{1 - last['unchanged_share']:.0%} of the bf16 entries changed); checkpoint to checkpoint "
            f"{mb(lo['bytes'])} to {mb(hi['bytes'])} ({lo['ratio']:.1%} to {hi['ratio']:.1%}, "
            f"{max(1 - s['unchanged_share'] for s in step):.0%} of the entries changed at most); the {len(fb)} checkpoints as a chain "
            f"{mb(chain)}, {chain / (len(fb) * full):.1%} of storing each in full")


def _unexplained(d: dict) -> str:
    """a(t)'s 1 − R² beside the walk's: a walk's a(t) is nearly a line too, so R² to three digits cannot
    separate them (docs/science.md, Trajectory; the figure a_final.png draws it per matrix)."""
    if d.get("r2") is None or d.get("r2_walk") is None:
        return "1 − R² undefined"
    return (f"unexplained share 1 − R² {1 - d['r2']:.1e} against a random walk's {1 - d['r2_walk']:.1e} "
            "(below it: more linear than a walk; above: less)")


def trajectory_markdown(block: dict | None) -> list[str]:
    """The report's section: linearity beside its nulls, the flags, the figures."""
    if not block:
        return []
    ni = block["not_identifiable"]
    lines = ["", "## Trajectory of the update over the run's checkpoints", "",
             f"{block['n_matrices']} matrices × {block['n_steps']} checkpoints (OUT/{block['dir']}/). "
             "R² of a line in training step, beside the same R² on its nulls: a trend a random walk also "
             "shows is no evidence of linearity.", "",
             f"- whole update ΔW_t, flattened: {_r2(block['dw_linearity_whole'])}",
             f"- a(t) = u₁(T)ᵀ ΔW_t v₁(T), mean over matrices: {_r2(block['a_final_linearity_mean'])}; "
             f"{_unexplained(block['a_final_linearity_mean'])}",
             f"- {ni['pairs']} of {ni['of']} (matrix, step) pairs have a top direction that is not identifiable "
             f"(s₁/s₂ below the gap threshold)"]
    if block.get("patches"):
        lines.append(f"- {patch_sentence(block['patches'])}")
    return lines + ["", "Figures: " + ", ".join(f"`{f}`" for f in block["figures"]) + " (shown under Figures)."
                    if block["figures"] else ""]
