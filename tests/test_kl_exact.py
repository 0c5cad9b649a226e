"""KL per token and per sequence against exact enumeration: a tiny autoregressive model (3 tokens, token 0 the
EOS, at most 3 tokens per completion) whose next-token logits are a seeded table of the prefix, so every
completion, of length 1, 2 or 3, ended or cut off, and its probability can be listed. Each estimator's
expectation is then a finite sum and must equal the quantity it is named after (rankedit.scoring.kl.estimate)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rankedit.scoring.kl import estimate as kl_math

V, T, EOS = 3, 3, 0


def _table(seed: int) -> dict[tuple, torch.Tensor]:
    """prefix -> next-token logits; the EOS logit moves a lot with the prefix, so lengths follow the tokens."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in range(T):
        for prefix in itertools.product(range(1, V), repeat=n):
            z = torch.randn(V, generator=g, dtype=torch.float64)
            z[EOS] += 2.0 * torch.randn((), generator=g, dtype=torch.float64)
            out[prefix] = z
    return out


def _completions() -> list[tuple[int, ...]]:
    """Every completion: up to and including the first EOS, or T tokens without one (cut off)."""
    out = []
    for n in range(1, T + 1):
        for body in itertools.product(range(1, V), repeat=n - 1):
            out.append((*body, EOS))
    out += list(itertools.product(range(1, V), repeat=T))
    return out


@pytest.fixture(scope="module")
def enumerated():
    pi, base = _table(1), _table(2)
    ys = _completions()
    tokens = torch.tensor([list(y) + [EOS] * (T - len(y)) for y in ys])  # padded after the EOS (masked)
    # teacher-forced logits of the positions predicting each token: the table at each prefix (padding: any row)
    def logits(table):
        return torch.stack([torch.stack([table[tuple(y[:t])] if t < len(y) else table[()] for t in range(T)])
                            for y in ys])
    lp = {k: torch.log_softmax(v, -1) for k, v in pi.items()}
    lb = {k: torch.log_softmax(v, -1) for k, v in base.items()}
    prob = np.array([float(torch.exp(sum(lp[y[:t]][y[t]] for t in range(len(y))))) for y in ys])
    ratio_sum = np.array([float(sum(lp[y[:t]][y[t]] - lb[y[:t]][y[t]] for t in range(len(y)))) for y in ys])
    length = np.array([len(y) for y in ys], dtype=np.float64)
    terms = kl_math.sample_terms(logits(pi), logits(base), tokens, [EOS])
    return ys, prob, ratio_sum, length, terms


def test_the_enumeration_is_a_distribution_with_lengths_that_vary(enumerated):
    ys, prob, _, length, terms = enumerated
    assert len(ys) == 15 and prob.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(terms.length, length)
    assert sorted(set(length)) == [1, 2, 3] and terms.truncated.sum() == 8  # 2·2·2 cut off at 3 tokens


def test_each_estimator_is_unbiased_for_its_quantity(enumerated):
    ys, prob, ratio_sum, length, terms = enumerated
    kl_seq = float(prob @ ratio_sum)  # E_y Σ_t log π/π_b: KL(π ‖ π_b) over whole completions
    kl_tok = float(prob @ (ratio_sum / length))  # E_y (1/|y|) Σ_t log π/π_b
    assert kl_seq > 0.05 and kl_tok > 0.02
    np.testing.assert_allclose(terms.mc_sum, ratio_sum, rtol=0, atol=1e-12)
    assert float(prob @ terms.rb_sum) == pytest.approx(kl_seq, abs=1e-12)  # per sequence, rb
    assert float(prob @ (terms.mc_sum / length)) == pytest.approx(kl_tok, abs=1e-12)  # per token, mc
    # per token, rb: unbiased for every weight c that does not depend on the completion itself
    for c in (0.0, 0.37, 1.0 / float(prob @ length), 2.0):
        got = prob @ kl_math.per_token_rb_with(terms.mc_sum, terms.rb_sum, length, c)
        assert float(got) == pytest.approx(kl_tok, abs=1e-12)
    # the old per-token "rb", (1/|y|) Σ_t KL_t, is not: lengths vary with the tokens drawn
    assert abs(float(prob @ (terms.rb_sum / length)) - kl_tok) > 1e-3


def test_the_reported_per_token_rb_is_unbiased_with_its_leave_one_out_weights(enumerated):
    """Two independent completions: the reported estimator of the first (its c from the second's length) has
    the per-token KL as its exact expectation over all 15 × 15 pairs."""
    _, prob, ratio_sum, length, terms = enumerated
    kl_tok = float(prob @ (ratio_sum / length))
    expect = 0.0
    for i, j in itertools.product(range(len(prob)), repeat=2):
        est = kl_math.per_token_rb(terms.mc_sum[[i, j]], terms.rb_sum[[i, j]], length[[i, j]])
        assert est[0] == pytest.approx(terms.mc_sum[i] / length[i] - (terms.mc_sum[i] - terms.rb_sum[i]) / length[j])
        expect += prob[i] * prob[j] * est[0]
    assert expect == pytest.approx(kl_tok, abs=1e-12)


def test_weights_leave_each_completion_out():
    np.testing.assert_allclose(kl_math.leave_one_out_weights(np.array([1.0, 2.0, 6.0])), [2 / 8, 2 / 7, 2 / 3])
    assert kl_math.leave_one_out_weights(np.array([4.0])).tolist() == [0.0]  # no other: Monte Carlo
    # one length for all: (1/L) Σ_t KL_t, the Rao-Blackwellised sum spread over the L tokens
    mc, rb, L = np.array([0.9, 0.1]), np.array([0.4, 0.5]), np.array([5.0, 5.0])
    np.testing.assert_allclose(kl_math.per_token_rb(mc, rb, L), rb / 5, atol=1e-15)
