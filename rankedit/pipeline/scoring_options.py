"""How a plan scores a model: the same lm-eval settings (and so the same cache entries) wherever
the pipeline scores, the final models and the run's checkpoints alike."""

from __future__ import annotations

from rankedit.pipeline.plan import Plan


def score_options(plan: Plan) -> dict:
    """Keyword arguments of ``rankedit.scoring.score.score`` from the plan's ``score`` and ``executor``."""
    s, ex = plan.score, plan.executor
    # on Ray the scorings run where the GPUs are asked for, not on this machine
    device = s.device or (("cuda" if ex.num_gpus_per_score else "cpu") if ex.kind == "ray" else None)
    return dict(suite=s.suite, tasks=s.tasks, backend=s.backend, batch_size=s.batch_size, limit=s.limit,
                device=device, dtype=s.dtype, max_gen_toks=s.max_gen_toks,
                apply_chat_template=s.apply_chat_template, num_fewshot=s.num_fewshot,
                profile=s.profile, samples=s.samples, temperature=s.temperature, top_p=s.top_p, seed=s.seed,
                include_paths=s.include_paths, data_dir=s.data_dir,
                resources={"num_cpus": ex.num_cpus_per_task, "num_gpus": ex.num_gpus_per_score})
