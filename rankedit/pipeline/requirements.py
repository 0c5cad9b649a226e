"""What a plan asks of this machine, checked before any work: the scoring backend and Ray installed,
and every device it names present. Each error names the plan key to change."""

from __future__ import annotations

from rankedit.core.device import device_problem
from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import Plan
import importlib.util
from rankedit.core import executors
from rankedit.core.executors import RAY_MISSING


def check_requirements(plan: Plan, source: str = "plan") -> None:
    """Everything the plan needs from this machine, checked before any work: the scoring backend is
    installed, and every device it names exists. Each error names the plan key to change."""
    s = plan.score
    on_ray = plan.executor.kind == "ray"
    if on_ray:
        if not executors.ray_available():
            raise RankeditError(f"{source}: executor: {RAY_MISSING}")
    if s.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise RankeditError(f"{source}: score.backend: vllm is not installed in this environment; set "
                                "'score: {backend: hf}', or run rankedit from an environment with vllm "
                                "(docs/scaling.md, 'Scoring with vllm')")
        why = None if on_ray else device_problem(s.device or "cuda", gpu_only=True)
        if why:
            key = "score.device" if s.device else "score.backend"
            raise RankeditError(f"{source}: {key}: vllm needs a CUDA GPU; {why}")
    # under Ray, edits and scorings run on the workers: their devices are the cluster's, not this machine's
    checks = [("device", plan.device, bool(plan.builds) and not on_ray),
              ("analyze.device", plan.analyze.device, plan.analyze.enabled),
              ("organism.device", plan.organism.device if plan.organism else "cpu", plan.organism is not None),
              ("score.device", s.device or "cpu", s.device is not None and s.backend == "hf" and not on_ray)]
    for key, device, used in checks:
        why = device_problem(device) if used else None
        if why:
            raise RankeditError(f"{source}: {key}: {why}")
