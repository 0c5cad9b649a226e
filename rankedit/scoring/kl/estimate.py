"""KL travelled from the base, the arithmetic alone (pure functions of tensors and arrays).

RL's Razor measures how far a tuned model π moved from its base π_b on the
task's prompts x by the KL divergence on π's own samples y ~ π(·|x):

- per token:    KL = E_{x, y~π} [ (1/|y|) Σ_t (log π(y_t|x,y_<t) − log π_b(y_t|x,y_<t)) ];
- per sequence: the same sum without the 1/|y|.

Two estimators of each, from the same samples; each is unbiased for the quantity it is named after:

- Monte Carlo (``mc``): the log-ratio at each sampled token, r_t = log π(y_t|·) − log π_b(y_t|·);
  per sequence ``Σ_t r_t``, per token ``(1/|y|) Σ_t r_t``: the quantities' integrands themselves.
- Rao-Blackwellised (``rb``), per sequence: ``Σ_t KL_t``, KL_t the exact KL of the two next-token
  distributions over the whole vocabulary at the sampled prefix, Σ_v π(v)(log π(v) − log π_b(v)).
  E[r_t | prefix] = KL_t, and whether position t is reached depends on the prefix alone, so
  E[Σ_t KL_t] = E[Σ_t r_t] exactly, with the variance of the token drawn at each position removed.
- ``rb`` per token: the Monte Carlo per-token term with the sequence-level difference as a control
  variate, ``(1/|y|) Σ_t r_t − c (Σ_t r_t − Σ_t KL_t)``, c = 1 / (mean length of the *other*
  completions). E[Σ_t r_t − Σ_t KL_t | x] = 0 and c does not depend on this completion, so its
  expectation is the per-token KL exactly; where every completion has the same length L it is
  ``(1/L) Σ_t KL_t``. (``(1/|y|) Σ_t KL_t`` is not unbiased for the per-token KL: 1/|y| depends
  on the tokens drawn, the EOS among them. It estimates the mean over a completion's positions of
  the exact next-token KL, which is another quantity, and is not reported.)

|y| counts the completion's tokens up to and including its first end-of-sequence
token (the EOS is a token π chose), or all of them when the token limit cut it
off (a *truncated* sample). Intervals: percentile bootstrap over prompts (each
prompt's samples averaged first), seeded, with ``rankedit.scoring.retention``'s
resampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from rankedit.core.errors import RankeditError
from rankedit.scoring.retention import Interval, as_scores, bootstrap_indices, check_alpha, percentiles


def completion_mask(tokens: torch.Tensor, eos_ids: Sequence[int]) -> torch.Tensor:
    """(B, T) bool: True on each completion's tokens up to and including its first EOS."""
    is_eos = torch.isin(tokens, torch.as_tensor(list(eos_ids), dtype=tokens.dtype, device=tokens.device))
    after = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()  # EOS tokens strictly before t
    return after == 0


def position_kl(logp: torch.Tensor, logp_base: torch.Tensor) -> torch.Tensor:
    """Exact KL(π ‖ π_b) of the next-token distributions at every position: (..., V) -> (...).

    Tokens π gives probability 0 add nothing (0 · log 0 = 0), also where π_b gives them 0."""
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logp_base), torch.zeros((), dtype=p.dtype, device=p.device))
    return terms.sum(-1)


@dataclass(frozen=True)
class SampleTerms:
    """Per completion: the Monte Carlo and Rao-Blackwellised sums, its length, whether it was cut off."""

    mc_sum: np.ndarray
    rb_sum: np.ndarray
    length: np.ndarray
    truncated: np.ndarray


def sample_terms(logits: torch.Tensor, logits_base: torch.Tensor, tokens: torch.Tensor,
                 eos_ids: Sequence[int]) -> SampleTerms:
    """Both estimators' sums for a batch of completions, from teacher-forced logits.

    ``logits``/``logits_base``: (B, T, V), the two models' next-token logits at the T
    positions that predict ``tokens`` (B, T), the sampled completions."""
    if logits.shape != logits_base.shape or logits.shape[:2] != tokens.shape:
        raise RankeditError(f"internal: logits {tuple(logits.shape)}, {tuple(logits_base.shape)} do not match "
                            f"tokens {tuple(tokens.shape)}")
    lp = torch.log_softmax(logits.double(), -1)
    lq = torch.log_softmax(logits_base.double(), -1)
    mask = completion_mask(tokens, eos_ids)
    ratio = (lp.gather(-1, tokens[..., None]) - lq.gather(-1, tokens[..., None])).squeeze(-1)
    rb = position_kl(lp, lq)
    zero = torch.zeros((), dtype=ratio.dtype, device=ratio.device)
    ended = torch.isin(tokens, torch.as_tensor(list(eos_ids), dtype=tokens.dtype, device=tokens.device)).any(1)
    return SampleTerms(mc_sum=torch.where(mask, ratio, zero).sum(1).cpu().numpy(),
                       rb_sum=torch.where(mask, rb, zero).sum(1).cpu().numpy(),
                       length=mask.sum(1).cpu().numpy(), truncated=(~ended).cpu().numpy())


def join(parts: Sequence[SampleTerms]) -> SampleTerms:
    return SampleTerms(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("mc_sum", "rb_sum", "length", "truncated")))


def prompt_means(values: np.ndarray, prompt: np.ndarray, n_prompts: int) -> np.ndarray:
    """Each prompt's mean over its samples (every prompt must have at least one)."""
    counts = np.bincount(prompt, minlength=n_prompts)
    if (counts == 0).any():
        raise RankeditError(f"internal: {int((counts == 0).sum())} prompt(s) without samples")
    return np.bincount(prompt, weights=values, minlength=n_prompts) / counts


def mean_interval(per_prompt, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """Mean over prompts with its percentile-bootstrap interval over prompts."""
    check_alpha(alpha)
    x = as_scores(per_prompt, "per-prompt KL")
    if x.size == 0:
        raise RankeditError("no prompts to estimate the KL on")
    reps = x[bootstrap_indices(x.size, n_boot, seed)].mean(axis=1)
    return Interval(float(x.mean()), *percentiles(reps, alpha))


def per_token_rb_with(mc_sum: np.ndarray, rb_sum: np.ndarray, length: np.ndarray, c) -> np.ndarray:
    """Each completion's per-token ``rb`` term for the control-variate weight(s) ``c``:
    ``mc_sum / |y| − c (mc_sum − rb_sum)``. Unbiased for the per-token KL for any ``c`` that does not depend on
    the completion itself (its expectation is E[mc_sum / |y|], since E[mc_sum − rb_sum] = 0)."""
    return mc_sum / length - c * (mc_sum - rb_sum)


def leave_one_out_weights(length: np.ndarray) -> np.ndarray:
    """c_i = 1 / (mean length of the completions other than i): close to the 1/|y| that multiplies the
    sequence sums, yet independent of completion i. With one completion there are no others: c = 0 (Monte Carlo)."""
    length = np.asarray(length, dtype=np.float64)
    n = length.size
    if n < 2:
        return np.zeros(n)
    return (n - 1) / (length.sum() - length)


def per_token_rb(mc_sum: np.ndarray, rb_sum: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The per-token ``rb`` term of every completion (``per_token_rb_with`` at ``leave_one_out_weights``)."""
    length = np.asarray(length, dtype=np.float64)
    return per_token_rb_with(mc_sum, rb_sum, length, leave_one_out_weights(length))


def summarize(terms: SampleTerms, prompt: np.ndarray, n_prompts: int, n_boot: int = 2000, seed: int = 0,
              alpha: float = 0.05) -> dict:
    """The KL travelled, both estimators, per token and per sequence, each with its interval over prompts."""
    length = terms.length.astype(np.float64)
    if (length < 1).any():
        raise RankeditError("internal: a completion without tokens")

    def est(values):
        return asdict(mean_interval(prompt_means(values, prompt, n_prompts), n_boot, seed, alpha))

    return {
        "per_token": {"mc": est(terms.mc_sum / length), "rb": est(per_token_rb(terms.mc_sum, terms.rb_sum, length))},
        "per_sequence": {"mc": est(terms.mc_sum), "rb": est(terms.rb_sum)},
        "mean_tokens": float(length.mean()),
        "truncation_rate": float(terms.truncated.mean()),
        "prompts": int(n_prompts),
        "samples": int(length.size),
        "interval": f"{round(100 * (1 - alpha))}% percentile bootstrap over prompts ({n_boot} replicates)",
    }
