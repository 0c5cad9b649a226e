"""Every model family of the issue's table, built tiny from transformers' own config classes: analyze
places every tensor, each edit family writes a loadable, finite checkpoint whose every matrix (each
expert of a fused stack) is the pure function's, bit for bit; --as-lora loads in PEFT or is refused in
one line; an artifact applied gives the merged edit's bytes; nothing trained is left at BASE unsaid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rankedit.analysis.analyze import analyze
from rankedit.core.errors import RankeditError
from rankedit.core.threads import hot_path_threads
from rankedit.core.modules import as_linear, classify, from_linear, matrix_keys, split_key
from rankedit.edits import EDITS, build_edit, read_manifest
from rankedit.edits.apply import apply_artifact
from rankedit.edits.artifact import write_artifact
from rankedit.edits.registry import MatrixInputs, matrix_seed
from rankedit.files.checkpoint import Checkpoint
from rankedit.testing import families
from clirun import run_cli  # tests/ is on sys.path (no package)

# family -> (matrices: attention + mlp + experts (a fused stack counts E) + routers + shared + mixers, by kind)
EXPECTED = {
    "qwen3_moe": {"attention": 8, "expert": 24, "router": 2},
    "deepseek_v3": {"attention": 10, "expert": 12, "mlp": 3, "router": 1, "shared_expert": 3},
    "gpt_oss": {"attention": 8, "expert": 16, "router": 2},
    "qwen3_next": {"attention": 4, "expert": 24, "mixer": 3, "router": 2, "shared_expert": 8},
    "qwen3_5": {"attention": 4, "mixer": 5, "mlp": 6},
    "granitemoehybrid": {"attention": 4, "expert": 16, "mixer": 2, "router": 2, "shared_expert": 4},
    "falcon_h1": {"attention": 8, "mixer": 4, "mlp": 6},
    "nemotron_h": {"attention": 4, "mixer": 2, "mlp": 2},
}
# --as-lora: the adapter PEFT loads (fused experts, and per-expert tensors transformers fuses on loading, through
# PEFT's target_parameters), or the one-line refusal naming the family and the reason
LORA_REFUSED = {
    "falcon_h1": "PEFT refuses LoRA on a Mamba block's out_proj",
    "nemotron_h": "PEFT refuses LoRA on a Mamba block's out_proj",
}
EDIT_PARAMS = {"rank-k": {"k": 1}, "off-principal": {"k": 4}, "sign": {}, "mask": {"source": "magnitude", "density": 0.1}}
X = torch.randint(4, 40, (1, 8), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def family_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: (b, families.plant(b, root / f / "tuned")) for f in families.FAMILIES
            for b in [families.build(root / f / "base", f)]}


def _logits(path, adapter=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False, dtype=torch.float32).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
    with torch.no_grad():
        return model(X).logits.float()


def _tensors(path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _pure(method: str, params: dict, key: str, info, w0, w1) -> torch.Tensor:
    """The registry's pure function on one matrix, as a reader of docs/science.md would call it."""
    edit = EDITS[method]
    p = edit.params(**params)
    lin = lambda t: as_linear(t.float(), info)  # noqa: E731
    res = edit.run(MatrixInputs(w0=lin(w0), tuned=(lin(w1),), seed=matrix_seed(p.seed, key)), p)
    return from_linear(res.weight if res.weight is not None else lin(w0) + res.delta, info).to(w0.dtype)


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_family_analyze_edits_lora_artifact(family, family_pairs, tmp_path):
    base, tuned = family_pairs[family]
    ck = Checkpoint(base)
    infos = {n: classify(n, ck.info(n).shape, ck.model_type, ck.config) for n in ck.names}

    analyze(base, tuned, tmp_path / "an", progress=False, plots=False)
    cov = json.loads((tmp_path / "an" / "summary.json").read_text())["coverage"]
    assert cov["by_kind"] == EXPECTED[family] and cov["not_placed"] == []
    assert cov["vision_left_alone"] == (sum(1 for n in ck.names if ".visual." in n) if family == "qwen3_5" else 0)
    assert cov["vision_left_alone"] > 0 or family != "qwen3_5"

    b, t = _tensors(base), _tensors(tuned)
    for method, params in EDIT_PARAMS.items():
        out = build_edit(method, base, tuned, tmp_path / method, **params)
        man = read_manifest(out)
        got = _tensors(out)
        keys = [k for n in ck.names for k in matrix_keys(n, ck.info(n).shape, infos[n])]
        edited = [m["name"] for m in man["matrices"]]
        # every matrix edited but a gate below k (Qwen3-Next's shared_expert_gate, 1 x 64), which is said
        assert sorted(edited + list(man["coverage"]["left"])) == sorted(keys)
        assert all("< k=4" in why for why in man["coverage"]["left"].values())
        short = max(min(ck.info(split_key(k)[0]).shape[-2:]) for k in edited)
        for key in edited:
            name, e = split_key(key)
            pick = (lambda x: x) if e is None else (lambda x: x[e])  # noqa: E731
            with hot_path_threads("edit", short):  # the writers' thread policy: BLAS sums in the same order
                want = _pure(method, params, key, infos[name], pick(b[name]), pick(t[name]))
            assert torch.equal(pick(got[name]), want), (family, method, key)
        for name in ck.names:  # every other tensor is the base's, bit for bit
            if not any(split_key(k)[0] == name for k in edited):
                assert torch.equal(got[name], b[name]), (family, method, name)
        # the planted update touched embeddings and the head: said in the manifest
        assert {"lm_head.weight"} <= set(man["coverage"]["trained_left_at_base"])
        assert man["writer"]["route"] == ("mergekit" if family == "granitemoehybrid" else "streamed")

    merged = _logits(tmp_path / "rank-k")
    assert torch.isfinite(merged).all()
    assert float((merged - _logits(base)).abs().max()) > 1e-3  # the edit does something

    if family in LORA_REFUSED:
        with pytest.raises(RankeditError, match=LORA_REFUSED[family]) as e:
            build_edit("rank-k", base, tuned, tmp_path / "lora", k=1, as_lora=True)
        assert family in str(e.value) and "\n" not in str(e.value)
        assert not (tmp_path / "lora").exists()
    else:
        # scale norm by name: the merged rank-k's default (an extraction's default is the plain truncation)
        build_edit("rank-k", base, tuned, tmp_path / "lora", k=1, as_lora=True, lora_dtype="float32", scale="norm")
        torch.testing.assert_close(_logits(base, tmp_path / "lora"), merged, rtol=0, atol=2e-2)
        # its artifact is the same adapter (fused experts in PEFT's target_parameters layout), applied bit for bit
        write_artifact(base, tuned, "rank-k", {"k": 1, "scale": "norm"}, tmp_path / "lora-art", progress=False)
        apply_artifact(tmp_path / "lora-art", base, tmp_path / "lora-applied", progress=False)
        rebuilt, want = _tensors(tmp_path / "lora-applied"), _tensors(tmp_path / "rank-k")
        assert all(torch.equal(rebuilt[n], want[n]) for n in want)

    a = write_artifact(base, tuned, "sign", {}, tmp_path / "art", progress=False)
    assert a["coverage"]["matrices"] == sum(EXPECTED[family].values())
    apply_artifact(tmp_path / "art", base, tmp_path / "applied", progress=False)
    rebuilt, signed = _tensors(tmp_path / "applied"), _tensors(tmp_path / "sign")
    assert set(rebuilt) == set(signed) and all(torch.equal(rebuilt[n], signed[n]) for n in signed)


@pytest.mark.parametrize("family", ["deepseek_v3", "nemotron_h"])
def test_a_plain_mergekit_yaml_that_would_corrupt_the_model_is_refused(family, family_pairs, tmp_path, capsys):
    import yaml

    base, tuned = family_pairs[family]
    cfg = tmp_path / "merge.yaml"
    cfg.write_text(yaml.safe_dump({"merge_method": "task_arithmetic", "base_model": str(base), "dtype": "bfloat16",
                                   "models": [{"model": str(tuned), "parameters": {"weight": 1.0}}]}))
    code, out, err = run_cli(["edit", "--config", cfg, "-o", tmp_path / "out"], capsys)
    assert code != 0 and err.startswith("error: ") and "mergekit cannot merge" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_cli_states_coverage_and_warns_of_trained_weights_left_at_base(family_pairs, tmp_path, capsys, caplog):
    import logging

    base, tuned = family_pairs["gpt_oss"]
    code, out, err = run_cli(["edit", "rank-k", base, tuned, "--k", "1", "-o", tmp_path / "e"], capsys)
    assert code == 0  # the rankedit logger's warnings go to stderr, each a line "warning: ..."
    assert "coverage: 26 matrices edited (8 attention, 16 expert, 2 router) in 14 tensors" in out
    assert "copied as they are from base" in out and "0 not placed" in out
    assert "weights that this output holds at BASE" in err and "down_proj_bias" in err  # GPT-OSS's expert biases
    assert "warning: rank-k: the tuned model changed" in err  # a plan's many outputs: each says whose warning it is
    code, out, _ = run_cli(["analyze", base, tuned, "-o", tmp_path / "a", "--no-plots"], capsys)
    assert code == 0 and "coverage: 26 matrices analysed" in out


def test_an_unknown_family_works_where_names_allow_and_names_what_it_cannot_place(tiny_pair, tmp_path, capsys):
    import shutil

    from safetensors.torch import save_file

    pair = []
    for side, src in zip(("base", "tuned"), tiny_pair):
        dst = tmp_path / side
        shutil.copytree(src, dst)
        cfg = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps(dict(cfg, model_type="mystery", architectures=["MysteryForCausalLM"])))
        t = load_file(str(dst / "model.safetensors"))
        t["model.layers.0.mlp.strange.weight"] = torch.full((8, 8), 1.0 if side == "base" else 2.0)
        save_file(t, str(dst / "model.safetensors"), metadata={"format": "pt"})
        pair.append(dst)
    code, out, _ = run_cli(["analyze", *pair, "-o", tmp_path / "an", "--no-plots"], capsys)
    assert code == 0 and "1 not placed (model.layers.0.mlp.strange.weight)" in out
    code, out, _ = run_cli(["edit", "rank-k", *pair, "--k", "1", "-o", tmp_path / "e"], capsys)
    assert code == 0 and "1 not placed (model.layers.0.mlp.strange.weight)" in out
    man = read_manifest(tmp_path / "e")
    assert man["writer"]["route"] == "streamed" and "transformers cannot read its config" in man["writer"]["reason"]
    assert man["coverage"]["trained_left_at_base"] == ["model.layers.0.mlp.strange.weight"]
    assert man["coverage"]["by_kind"] == {"attention": 8, "mlp": 6}


TINY_TASK = Path(__file__).parent / "data" / "tiny_arith"  # single-digit sums, read locally (no download)
SCORE_LIMIT, SCORE_TOKS = 4, 2


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_family_scores_through_lm_eval_on_a_local_task(family, family_pairs, tmp_path, capsys):
    """`rankedit score` on the base and an edit: lm-eval's hf backend loads each family with its
    transformers class and generates greedily on CPU (Mamba and gated delta-net blocks through
    transformers' torch paths); every problem of the limit is generated once per model, at most
    max_gen_toks characters (the tokenizer is one character a token)."""
    base, tuned = family_pairs[family]
    edit = build_edit("rank-k", base, tuned, tmp_path / "edit", k=1)
    code, out, err = run_cli(["score", f"base={base}", f"edit={edit}", "--tasks", "rankedit_tiny_arith",
                              "--include-path", TINY_TASK, "--limit", SCORE_LIMIT, "--max-gen-toks", SCORE_TOKS,
                              "--batch-size", SCORE_LIMIT, "--no-cache", "-o", tmp_path / "s"], capsys)
    assert code == 0, err
    assert "✓ base\n" in err and "✓ edit\n" in err  # both generated, neither served from a cache
    doc = json.loads((tmp_path / "s" / "scores.json").read_text())
    rows = {(r["model"], r["metric"]): r for r in doc["scores"]}
    assert set(rows) == {(m, f"exact_match,{f}") for m in ("base", "edit") for f in ("extract", "strict")}
    assert all(r["n"] == SCORE_LIMIT for r in rows.values()) and doc["failures"] == {}
    questions = [json.loads(x)["question"] for x in (TINY_TASK / "tiny_arith.jsonl").read_text().splitlines()]
    for label in ("base", "edit"):
        lines = (tmp_path / "s" / label / "samples_rankedit_tiny_arith.jsonl").read_text().splitlines()
        samples = [json.loads(x) for x in lines if x.strip()]
        for filt in ("extract", "strict"):  # one logged sample per problem and filter
            mine = sorted((s for s in samples if s["filter"] == filt), key=lambda s: s["doc_id"])
            assert [s["doc_id"] for s in mine] == list(range(SCORE_LIMIT))
            assert [s["arguments"][0][0] for s in mine] == questions[:SCORE_LIMIT]
            assert all(len(s["resps"]) == 1 and len(s["resps"][0][0]) <= SCORE_TOKS for s in mine)
