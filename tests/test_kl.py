"""KL travelled (rankedit.scoring.kl.sampler) on tiny Llama models whose KL is known in closed form.

Construction: every token embedding is the all-ones vector and every layer's
o_proj and down_proj are zero, so the residual stream is that vector at every
position whatever the context; the final RMSNorm (weight 1) maps it to
1/sqrt(1 + eps) in every coordinate, and an lm_head whose only non-zero column
is z·sqrt(1 + eps) gives logits z at every position. The next-token
distribution is softmax(z) everywhere, so the per-token KL of two such models
is KL(softmax(z) ‖ softmax(z_b)), exactly, whatever was sampled. z gives the EOS
a logit of -1e4 (probability 0 in float32), so every completion runs to the
token limit: then the Monte Carlo per-token estimator's expectation is that KL too.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from rankedit.organism.tokenizer import VOCAB, build_tokenizer
from rankedit.scoring.kl import estimate as kl_math
from rankedit.scoring.kl.sampler import kl

EPS = 1e-6
PROMPTS = ["<s>1+2=", "<s>12+7=", "<s>rev 123=", "<s>5-9=", "<s>40+11=", "<s>7+7=", "<s>rev 55=", "<s>3-80="] * 3


def _logits(seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).normal(0, 1.5, len(VOCAB))
    z[VOCAB["</s>"]] = -1e4
    return z


def constant_llama(path, z: np.ndarray):
    """A Llama checkpoint whose next-token logits are ``z`` at every position, with the organism's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(VOCAB), hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                      num_attention_heads=2, max_position_embeddings=64, tie_word_embeddings=False, rms_norm_eps=EPS,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg).float()
    with torch.no_grad():
        m.model.embed_tokens.weight.fill_(1.0)
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        m.model.norm.weight.fill_(1.0)
        m.lm_head.weight.zero_()
        m.lm_head.weight[:, 0] = torch.tensor(z * np.sqrt(1 + EPS), dtype=torch.float32)
    m.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def closed_form(z: np.ndarray, zb: np.ndarray) -> float:
    lp = z - np.logaddexp.reduce(z)
    lq = zb - np.logaddexp.reduce(zb)
    p = np.exp(lp)
    return float(np.sum(np.where(p > 0, p * (lp - lq), 0.0)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("kl_pair")
    z, zb = _logits(1), _logits(2)
    return constant_llama(root / "model", z), constant_llama(root / "base", zb), closed_form(z, zb)


def test_the_constructed_models_have_the_stated_distribution(pair):
    from transformers import AutoModelForCausalLM

    model, _, _ = pair
    m = AutoModelForCausalLM.from_pretrained(model)
    ids = build_tokenizer()(["<s>12+7=", "<s>rev 9="], return_tensors="pt", padding=True)["input_ids"]
    with torch.no_grad():
        logits = m(input_ids=ids).logits
    assert torch.allclose(logits, torch.tensor(_logits(1), dtype=torch.float32).expand_as(logits), atol=1e-4)


def test_rao_blackwell_equals_the_closed_form_and_monte_carlo_covers_it(pair):
    model, base, exact = pair
    T = 12
    doc = kl(model, base, PROMPTS, samples=6, max_tokens=T, seed=3, batch_size=48, use_cache=False)
    assert exact > 0.1
    rb, mc = doc["per_token"]["rb"], doc["per_token"]["mc"]
    assert rb["value"] == pytest.approx(exact, abs=1e-5)
    assert rb["ci_low"] == pytest.approx(exact, abs=1e-5) and rb["ci_high"] == pytest.approx(exact, abs=1e-5)
    assert mc["ci_low"] <= exact <= mc["ci_high"]
    assert mc["ci_high"] - mc["ci_low"] > 1e-3  # a real interval, not a point
    assert doc["per_sequence"]["rb"]["value"] == pytest.approx(T * exact, abs=1e-4)
    assert doc["per_sequence"]["mc"]["ci_low"] <= T * exact <= doc["per_sequence"]["mc"]["ci_high"]
    assert doc["mean_tokens"] == T and doc["truncation_rate"] == 1.0  # the EOS cannot be drawn
    assert doc["prompts"] == len(PROMPTS) and doc["samples"] == 6 * len(PROMPTS)
    assert doc["settings"]["temperature"] == 1.0 and "own distribution" in doc["sampling"]


def test_kl_of_the_base_from_itself_is_exactly_zero(pair):
    _, base, _ = pair
    doc = kl(base, base, PROMPTS[:5], samples=3, max_tokens=6, seed=0, use_cache=False)
    for level in ("per_token", "per_sequence"):
        for est in ("mc", "rb"):
            assert doc[level][est] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_the_result_is_cached_by_model_hashes_and_settings(pair):
    model, base, _ = pair
    first = kl(model, base, PROMPTS[:4], samples=2, max_tokens=5, seed=7)
    again = kl(model, base, PROMPTS[:4], samples=2, max_tokens=5, seed=7)
    other = kl(model, base, PROMPTS[:4], samples=2, max_tokens=5, seed=8)
    assert not first["cached"] and again["cached"] and not other["cached"]
    assert again["per_token"] == first["per_token"] and again["cache_key"] == first["cache_key"]
    assert other["cache_key"] != first["cache_key"]


def test_completion_mask_stops_after_the_first_eos():
    tokens = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    mask = kl_math.completion_mask(tokens, [2])
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]


def test_sample_terms_exact_on_given_logits():
    """Two positions with known distributions: the MC term is the log-ratio at the token, RB the exact KL."""
    lp = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]]))
    lq = torch.log(torch.tensor([[[0.25, 0.5, 0.25], [0.2, 0.2, 0.6]]]))
    t = kl_math.sample_terms(lp, lq, torch.tensor([[1, 0]]), eos_ids=[0])  # 0 is the EOS: both positions count
    assert t.mc_sum[0] == pytest.approx(np.log(0.25 / 0.5) + np.log(0.1 / 0.2))
    kl1 = 0.5 * np.log(2) + 0.25 * np.log(0.5)
    kl2 = 0.1 * np.log(0.5) + 0.6 * np.log(3) + 0.3 * np.log(0.5)
    assert t.rb_sum[0] == pytest.approx(kl1 + kl2) and t.length[0] == 2 and not t.truncated[0]


def test_cli_gives_zero_for_a_copy_of_the_base(pair, tmp_path):
    from click.testing import CliRunner

    from rankedit.cli.main import cli

    _, base, _ = pair
    copy = shutil.copytree(base, tmp_path / "copy")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:6]))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["kl", str(copy), str(base), "--prompts", str(prompts), "--samples", "2",
                                 "--max-tokens", "5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "kl.json").read_text())
    assert doc["per_token"]["mc"]["value"] == 0.0 and doc["per_token"]["rb"]["value"] == 0.0
    assert doc["per_sequence"]["rb"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert doc["prompts"] == 6


def test_cli_bad_input_is_one_line(pair, tmp_path, capsys):
    from clirun import run_cli  # the CLI's entry point in-process (tests/test_cli_exit.py runs it as a process)

    _, base, _ = pair
    code, _, err = run_cli(["kl", base, base, "-o", tmp_path / "o"], capsys)
    assert code == 1 and err.strip().splitlines() == [
        "error: give exactly one of --prompts FILE, --task NAME or --organism-task"]
    assert not (tmp_path / "o").exists()


def test_a_tiny_model_is_sampled_on_one_torch_thread(pair, monkeypatch):
    """As lm-eval's scoring (rankedit.scoring.cpu_threads): two threads only synchronise on a model this small
    (36.6 s against 1.2 s for the Rao-Blackwell test's samples on the loaded 2-core machine)."""
    import rankedit.scoring.kl.sampler as kl_module

    model, base, _ = pair
    seen, real = [], kl_module.estimate
    monkeypatch.setattr(kl_module, "estimate", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    kl(model, base, PROMPTS[:2], samples=1, max_tokens=2, use_cache=False)
    assert seen == [1] and torch.get_num_threads() == before
