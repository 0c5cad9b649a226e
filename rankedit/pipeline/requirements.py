"""What a plan asks of this machine, checked before any work: the scoring backend and Ray installed,
and every device it names present. Each error names the plan key to change."""

from __future__ import annotations

import re

from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import Plan


def _device_problem(device: str, gpu_only: bool = False) -> str | None:
    """Why ``device`` cannot be used here, or None. CUDA is probed only when asked for."""
    if device == "cpu" and not gpu_only:
        return None
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        return f"must be {'cuda or cuda:N' if gpu_only else 'cpu, cuda or cuda:N'}, got {device!r}"
    import torch

    if not torch.cuda.is_available():
        return f"{device!r} asks for a CUDA GPU, but none is available on this machine"
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        return f"{device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def check_requirements(plan: Plan, source: str = "plan") -> None:
    """Everything the plan needs from this machine, checked before any work: the scoring backend is
    installed, and every device it names exists. Each error names the plan key to change."""
    import importlib.util

    s = plan.score
    on_ray = plan.executor.kind == "ray"
    if on_ray:
        from rankedit.core.executors import RAY_MISSING, ray_available

        if not ray_available():
            raise RankeditError(f"{source}: executor: {RAY_MISSING}")
    if s.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise RankeditError(f"{source}: score.backend: vllm is not installed in this environment; set "
                                "'score: {backend: hf}', or run rankedit from an environment with vllm "
                                "(README, 'Scoring with vllm')")
        why = None if on_ray else _device_problem(s.device or "cuda", gpu_only=True)
        if why:
            key = "score.device" if s.device else "score.backend"
            raise RankeditError(f"{source}: {key}: vllm needs a CUDA GPU; {why}")
    # under Ray, edits and scorings run on the workers: their devices are the cluster's, not this machine's
    checks = [("device", plan.device, bool(plan.edits) and not on_ray),
              ("analyze.device", plan.analyze.device, plan.analyze.enabled),
              ("organism.device", plan.organism.device if plan.organism else "cpu", plan.organism is not None),
              ("score.device", s.device or "cpu", s.device is not None and s.backend == "hf" and not on_ray)]
    for key, device, used in checks:
        why = _device_problem(device) if used else None
        if why:
            raise RankeditError(f"{source}: {key}: {why}")
