"""A step of `rankedit run` for plans with merges: the interference between the runs they merge, measured
before the merge (``rankedit analyze`` with several runs), for the report's "which figure predicts the loss"."""

from __future__ import annotations

import json
from pathlib import Path

from rankedit.core.names import ANALYSIS_SUMMARY
from rankedit.files.atomic import atomic_write_text
from rankedit.pipeline.models import Models
from rankedit.pipeline.plan import Plan
from rankedit.pipeline.progress import say
from rankedit.analysis.analyze import analyze
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.hashes import checkpoint_sha256


def merged_runs(plan: Plan) -> list[str]:
    """The runs the plan's merges name, in the order they first appear."""
    return list(dict.fromkeys(r for m in plan.merges for r in m.runs or ()))


def run_interference(plan: Plan, models: Models, out: Path, quiet: bool = False, overwrite: bool = False) -> dict | None:
    """Interference between the runs the plan merges, measured before the merge (``rankedit analyze`` with
    several runs into OUT/analysis/merged-runs): the summary's ``interference`` block, or None (no merges)."""
    roles = merged_runs(plan)
    if len(roles) < 2 or not plan.analyze.enabled:
        return None
    folder, key_file = out / "analysis" / "merged-runs", out / "analysis" / "merged-runs.key.json"
    key = {"k": plan.analyze.k, "runs": roles,
           "sha256": {r: checkpoint_sha256(Checkpoint(p)) for r, p in [("base", models.base)]
                      + [(r, models.role(r)) for r in roles]}}
    if not ((folder / ANALYSIS_SUMMARY).is_file() and key_file.is_file() and json.loads(key_file.read_text()) == key):
        say(f"analyze: interference of {', '.join(roles)}", quiet)
        analyze(models.base, [models.source(models.role(r)) for r in roles], folder, names=roles, k=plan.analyze.k,
                device=plan.analyze.device, progress=not quiet, overwrite=overwrite)
        atomic_write_text(key_file, json.dumps(key, indent=1) + "\n")
    return json.loads((folder / ANALYSIS_SUMMARY).read_text()).get("interference")
