"""Early stopping by extrapolation inside `rankedit run`: the I/O around ``rankedit.report.early_stop``.

- alpharl's inputs: the mean accuracy on the suite's trained tasks of every
  checkpoint its windows use, and of the final model (its default target),
  scored through the pipeline's own lm-eval settings and so its score cache;
- each extrapolate edit's relative weight error to the final checkpoint,
  streamed one matrix at a time;
- the report's block: one row per edit (mode, f, weight error, retention) and the speed-up.
"""

from __future__ import annotations

import math

from rankedit.core.errors import RankeditError
from rankedit.pipeline.models import Models
from rankedit.pipeline.plan import EditSpec, Plan
from rankedit.pipeline.plan_checks import ALPHARL_MODES
from rankedit.pipeline.progress import say
from rankedit.pipeline.scoring_options import score_options
from rankedit.core.modules import classify
from rankedit.files.checkpoint import Checkpoint
from rankedit.report.early_stop import mean_retention, speedup
from rankedit.scoring.failures import ScoringFailed
from rankedit.scoring import score as scoring

EXTRAPOLATE = "extrapolate"
DEFAULT_EXTRAPOLATE_FRACTION = 0.4


def window(e: EditSpec, ckpts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The checkpoints an extrapolate edit uses: those up to its fraction of the last step."""
    frac = e.checkpoints or DEFAULT_EXTRAPOLATE_FRACTION
    return [(s, p) for s, p in ckpts if s <= frac * ckpts[-1][0]] if ckpts else []


def _alpharl_edits(plan: Plan) -> list[EditSpec]:
    return [e for e in plan.edits if e.method == EXTRAPOLATE and e.params.get("mode") in ALPHARL_MODES]


def trained_accuracy(result, label: str) -> float:
    """Mean primary metric of ``label`` over the suite's trained (non-control) tasks."""
    control = set(result.suite.control_tasks)
    vals = [result.get(label, t).value for t in result.tasks if t not in control]
    if not vals:
        raise RankeditError("alpharl needs a trained (non-control) task in the suite to read accuracies from")
    return sum(vals) / len(vals)


def score_window_checkpoints(plan: Plan, models: Models, quiet: bool = False, executor=None) -> None:
    """Fill ``models.accuracies`` for every checkpoint an alpharl edit uses and for the final models."""
    labels: dict[str, str] = {}
    for e in _alpharl_edits(plan):
        final, ckpts = models.run(e.of)
        labels[e.of] = final
        labels.update({f"{e.of}-step-{s}": p for s, p in window(e, ckpts)})
    labels = {k: v for k, v in labels.items() if v not in models.accuracies}
    if not labels:
        return
    say(f"score: {len(labels)} checkpoints for alpharl's accuracies (cached with the run's scores)", quiet)
    try:
        result = scoring.score(labels, executor=executor, **score_options(plan))
    except ScoringFailed as err:
        raise RankeditError(f"alpharl needs the scores of the run's checkpoints: {err}") from None
    for label, path in labels.items():
        models.accuracies[path] = trained_accuracy(result, label)


def fill_accuracies(e: EditSpec, params: dict, models: Models) -> None:
    """alpharl's accuracies (one per window checkpoint) and target (default: the final model's)."""
    final, ckpts = models.run(e.of)
    used = window(e, ckpts)
    if "accuracies" in params:
        raise RankeditError(f"edit {e.name}: alpharl's accuracies come from the pipeline's scores; "
                            "do not give params.accuracies")
    if not models.accuracies:  # validation before the checkpoints are scored: stand-ins of the right shape
        params["accuracies"] = [i / max(1, len(used) - 1) for i in range(len(used))]
        params.setdefault("target_accuracy", 1.0)
        return
    params["accuracies"] = [models.accuracies[p] for _, p in used]
    params.setdefault("target_accuracy", models.accuracies[final])
    if len(set(params["accuracies"])) < 2:
        raise RankeditError(f"edit {e.name}: the window's checkpoints all score {params['accuracies'][0]:.4f}, "
                            "so alpharl has no line to fit; widen 'checkpoints' or score more problems")


def relative_weight_errors(base: str, final: str, edited: list[str]) -> list[float]:
    """‖W_edit − W_T‖_F / ‖W_T − W_0‖_F for each edited checkpoint, over the 2-D attention and MLP
    matrices: one pass, W_0 and W_T read once per matrix whatever the number of edits."""
    ck0, ckt, cks = Checkpoint(base), Checkpoint(final), [Checkpoint(p) for p in edited]
    num, den = [0.0] * len(cks), 0.0
    for name in ck0.names:
        shape = ck0.info(name).shape
        if len(shape) != 2 or not classify(name, tuple(shape), ck0.model_type).is_matrix:
            continue
        wt = ckt.get(name).double()
        den += float((wt - ck0.get(name).double()).pow(2).sum())
        for i, ck in enumerate(cks):
            num[i] += float((ck.get(name).double() - wt).pow(2).sum())
    return [math.sqrt(n / den) if den > 0 else math.nan for n in num]


def relative_weight_error(base: str, final: str, edited: str) -> float:
    """``relative_weight_errors`` of one edited checkpoint."""
    return relative_weight_errors(base, final, [edited])[0]


def early_stop_block(plan: Plan, models: Models, edits: dict[str, dict], rows: list[dict]) -> dict | None:
    """The report's ``early_stop``: a row per extrapolate edit and the speed-up (None: the plan has none)."""
    sweep = [e for e in plan.edits if e.method == EXTRAPOLATE]
    if not sweep:
        return None
    errors = {}
    for of in dict.fromkeys(e.of for e in sweep):  # one pass per run the edits extrapolate
        mine = [e for e in sweep if e.of == of]
        errors.update(zip((e.name for e in mine), relative_weight_errors(
            models.base, models.run(of)[0], [edits[e.name]["path"] for e in mine])))
    out = []
    for e in sweep:
        params = edits[e.name]["params"]
        err = errors[e.name]
        out.append({"edit": e.name, "mode": "rank1-step" if params["mode"] == "rank1" else params["mode"],
                    "of": e.of, "f": e.checkpoints or DEFAULT_EXTRAPOLATE_FRACTION,
                    "window_end": params["steps"][-1], "target_step": params.get("target_step"),
                    "weight_error": err if math.isfinite(err) else None,
                    "retention": mean_retention(rows, e.name)})
    targets = [edits[e.name]["params"].get("target_accuracy") for e in _alpharl_edits(plan)]
    return {"rows": out, "speedup": speedup(out),
            "target_accuracy": targets[0] if targets and len(set(targets)) == 1 else None,
            "accuracies": {p: a for p, a in models.accuracies.items()}}
