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
            "figures": [f"{TRAJECTORY_DIR}/{p.name}" for p in sorted(folder.glob("*.png"))]}


def _r2(d: dict) -> str:
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"R² {f(d.get('r2'))} (shuffled steps {f(d.get('r2_shuffled'))}, random vectors "
            f"{f(d.get('r2_random'))}, random walk {f(d.get('r2_walk'))})")


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
             f"- a(t) = u₁(T)ᵀ ΔW_t v₁(T), mean over matrices: {_r2(block['a_final_linearity_mean'])}",
             f"- {ni['pairs']} of {ni['of']} (matrix, step) pairs have a top direction that is not identifiable "
             f"(s₁/s₂ below the gap threshold)"]
    return lines + ["", "Figures: " + ", ".join(f"`{f}`" for f in block["figures"]) + " (shown under Figures)."
                    if block["figures"] else ""]
