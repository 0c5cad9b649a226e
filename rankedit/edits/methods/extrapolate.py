"""extrapolate: predict a later checkpoint of one run from earlier ones.

Inputs are checkpoints W(t_1) .. W(t_n) of one run, with strictly increasing
steps, and dW(t) = W(t) - W0.

- ``linear``: per entry, the least-squares line through dW(t_i) evaluated at
  the target step T. That is a fixed linear combination
  ``dW(T) = Σ c_i dW(t_i)`` with ``c_i = 1/n + (t_i - t̄)(T - t̄) / Σ(t_j - t̄)²``,
  so it streams and costs no more than a weighted sum.
- ``rank1-step`` (rankedit's own; called ``rank1`` before, a deprecated alias):
  per checkpoint the top singular triplet of dW(t_i); ``a(t) = s_1(t) u_1(t)``
  with signs aligned to the last checkpoint's v_1 (the right vector); a(t) is
  fitted linearly in training step t (the same c_i) and evaluated at T, then
  times ``v_1ᵀ`` of the window's last checkpoint, built on the base.
- ``alpharl`` (AlphaRL's method, faithful to its public code,
  ``AlphaRLBuildPerdictModel.py``): ``a(t) = s_1(t) u_1(t)``
  sign-aligned on the left vector walking back from the last checkpoint (each
  flipped when its cosine with the next, already aligned, one is negative); a
  one-component PLS of the per-checkpoint accuracies on the a(t) (columns
  standardised, as scikit-learn's default), its score regressed on accuracy
  and inverted at ``target_accuracy``; the WHOLE predicted rank-1 component
  ``a* v_1ᵀ`` is added to the window's last checkpoint, ``W(t_n) + a* v_1(t_n)ᵀ``,
  which already holds the update up to t_n: the rank-1 part is counted about
  twice, and energy_kept (against ΔW(t_n)) is often 2 or more. As the code
  does, the other tensors (embeddings, norms) are the last checkpoint's
  (``rest`` defaults to ``tuned`` here). The accuracies are given (one per
  checkpoint); a plan fills them from its scores.
- ``alpharl-increment``: the same prediction a*, but only its increment over
  the last checkpoint along the same direction is added:
  ``W(t_n) + (a* - a(t_n)) v_1(t_n)ᵀ`` (``a(t_n) = s_1(t_n) u_1(t_n)``), i.e.
  the last checkpoint's rank-1 component replaced by the predicted one. On a
  trajectory that is exactly rank-1 and linear in accuracy it gives ``ΔW`` at
  the target accuracy. Other tensors as ``alpharl``.
- ``expo`` (ExPO): ``W1 + α (W1 - W_ref)`` with W1 the last checkpoint and
  W_ref the first; α given, or ``(T - t_n) / (t_n - t_1)`` from the target
  step (the straight line through the two ends). ExPO from the base itself is
  ``scale`` with factor 1 + α.

- ``last``: the window's last checkpoint as it is, ``W(t_n)``: the control
  that belongs beside every extrapolation (what stopping early gives without
  extrapolating).
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal, Optional

import torch
from pydantic import Field, StrictInt, field_validator, model_validator

from rankedit.edits.registry import Cli, Control, EditResult, MatrixInputs, SvdParams, register
from rankedit.edits.storage import MatrixSize, Storage, dense, low_rank
from rankedit.core.svd import edit_svd, storage_noise, svd_facts


# a sign decision is ambiguous where the top direction is not identifiable (s1/s2 below this) ...
SIGN_GAP = 1.05
# ... or where the vector is nearly orthogonal to the one it is aligned with (the sign is then noise)
SIGN_COS = 0.1
_warned_alias = []


# the modes built on AlphaRL's prediction, which start from the last checkpoint's other tensors by default
ALPHARL_MODES = ("alpharl", "alpharl-increment")


class ExtrapolateParams(SvdParams):
    mode: Literal["linear", "rank1-step", "alpharl", "alpharl-increment", "expo", "last", "rank1"] = Field(
        "linear", description="how to extrapolate; 'last' is the control: the window's last checkpoint as it is; "
                              "'rank1' is the deprecated name of 'rank1-step'")
    rest: Optional[Literal["base", "tuned"]] = Field(
        None, description="non-matrix tensors (embeddings, lm_head, norms, biases): base or tuned (the last "
                          "checkpoint's); default base, and tuned for alpharl and alpharl-increment (AlphaRL's code "
                          "starts from the last checkpoint)")
    steps: Annotated[Optional[tuple[StrictInt, ...]], Cli(metavar="S1,S2,...", required=True)] = Field(
        None, description="training step of each TUNED checkpoint, strictly increasing")
    target_step: Optional[StrictInt] = Field(None, description="step T to extrapolate to (linear, rank1; expo if no --alpha)")
    alpha: Optional[float] = Field(None, description="expo: W1 + α(W1 - W_ref); default from the target step")
    accuracies: Annotated[Optional[tuple[float, ...]], Cli(metavar="A1,A2,...")] = Field(
        None, description="alpharl, alpharl-increment: the accuracy of each TUNED checkpoint, in step order")
    target_accuracy: Optional[float] = Field(None, description="alpharl, alpharl-increment: the accuracy to extrapolate to")

    @classmethod
    def rest_default(cls, values) -> str:
        """alpharl's modes start from the last checkpoint, as AlphaRL's code does; the others from the base."""
        return "tuned" if values.get("mode") in ALPHARL_MODES else "base"

    @model_validator(mode="before")
    @classmethod
    def _fill_rest(cls, data):
        if isinstance(data, dict) and data.get("rest") is None:
            data = {**data, "rest": cls.rest_default(data)}
        return data

    @field_validator("mode", mode="before")
    @classmethod
    def _alias(cls, v):
        if v == "rank1":  # the old name: plans written before keep working, and say so once
            if not _warned_alias:
                _warned_alias.append(True)
                logging.getLogger("rankedit").warning(
                    "extrapolate: mode 'rank1' is now called 'rank1-step' (a fit in training step, not AlphaRL's)")
            return "rank1-step"
        return v

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
        if self.mode in ("linear", "rank1-step") and self.target_step is None:
            raise ValueError(f"extrapolate {self.mode} needs --target-step")
        if self.mode in ALPHARL_MODES:
            if self.accuracies is None or self.target_accuracy is None:
                raise ValueError(f"extrapolate {self.mode} needs --accuracies (one per checkpoint) and --target-accuracy")
            if len(self.accuracies) != len(self.steps):
                raise ValueError(f"extrapolate {self.mode}: {len(self.accuracies)} accuracies for {len(self.steps)} checkpoints")
            if len(set(self.accuracies)) < 2:
                raise ValueError(f"extrapolate {self.mode}: the accuracies do not vary, so no line relates them to a(t)")
        if self.mode == "expo" and self.alpha is None and self.target_step is None:
            raise ValueError("extrapolate expo needs --alpha or --target-step")
        return self


def _describe(p: ExtrapolateParams) -> str:
    last = p.steps[-1] if p.steps else "?"
    if p.mode == "last":
        return f"the checkpoint at step {last} as it is, not extrapolated (control)"
    if p.mode == "alpharl":
        return (f"AlphaRL extrapolation from steps ≤ {last} to accuracy {p.target_accuracy:g}: the whole predicted "
                f"rank-1 component a*·v1ᵀ added to the checkpoint at step {last}")
    if p.mode == "alpharl-increment":
        return (f"AlphaRL's prediction from steps ≤ {last} to accuracy {p.target_accuracy:g}, only its increment "
                f"(a* − a(t_n))·v1ᵀ added to the checkpoint at step {last}")
    return f"{p.mode} extrapolation from steps ≤ {last} to step {p.target_step}"


def _cost(p: ExtrapolateParams, size: MatrixSize) -> Storage:
    """rank1-step predicts an outer product a vᵀ (a rank-1 pair); the other modes a dense delta
    (alpharl's is added to the window's last checkpoint, which is dense)."""
    return low_rank(size, 1) if p.mode == "rank1-step" else dense(size)


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
    rank1-step: sign-aligned a(t) = s1(t)u1(t) fitted linearly in t, times
    v1ᵀ of the last checkpoint, on the base ('rank1' is its deprecated name);
    alpharl (AlphaRL's code): one-component PLS of --accuracies on a(t),
    inverted at --target-accuracy; the WHOLE predicted rank-1 component a*·v1ᵀ
    is added to the last checkpoint, which already holds the update so far
    (energy kept is often 2 or more); other tensors from the last checkpoint
    (--rest tuned by default here, as AlphaRL's code); alpharl-increment: the
    same a*, but only (a* - a(t_n))·v1ᵀ is added to the last checkpoint;
    expo: W1 + α(W1 - W_ref), W1 the last and W_ref the first checkpoint,
    α = --alpha or (T - t_n)/(t_n - t_1). --dtype float32 writes the result
    unrounded (AlphaRL's code saves float32).
    Example: rankedit edit extrapolate BASE ck100 ck200 ck300 --steps 100,200,300 --target-step 750 -o OUT""",
          card_text="extrapolates the update from a window of checkpoints of one run to a target step",
          describe=_describe, inputs="run", control=lambda p: None if p.mode == "last" else Control("extrapolate", {"mode": "last"}), storage=_cost)
def extrapolate(x: MatrixInputs, p: ExtrapolateParams) -> EditResult:
    steps = x.steps if x.steps is not None else p.steps
    if steps is None or len(steps) != len(x.tuned):
        raise ValueError("extrapolate needs one step per checkpoint")
    w0 = x.w0
    if p.mode == "last":
        # the checkpoint itself, not w0 + (W - w0), which float rounding could move by an ulp
        return EditResult(delta=x.tuned[-1] - w0, weight=x.tuned[-1])
    if p.mode == "expo":
        w1, ref = x.tuned[-1], x.tuned[0]
        return EditResult(delta=(w1 - w0) + expo_alpha(p) * (w1 - ref))
    if p.mode in ALPHARL_MODES:
        return _alpharl(x, p, *zip(*_top_pairs(x, w0, p)))
    coef = line_coefficients(tuple(steps), p.target_step)
    if p.mode == "linear":
        delta = torch.zeros_like(w0)
        for c, w in zip(coef, x.tuned):
            delta.add_(w - w0, alpha=c)
        return EditResult(delta=delta)
    triplets, accs = zip(*_top_pairs(x, w0, p))
    # rank1-step: fit a(t) = s1(t) u1(t), sign-aligned to the last checkpoint's v1
    v_last = triplets[-1].V[:, 0]
    a_target = torch.zeros_like(w0[:, 0])
    ambiguous = 0
    for c, svd, acc in zip(coef, triplets, accs):
        cos = float(svd.V[:, 0] @ v_last)
        sign = -1.0 if cos < 0 else 1.0
        ambiguous += _ambiguous(acc, cos)
        a_target.add_(svd.U[:, 0] * (svd.S[0] * sign), alpha=c)
    return EditResult(delta=torch.outer(a_target, v_last), rank_kept=1, sign_ambiguous=ambiguous, **svd_facts(*accs))


def _top_pairs(x: MatrixInputs, w0: torch.Tensor, p) -> list:
    """(triplets, accuracy) of the top pair of each checkpoint's update."""
    stored = x.stored or (None,) * len(x.tuned)
    return [_top_pair(w, w0, x.seed, p.exact_svd, d) for w, d in zip(x.tuned, stored)]


def _top_pair(w: torch.Tensor, w0: torch.Tensor, seed: int, exact: bool, stored: torch.dtype | None = None):
    """The top singular pair of one checkpoint's update W - W0 (its storage noise: that of W, read as ``stored``)."""
    return edit_svd(w - w0, 1, seed, exact=exact, noise=lambda: storage_noise(w, stored))


def _near_tie(acc) -> bool:
    """s1 / s2 < SIGN_GAP, from the decomposition's relative gap (s1 - s2) / s1."""
    return (1.0 - acc.rel_gap) * SIGN_GAP > 1.0


def _ambiguous(acc, cos: float) -> bool:
    """A sign decision rests on noise: a near-tie of s1 and s2, or a nearly orthogonal reference."""
    return _near_tie(acc) or abs(cos) < SIGN_COS


def align_left_backwards(au: list[torch.Tensor], accs) -> tuple[list[torch.Tensor], int]:
    """AlphaRL's rule: walk back from the last checkpoint, flipping each s1 u1 whose cosine with the
    next (already aligned) one is negative. Returns the aligned vectors and the ambiguous decisions."""
    out = [au[-1]]
    ambiguous = 0
    for vec, acc in zip(reversed(au[:-1]), reversed(accs[:-1])):
        ref = out[0]
        den = float(vec.norm() * ref.norm())
        cos = float(vec @ ref) / den if den > 0 else 0.0
        ambiguous += _ambiguous(acc, cos)
        out.insert(0, -vec if cos < 0 else vec)
    return out, ambiguous + int(_near_tie(accs[-1]))


def pls1_inverse(x: torch.Tensor, y: torch.Tensor, target: float) -> torch.Tensor:
    """The row x* a one-component PLS of y on the rows of x (n x m) predicts for y = ``target``.

    As scikit-learn's ``PLSRegression(n_components=1)`` (columns centred and scaled
    to unit sample standard deviation, a constant column left unscaled), then
    AlphaRL's inversion: the score t is regressed on y's line ``y = b + c t``,
    ``t* = (target - b) / c`` and ``x* = t* p ⊙ std + mean``, p the x-loadings.
    """
    x, y = x.double(), y.double()
    mean = x.mean(0)
    std = x.std(0, correction=1)
    std = torch.where(std > 0, std, torch.ones_like(std))
    xs = (x - mean) / std
    w = xs.T @ (y - y.mean())
    if float(w.norm()) == 0:
        raise ValueError("alpharl: the accuracies are unrelated to a(t) (no PLS direction)")
    t = xs @ (w / w.norm())
    c = float(t @ (y - y.mean())) / float(t @ t)
    b = float(y.mean())  # the scores are centred: the line passes through (0, mean y)
    t_star = (target - b) / c
    return t_star * (xs.T @ t) / float(t @ t) * std + mean


def _alpharl(x: MatrixInputs, p: ExtrapolateParams, triplets, accs) -> EditResult:
    au = [svd.U[:, 0] * svd.S[0] for svd in triplets]
    aligned, ambiguous = align_left_backwards(au, accs)
    pred = pls1_inverse(torch.stack(aligned), torch.tensor(p.accuracies, dtype=torch.float64), p.target_accuracy)
    v_last = triplets[-1].V[:, 0]  # the last checkpoint is never flipped: its own pair carries the sign
    # alpharl adds the whole a*, as AlphaRL's code; alpharl-increment only what a* adds to a(t_n) = aligned[-1]
    added = pred.to(x.w0.dtype) - (aligned[-1] if p.mode == "alpharl-increment" else 0)
    delta = (x.tuned[-1] - x.w0) + torch.outer(added, v_last)
    return EditResult(delta=delta, sign_ambiguous=int(ambiguous), **svd_facts(*accs))
