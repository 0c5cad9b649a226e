"""The synthetic pairs the tests and benchmarks build: their updates are what they claim."""

import torch

from rankedit.files.checkpoint import Checkpoint
from rankedit.testing import synthetic


def _updates(tmp_path, **kw):
    base = synthetic.build_random(tmp_path / "base", "llama", seed=0, dtype=torch.float32, hidden_size=64,
                                  intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                  num_key_value_heads=4, vocab_size=64)
    tuned = synthetic.perturb(base, tmp_path / "tuned", scale=1e-2, seed=3, dtype=torch.float32, **kw)
    b, t = Checkpoint(base), Checkpoint(tuned)
    return {n: (t.get(n).double() - b.get(n).double()) for n in b.names if "mlp.up_proj" in n}


def test_a_structured_update_puts_its_share_of_energy_in_a_rank_8_part_with_a_clear_top_gap(tmp_path):
    for name, dw in _updates(tmp_path, structured=0.5).items():
        s = torch.linalg.svdvals(dw)
        energy = s.pow(2).cumsum(0) / s.pow(2).sum()
        assert energy[7] > 0.5  # the rank-8 part's half, plus the noise's share of those directions
        assert s[0] / s[1] > 1.5  # halving singular values: the top direction is identifiable


def test_a_noise_update_has_a_flat_top_spectrum(tmp_path):
    for name, dw in _updates(tmp_path).items():
        s = torch.linalg.svdvals(dw)
        assert s[0] / s[1] < 1.2 and s.pow(2)[:8].sum() / s.pow(2).sum() < 0.3


def test_decay_spectrum_gives_every_matrix_a_power_law_spectrum_and_keeps_the_rest(tmp_path):
    from rankedit.files.checkpoint import Checkpoint
    from rankedit.testing import synthetic

    base = synthetic.build_random(tmp_path / "base", "llama", seed=0)
    before = Checkpoint(base)
    old = {n: before.get(n).clone() for n in before.names}
    synthetic.decay_spectrum(base, 0.5)
    after = Checkpoint(base)
    assert after.names == before.names
    changed = 0
    for n in after.names:
        w = after.get(n)
        assert w.shape == old[n].shape and w.dtype == old[n].dtype
        if w.ndim == 2 and "embed" not in n and "lm_head" not in n:
            s = torch.linalg.svdvals(w.double())
            want = torch.arange(1, s.numel() + 1, dtype=torch.float64) ** -0.5
            torch.testing.assert_close(s / s[0], want, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(w.pow(2).mean(), old[n].pow(2).mean(), rtol=1e-5, atol=0)
            changed += 1
        else:
            assert torch.equal(w, old[n])
    assert changed > 0
