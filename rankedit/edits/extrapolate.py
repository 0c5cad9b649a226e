"""extrapolate: predict a later checkpoint of one run from earlier ones.

Inputs are checkpoints W(t_1) .. W(t_n) of one run, with strictly increasing
steps, and dW(t) = W(t) - W0.

- ``linear``: per entry, the least-squares line through dW(t_i) evaluated at
  the target step T. That is a fixed linear combination
  ``dW(T) = Σ c_i dW(t_i)`` with ``c_i = 1/n + (t_i - t̄)(T - t̄) / Σ(t_j - t̄)²``,
  so it streams and costs no more than a weighted sum.
- ``rank1`` (AlphaRL): per checkpoint the top singular triplet of dW(t_i);
  ``a(t) = s_1(t) u_1(t)`` with signs aligned to the last checkpoint's v_1;
  a(t) is fitted linearly in t (the same c_i) and evaluated at T, then times
  ``v_1ᵀ`` of the window's last checkpoint.
- ``expo`` (ExPO): ``W1 + α (W1 - W_ref)`` with W1 the last checkpoint and
  W_ref the first; α given, or ``(T - t_n) / (t_n - t_1)`` from the target
  step (the straight line through the two ends). ExPO from the base itself is
  ``scale`` with factor 1 + α.

- ``last``: the window's last checkpoint as it is, ``W(t_n)``: the control
  that belongs beside every extrapolation (what stopping early gives without
  extrapolating).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import torch
from pydantic import Field, StrictInt, model_validator

from rankedit.edits.registry import Cli, Control, EditParams, EditResult, MatrixInputs, register
from rankedit.edits.storage import MatrixSize, Storage, dense, low_rank
from rankedit.core.svd import edit_svd, svd_facts


class ExtrapolateParams(EditParams):
    mode: Literal["linear", "rank1", "expo", "last"] = Field(
        "linear", description="how to extrapolate; 'last' is the control: the window's last checkpoint as it is")
    steps: Annotated[Optional[tuple[StrictInt, ...]], Cli(metavar="S1,S2,...", required=True)] = Field(
        None, description="training step of each TUNED checkpoint, strictly increasing")
    target_step: Optional[StrictInt] = Field(None, description="step T to extrapolate to (linear, rank1; expo if no --alpha)")
    alpha: Optional[float] = Field(None, description="expo: W1 + α(W1 - W_ref); default from the target step")

    @model_validator(mode="after")
    def _check(self):
        if self.steps is None:
            raise ValueError("extrapolate needs the step of every checkpoint (--steps)")
        if len(self.steps) < 2:
            raise ValueError(f"extrapolate needs at least two checkpoints of the run, got {len(self.steps)}")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError(f"duplicate steps {list(self.steps)}")
        if list(self.steps) != sorted(self.steps):
            raise ValueError(f"steps must be given in increasing order, got {list(self.steps)}")
        if self.mode in ("linear", "rank1") and self.target_step is None:
            raise ValueError(f"extrapolate {self.mode} needs --target-step")
        if self.mode == "expo" and self.alpha is None and self.target_step is None:
            raise ValueError("extrapolate expo needs --alpha or --target-step")
        return self


def _describe(p: ExtrapolateParams) -> str:
    last = p.steps[-1] if p.steps else "?"
    if p.mode == "last":
        return f"the checkpoint at step {last} as it is, not extrapolated (control)"
    return f"{p.mode} extrapolation from steps ≤ {last} to step {p.target_step}"


def _cost(p: ExtrapolateParams, size: MatrixSize) -> Storage:
    """rank1 predicts an outer product a vᵀ (a rank-1 pair); the other modes a dense delta."""
    return low_rank(size, 1) if p.mode == "rank1" else dense(size)


def line_coefficients(steps: tuple[int, ...], target: float) -> list[float]:
    """Weights c_i with Σ c_i y_i = the least-squares line through (t_i, y_i) at ``target``."""
    t = torch.tensor(steps, dtype=torch.float64)
    tc = t - t.mean()
    c = 1.0 / len(steps) + tc * (float(target) - float(t.mean())) / tc.pow(2).sum()
    return [float(v) for v in c]


def expo_alpha(p: ExtrapolateParams) -> float:
    if p.alpha is not None:
        return p.alpha
    first, last = p.steps[0], p.steps[-1]
    return (p.target_step - last) / (last - first)


@register("extrapolate", ExtrapolateParams, help="""Extrapolate a run's checkpoints (TUNED... in step order) to --target-step.

    --mode linear: per-entry least-squares line through dW(t), evaluated at T;
    rank1 (AlphaRL): sign-aligned a(t) = s1(t)u1(t) fitted linearly in t, times
    v1ᵀ of the last checkpoint; expo: W1 + α(W1 - W_ref), W1 the last and W_ref
    the first checkpoint, α = --alpha or (T - t_n)/(t_n - t_1).
    Example: rankedit edit extrapolate BASE ck100 ck200 ck300 --steps 100,200,300 --target-step 750 -o OUT""",
          card_text="extrapolates the update from a window of checkpoints of one run to a target step",
          describe=_describe, inputs="run", control=lambda p: None if p.mode == "last" else Control("extrapolate", {"mode": "last"}), storage=_cost)
def extrapolate(x: MatrixInputs, p: ExtrapolateParams) -> EditResult:
    steps = x.steps if x.steps is not None else p.steps
    if steps is None or len(steps) != len(x.tuned):
        raise ValueError("extrapolate needs one step per checkpoint")
    w0 = x.w0
    if p.mode == "last":
        return EditResult(delta=x.tuned[-1] - w0)
    if p.mode == "expo":
        w1, ref = x.tuned[-1], x.tuned[0]
        return EditResult(delta=(w1 - w0) + expo_alpha(p) * (w1 - ref))
    coef = line_coefficients(tuple(steps), p.target_step)
    if p.mode == "linear":
        delta = torch.zeros_like(w0)
        for c, w in zip(coef, x.tuned):
            delta.add_(w - w0, alpha=c)
        return EditResult(delta=delta)
    # rank1: fit a(t) = s1(t) u1(t), sign-aligned to the last checkpoint's v1
    guarded = [edit_svd(w - w0, 1, x.seed) for w in x.tuned]
    triplets = [svd for svd, _ in guarded]
    v_last = triplets[-1].V[:, 0]
    a_target = torch.zeros_like(w0[:, 0])
    for c, svd in zip(coef, triplets):
        sign = -1.0 if float(svd.V[:, 0] @ v_last) < 0 else 1.0
        a_target.add_(svd.U[:, 0] * (svd.S[0] * sign), alpha=c)
    return EditResult(delta=torch.outer(a_target, v_last), rank_kept=1, **svd_facts(*(acc for _, acc in guarded)))
