"""The pipeline's KL stage: KL travelled from the base by base (0), tuned, SFT and every edit.

Run when the plan has ``kl:`` (``rankedit.pipeline.plan.KLSpec``). The prompts
are the RL task's: for the organism its RL run's own training prompts, otherwise
the plan's ``kl.prompts_file``, ``kl.task``, or the first task of the score's
suite that is not a control task. Each model's estimate is cached
(``rankedit.scoring.kl.sampler``); one model's failure is recorded and the others go on.
"""

from __future__ import annotations

from rankedit.core.errors import RankeditError
from rankedit.pipeline.models import Models, model_labels
from rankedit.pipeline.plan import Plan
from rankedit.pipeline.progress import say
from rankedit.organism import tasks
from rankedit.scoring.kl.sampler import base_model, kl
from rankedit.scoring.kl.prompts import read_prompts, take, task_prompts
from rankedit.scoring.suites import custom_suite, get_suite

# rankedit.organism.rl draws the RL run's training prompts with this seed plus the organism's seed
RL_PROMPT_SEED = 10_000
# what the report keeps of each model's kl.json
KEPT = ("per_token", "per_sequence", "mean_tokens", "truncation_rate", "prompts", "samples", "cached")


def organism_prompts(n: int, organism_seed: int = 0) -> list[str]:
    """The first ``n`` prompts the organism's RL run trained on (test prompts excluded, as there)."""
    rows = tasks.rl_prompts(n, seed=RL_PROMPT_SEED + organism_seed, exclude=tasks.held_out_prompts())
    return [r["prompt"] for r in rows]


def kl_prompts(plan: Plan) -> list[str]:
    """The plan's KL prompts, read once (a bad file or task stops the run here, not once per model)."""
    spec, s = plan.kl, plan.score
    if spec.prompts_file is not None:
        return take(read_prompts(spec.prompts_file), spec.prompts)
    if spec.task is not None:
        return take(task_prompts(spec.task, s.include_paths, spec.prompts), None)
    if plan.organism is not None:
        return organism_prompts(spec.prompts or 64, plan.organism.seed)

    suite = get_suite(s.suite) if s.suite is not None else custom_suite(s.tasks, s.include_paths)
    trained = [t for t in suite.tasks if t not in suite.control_tasks]
    if not trained:
        raise RankeditError("kl: the score's tasks are all control tasks; give kl.task or kl.prompts_file")
    return take(task_prompts(trained[0], s.include_paths, spec.prompts), None)


def max_tokens(plan: Plan) -> int:
    """The plan's ``kl.max_tokens``, else the score's max_gen_toks, else 16 (organism) or 256."""
    return plan.kl.max_tokens or plan.score.max_gen_toks or (16 if plan.organism is not None else 256)


def run_kl(plan: Plan, models: Models, edits: dict[str, dict], quiet: bool = False) -> dict:
    """{"settings": ..., "models": label -> the KL estimates of that model from the base (or {"error": why})}."""
    spec = plan.kl
    labels = model_labels(plan, models, edits)
    prompts = kl_prompts(plan)
    device = spec.device or plan.score.device or "cpu"
    out = {}
    for label, path in labels.items():
        say(f"kl: {label}", quiet)
        try:
            doc = kl(path, models.base, prompts, samples=spec.samples, max_tokens=max_tokens(plan), seed=spec.seed,
                     batch_size=spec.batch_size, device=device, dtype=spec.dtype, n_boot=plan.score.n_boot)
        except Exception as e:  # noqa: BLE001 - one model's failure must not lose the others
            out[label] = {"error": str(e).splitlines()[0] if str(e) else type(e).__name__}
            continue
        out[label] = {k: doc[k] for k in KEPT}
    base_model.cache_clear()  # loaded once for every model above; not kept past the stage
    settings = {"samples": spec.samples, "prompts": len(prompts), "max_tokens": max_tokens(plan), "seed": spec.seed,
                "dtype": spec.dtype, "temperature": 1.0}
    return {"settings": settings, "models": out}
