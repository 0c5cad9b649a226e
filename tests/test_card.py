"""The model card built from plain dicts (rankedit.publish.card): pure, no I/O but ModelCard.load round trips."""

from __future__ import annotations

import copy

import pytest
from huggingface_hub import ModelCard, ModelCardData

from rankedit.publish.card import build_card, is_tool_template, is_untouched, seal
from rankedit.publish.scores import select_scores
from rankedit.core.errors import RankeditError

# A manifest as /tmp/formats.md describes it (what `rankedit edit` writes).
MANIFEST = {
    "rankedit_version": "0.1.0",
    "mergekit_version": "0.1.5",
    "method": "rank-k",
    "mergekit_method": "rankedit_rank_k",
    "params": {"k": 1, "scale": "norm", "rest": "base", "seed": 0, "as_lora": False},
    "inputs": {
        "base": {"path": "/models/Qwen2.5-0.5B", "sha256": {"model.safetensors": "a1" * 32}},
        "tuned": [{"path": "/models/qwen-rlvr", "sha256": {"model.safetensors": "b2" * 32}, "step": 800}],
        "other": None,
    },
    "matrices": [
        {"name": "model.layers.0.self_attn.q_proj.weight", "energy_kept": 0.52, "density": None, "rank_kept": 1},
        {"name": "model.layers.0.mlp.up_proj.weight", "energy_kept": 0.31, "density": None, "rank_kept": 1},
        {"name": "model.layers.1.mlp.down_proj.weight", "energy_kept": 0.44, "density": None, "rank_kept": 1},
    ],
    "summary": {"energy_kept": 0.4213, "density": None, "n_matrices": 3},
}

# `rankedit score` (rankedit/scoring/score.py write_outputs): rows by label, one per (model, task, metric),
# the labels' paths under "models", and the metric retention uses under "primary_metrics".
SCORES = {
    "scores": [
        {"model": "base", "task": "gsm8k", "metric": "exact_match,flexible-extract", "value": 0.33, "stderr": 0.012, "n": 1319},
        {"model": "base", "task": "gsm8k", "metric": "exact_match,strict-match", "value": 0.30, "stderr": 0.012, "n": 1319},
        {"model": "rl", "task": "gsm8k", "metric": "exact_match,strict-match", "value": 0.41, "stderr": 0.013, "n": 1319},
        {"model": "edit", "task": "gsm8k", "metric": "exact_match,flexible-extract", "value": 0.40, "stderr": 0.013, "n": 1319},
        {"model": "edit", "task": "gsm8k", "metric": "exact_match,strict-match", "value": 0.38, "stderr": 0.013, "n": 1319},
        {"model": "edit", "task": "arc_easy", "metric": "acc,none", "value": 0.55, "stderr": 0.01, "n": 2376},
    ],
    "primary_metrics": {"gsm8k": "exact_match,strict-match", "arc_easy": "acc,none"},
    "models": {"base": {"path": "/models/Qwen2.5-0.5B"}, "rl": {"path": "/models/qwen-rlvr"},
               "edit": {"path": "/out/rank1"}},
}

# `rankedit run`: scores by label, plus retention rows with bootstrap intervals.
REPORT = {
    "scores": {"base": {"gsm8k": {"value": 0.30, "stderr": 0.012, "n": 1319}},
               "tuned": {"gsm8k": {"value": 0.41, "stderr": 0.013, "n": 1319}},
               "rank1": {"gsm8k": {"value": 0.38, "stderr": 0.013, "n": 1319}},
               "rank8": {"gsm8k": {"value": 0.40, "stderr": 0.013, "n": 1319}}},
    "rows": [
        {"edit": "rank1", "task": "gsm8k", "score": 0.38, "retention": 0.727, "ci_low": 0.55, "ci_high": 0.9, "forgetting": None},
        {"edit": "rank8", "task": "gsm8k", "score": 0.40, "retention": 0.909, "ci_low": 0.8, "ci_high": 1.02, "forgetting": None},
    ],
}


def _roundtrip(card: ModelCard, tmp_path) -> ModelCard:
    path = tmp_path / "README.md"
    path.write_text(str(card), encoding="utf-8")
    return ModelCard.load(path)


def test_full_card_parses_back_with_recipe_and_metadata(tmp_path):
    scores = select_scores(REPORT, ["rank1"], ["/models/Qwen2.5-0.5B"], ["/models/qwen-rlvr"])
    analysis = {"params": {}, "model": {"sparsity_bf16": 0.42}, "mean": {"rank1_energy": 0.43, "angle_left_deg": 0.7},
                "by_kind": {"attention": {"rank1_energy": 0.40, "angle_left_deg": 0.6}, "mlp": {"rank1_energy": 0.45}}}
    card = build_card(MANIFEST, repo_id="me/qwen-rank1", base_id="Qwen/Qwen2.5-0.5B", tuned_ids=["me/qwen-rlvr"],
                      license="apache-2.0", analysis=analysis, scores=scores)
    back = _roundtrip(card, tmp_path)
    d = back.data
    assert d.base_model == ["Qwen/Qwen2.5-0.5B", "me/qwen-rlvr"]
    assert d.library_name == "transformers" and d.license == "apache-2.0" and d.pipeline_tag == "text-generation"
    assert d.tags == ["rankedit", "model-editing", "rank-k"]
    assert d.model_name == "qwen-rank1"
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in d.eval_results}
    assert results == {("gsm8k", "score"): 0.38, ("gsm8k", "gain_retention"): 0.727}
    text = back.text
    for needle in ("Method **`rank-k`**", "| k | 1 |", "| scale | norm |", "step 800", "a1a1a1a1a1a1…",
                   "| matrices edited | 3 |", "| 0.4213 |", "0.31 / 0.44 / 0.52", "rankedit 0.1.0, mergekit 0.1.5",
                   "| gsm8k | score | 0.38 | 0.013 | 1319 | 0.3 | 0.41 |", "| gsm8k | 0.727 | [0.55, 0.9] | – |",
                   "| model sparsity_bf16 | 0.42 |", "| attention | 0.4 | 0.6 |", "| mlp | 0.45 | – |",
                   'AutoModelForCausalLM.from_pretrained("me/qwen-rank1")'):
        assert needle in text, needle
    assert "## License" not in text


def test_minimal_card_has_no_model_index_and_states_local_inputs(tmp_path):
    back = _roundtrip(build_card(MANIFEST, repo_id="me/x"), tmp_path)
    assert back.data.eval_results is None and back.data.base_model is None and back.data.license is None
    assert "model-index" not in str(back)
    assert "`Qwen2.5-0.5B` (a local checkpoint, not on the Hub)" in back.text
    assert "## Scores" not in back.text and "## Geometry" not in back.text
    assert "## License\n\nUnknown: no licence was found" in back.text and "`rankedit push --license ID`" in back.text


def test_no_local_path_reaches_the_card(tmp_path):
    """Local inputs are named by their directory name; a Hub id is not followed by the local snapshot path."""
    m = copy.deepcopy(MANIFEST)
    m["inputs"]["base"]["path"] = "/home/me/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B/snapshots/abc123"
    for kw in ({}, {"base_id": "Qwen/Qwen2.5-0.5B"}, {"base_id": "Qwen/Qwen2.5-0.5B", "tuned_ids": ["me/qwen-rlvr"]}):
        text = str(build_card(m, repo_id="me/x", **kw))
        assert "/home/me" not in text and "/models/" not in text and "snapshots" not in text, kw
    text = str(build_card(m, repo_id="me/x", base_id="Qwen/Qwen2.5-0.5B"))
    assert "edit of `qwen-rlvr` relative to its base `Qwen/Qwen2.5-0.5B`" in text
    assert "- **tuned**: `qwen-rlvr` (a local checkpoint, not on the Hub), step 800" in text


def test_scores_json_without_samples_explains_retention():
    sel = select_scores(SCORES, ["edit"], ["/models/Qwen2.5-0.5B"], ["/models/qwen-rlvr"])
    assert (sel["base_label"], sel["tuned_label"]) == ("base", "rl")
    text = build_card(MANIFEST, repo_id="me/x", scores=sel).text
    assert "Gain retention R = (s_edit − s_base) / (s_tuned − s_base) is not shown" in text
    assert "OUT/LABEL/samples_*.jsonl" in text


def test_lora_card_is_a_peft_adapter_card(tmp_path):
    m = copy.deepcopy(MANIFEST)
    m["params"]["as_lora"] = True
    back = _roundtrip(build_card(m, repo_id="me/x-lora", base_id="Qwen/Qwen2.5-0.5B", tuned_ids=["me/qwen-rlvr"],
                                 lora=True), tmp_path)
    assert back.data.library_name == "peft" and back.data.base_model == "Qwen/Qwen2.5-0.5B"
    assert {"lora", "peft"} <= set(back.data.tags)
    assert 'PeftModel.from_pretrained(base, "me/x-lora")' in back.text


def test_scores_json_matched_by_path_with_base_and_tuned_columns():
    sel = select_scores(SCORES, ["/out/rank1/", "rank1"], ["/models/Qwen2.5-0.5B"], ["/models/qwen-rlvr"])
    assert sel["label"] == "edit"
    by_task = {t["task"]: t for t in sel["tasks"]}
    assert by_task["gsm8k"]["metric"] == "exact_match,strict-match" and by_task["gsm8k"]["value"] == 0.38
    assert by_task["gsm8k"]["base"] == 0.30 and by_task["gsm8k"]["tuned"] == 0.41  # primary metric, not the first row
    assert by_task["gsm8k"]["retention"] is None  # no bootstrap here: no R
    assert by_task["arc_easy"]["base"] is None
    card = build_card(MANIFEST, repo_id="me/x", scores=sel)
    assert {(r.dataset_type, r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("gsm8k", "exact_match,strict-match", 0.38), ("arc_easy", "acc,none", 0.55)}


def test_scores_label_resolution():
    # a file about one edit only: that edit, whatever its label
    only = {"scores": {k: v for k, v in REPORT["scores"].items() if k != "rank8"}, "rows": REPORT["rows"][:1]}
    assert select_scores(only, ["/somewhere/else"], [], [])["label"] == "rank1"
    with pytest.raises(RankeditError, match="--label .*rank1, rank8"):
        select_scores(REPORT, ["/somewhere/else"], [], [])
    with pytest.raises(RankeditError, match="no 'scores' key"):
        select_scores({"results": {}}, ["x"], [], [])
    with pytest.raises(RankeditError, match="malformed row"):
        select_scores({"scores": [{"model": "x"}]}, ["x"], [], [])


def test_undefined_retention_is_not_a_metric():
    rep = copy.deepcopy(REPORT)
    rep["rows"][0].update(retention=None, ci_low=None, ci_high=None)
    sel = select_scores(rep, ["rank1"], [], [])
    card = build_card(MANIFEST, repo_id="me/x", scores=sel)
    assert [r.metric_type for r in card.data.eval_results] == ["score"]
    assert "| gsm8k | – | – | – |" in card.text


def test_seal_tells_untouched_from_edited_cards():
    text = str(build_card(MANIFEST, repo_id="me/x"))
    assert is_untouched(text)
    assert not is_untouched(text.replace("## Recipe", "## Recipe\n\nmy note"))
    assert not is_untouched("# a card someone wrote\n")
    assert is_untouched(seal("---\nlicense: mit\n---\nhello"))


def test_tool_templates_are_recognised():
    from mergekit.card import generate_card
    from mergekit.config import MergeConfiguration

    cfg = MergeConfiguration.model_validate({"merge_method": "linear", "models": [
        {"model": "a/b", "parameters": {"weight": 1.0}}], "dtype": "float32"})
    assert is_tool_template(generate_card(cfg, "merge_method: linear", name="out"))
    assert is_tool_template(str(ModelCard.from_template(ModelCardData(library_name="peft"))))
    assert not is_tool_template(str(build_card(MANIFEST, repo_id="me/x")))
    assert not is_tool_template("---\nlicense: mit\n---\n# my model, see [mergekit](https://github.com/x)\n")


def test_manifest_without_method_is_rejected():
    with pytest.raises(RankeditError, match="no 'method'"):
        build_card({"inputs": {}}, repo_id="me/x")
