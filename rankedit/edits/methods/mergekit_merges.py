"""mergekit's own merges of several RL runs: task-arithmetic, ties and dare-ties.

The math is mergekit's, called through its public tensor API (``mergekit.merge_methods.api.merge_tensors``
on the method mergekit registers as ``task_arithmetic``, ``ties``, ``dare_ties``), on the same road as every
edit (``rankedit.edits.matrix_edit``): so a merge runs inside ``mergekit.merge.run_merge`` where mergekit's
definition of the architecture fits the checkpoint, tensor by tensor elsewhere (per-expert MoE checkpoints),
with the same manifest, coverage and checks as an edit. Inputs arrive in float32, so mergekit's kernel works
in float32 and the result is rounded once, to the stored dtype (a plain mergekit-yaml merge of bf16 models
computes in bf16 unless its ``dtype`` says otherwise: ``tests/test_merge.py`` checks the two agree with
``dtype: float32``).

- task-arithmetic: W0 + Σ_i w_i ΔW_i (Ilharco et al.); weights default to 1 (a soup of n runs: 1/n each).
- ties: each ΔW_i trimmed to its top ``density`` share of entries by magnitude, a sign elected per entry
  (the sign of Σ_i w_i ΔW_i), and the agreeing entries averaged by weight (Yadav et al.).
- dare-ties: ties with DARE's random drop (keep ``density``, rescale by 1/density) in place of the trim,
  seeded per matrix (Yu et al.).
"""

from __future__ import annotations

from typing import Optional

import torch
from mergekit.merge_methods.api import merge_tensors
from pydantic import Field

from rankedit.edits.registry import EditParams, EditResult, MatrixInputs, register


class TaskArithmeticParams(EditParams):
    weights: Optional[tuple[float, ...]] = Field(
        None, description="weight of each run's update, in the order the runs are given (default: 1 each; "
                          "a soup of n runs: 1/n each)")


class TiesParams(TaskArithmeticParams):
    density: float = Field(0.2, gt=0, le=1, description="share of each update's entries kept before the sign "
                                                        "election (TIES's k; 0.2 as in the paper)")


class DareTiesParams(TaskArithmeticParams):
    density: float = Field(0.1, gt=0, le=1, description="share of each update's entries DARE keeps at random "
                                                        "(1 - drop rate; 0.1 as in the paper's p = 0.9), rescaled by 1/density")


def weights_of(p: TaskArithmeticParams, n: int) -> list[float]:
    if p.weights is None:
        return [1.0] * n
    if len(p.weights) != n:
        raise ValueError(f"{len(p.weights)} weights for {n} runs")
    return list(p.weights)


def mergekit_merge(x: MatrixInputs, method: str, parameters: dict) -> EditResult:
    """mergekit's ``method`` on base + runs (the base first), as a delta of W0."""
    merged = merge_tensors([x.w0, *x.tuned], method, parameters=parameters, base_index=0)
    return EditResult(delta=merged.to(x.w0.dtype) - x.w0)


def _describe(what: str):
    def describe(p) -> str:
        w = "weights 1 each" if p.weights is None else "weights " + ", ".join(f"{v:g}" for v in p.weights)
        d = f", density {p.density:g}" if hasattr(p, "density") else ""
        return f"{what} of the runs' updates ({w}{d}; mergekit's own)"
    return describe


@register("task-arithmetic", TaskArithmeticParams, inputs="runs", describe=_describe("weighted sum"),
          help="""Merge: W0 + Σ w_i ΔW_i, mergekit's task_arithmetic.

    Weights default to 1 each (the sum of the updates); a soup of n runs is --weights 1/n,...""")
def task_arithmetic(x: MatrixInputs, p: TaskArithmeticParams) -> EditResult:
    return mergekit_merge(x, "task_arithmetic", {"weight": weights_of(p, len(x.tuned))})


@register("ties", TiesParams, inputs="runs", describe=_describe("TIES merge"),
          help="""Merge: trim each update to its top --density entries, elect signs, average agreeing ones (TIES).

    mergekit's ties, its defaults (normalize by the agreeing weights).""")
def ties(x: MatrixInputs, p: TiesParams) -> EditResult:
    n = len(x.tuned)
    return mergekit_merge(x, "ties", {"weight": weights_of(p, n), "density": [p.density] * n})


@register("dare-ties", DareTiesParams, inputs="runs", describe=_describe("DARE-TIES merge"),
          help="""Merge: DARE's random drop (keep --density, rescaled), then TIES's sign election.

    mergekit's dare_ties; the drop is seeded per matrix (--seed), so a rebuild is bit-identical.""")
def dare_ties(x: MatrixInputs, p: DareTiesParams) -> EditResult:
    n = len(x.tuned)
    # mergekit draws DARE's mask from torch's global generator: seed it for this matrix, and leave it as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(x.seed)
        return mergekit_merge(x, "dare_ties", {"weight": weights_of(p, n), "density": [p.density] * n})
