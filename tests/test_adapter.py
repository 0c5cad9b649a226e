"""LoRA adapter folders as TUNED (rankedit.files.adapter), on adapters written by PEFT itself.

PEFT's own ``get_delta_weight`` and ``merge_and_unload`` are the reference: the view's ΔW
is scale·B·A to the bit, its merged weights are merge_and_unload's (float32 model), analyze
measures rank(ΔW) = r on every targeted matrix, and an edit of the adapter is bit-equal to
the same edit of the merged checkpoint.
"""

import json

import pytest
import torch
from safetensors import safe_open

from clirun import run_cli
from rankedit.testing import synthetic

TARGETS = ["q_proj", "v_proj", "gate_proj", "down_proj"]


def _peft_adapter(base, out, seed=0, safe=True, **lora):
    """A PEFT adapter on ``base`` with random (non-zero) A and B, saved by PEFT; returns the PeftModel."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(**lora))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                p.normal_(0, 0.05)
    model.save_pretrained(out, safe_serialization=safe)
    return model


@pytest.fixture(scope="module")
def lora_case(tmp_path_factory):
    """(base, adapter, merged checkpoint, PeftModel): rank 4 (2 on gate_proj via rank_pattern), alpha 8
    (32 on down_proj via alpha_pattern), lm_head in modules_to_save."""
    root = tmp_path_factory.mktemp("lora")
    base = synthetic.build_random(root / "base", "qwen2", seed=0, tie_word_embeddings=False)
    model = _peft_adapter(base, root / "adapter", r=4, lora_alpha=8, target_modules=TARGETS,
                          rank_pattern={"gate_proj": 2}, alpha_pattern={"down_proj": 32}, modules_to_save=["lm_head"])
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(root / "merged")
    return base, root / "adapter", root / "merged", model


def _tensors(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            out.update({k: h.get_tensor(k) for k in h.keys()})
    return out


def test_delta_and_merged_weights_are_peft_s_to_the_bit(lora_case):
    from rankedit.files.adapter import AdapterCheckpoint
    from rankedit.files.checkpoint import Checkpoint

    base, adapter, merged, model = lora_case
    view = AdapterCheckpoint(adapter, Checkpoint(base))
    assert len(view.lora) == 2 * len(TARGETS) and set(view.replaced) == {"lm_head.weight"}
    for name, m in view.lora.items():
        layer = model.get_submodule("base_model.model." + name.removesuffix(".weight"))
        assert m.r == (2 if "gate_proj" in name else 4)
        assert m.scale == (32 / 4 if "down_proj" in name else 8 / m.r)
        assert torch.equal(view.delta(name, torch.float32), layer.get_delta_weight("default"))
        # float64: scale·B·A from the stored factors, and its rank is r
        d64 = view.delta(name)
        assert d64.dtype == torch.float64 and torch.linalg.matrix_rank(d64) == m.r
    ref = _tensors(merged)
    assert set(ref) == set(view.names)
    for name in view.names:  # targeted, modules_to_save and untouched tensors alike
        assert torch.equal(view.get(name), ref[name]), name


def test_analyze_states_the_rank_bound(lora_case, tmp_path, capsys):
    base, adapter, merged, _ = lora_case
    code, out, err = run_cli(["analyze", base, adapter, "-o", tmp_path / "a", "--no-plots", "--k", "2",
                              "--other-tuned", merged], capsys)
    assert code == 0, err
    assert "rank(ΔW) <= r (at most 4) by construction on 8 targeted matrices; every measured rank is within it" in out
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        want = 0 if not any(t in r["name"] for t in TARGETS) else (2 if "gate_proj" in r["name"] else 4)
        assert r["lora_r"] == want and r["rank"] == want, r["name"]
        if want:  # the other run is the same update, merged by PEFT: the same entries move
            assert r["jaccard"] == 1.0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["adapter"]["bound_holds"] and summary["adapter"]["r_max"] == 4


@pytest.mark.parametrize("method,params", [("rank-k", {"k": 1}), ("scale", {"factor": 1.0, "rest": "tuned"})])
def test_an_edit_of_the_adapter_is_the_edit_of_the_merged_checkpoint(lora_case, tmp_path, caplog, method, params):
    from rankedit.edits.build import build_edit

    base, adapter, merged, _ = lora_case
    a = build_edit(method, base, adapter, tmp_path / "from-adapter", **params)
    if method == "rank-k":  # the first edit merges (one line says where); the next reuses the merge
        assert "merging LoRA adapter" in caplog.text
    b = build_edit(method, base, merged, tmp_path / "from-merged", **params)
    ta, tb = _tensors(a), _tensors(b)
    assert set(ta) == set(tb) and all(torch.equal(ta[n], tb[n]) for n in ta)
    if method == "scale":  # rest: tuned takes the adapter's modules_to_save tensor
        with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as h:
            assert torch.equal(ta["lm_head.weight"], h.get_tensor("base_model.model.lm_head.weight"))


def test_lora_export_and_artifact_accept_the_adapter(lora_case, tmp_path):
    from rankedit.edits.artifact import write_artifact
    from rankedit.edits.build import build_edit

    base, adapter, merged, _ = lora_case
    for src in ("adapter", "merged"):
        tuned = adapter if src == "adapter" else merged
        build_edit("rank-k", base, tuned, tmp_path / f"lora-{src}", as_lora=True, k=2)
        write_artifact(base, tuned, "rank-k", {"k": 2}, tmp_path / f"art-{src}", progress=False)
    for kind in ("lora", "art"):
        ta, tb = _tensors(tmp_path / f"{kind}-adapter"), _tensors(tmp_path / f"{kind}-merged")
        assert ta and set(ta) == set(tb) and all(torch.equal(ta[n], tb[n]) for n in ta)


def test_unsupported_adapters_are_refused_in_one_line(lora_case, tmp_path, capsys):
    base, adapter, _, _ = lora_case
    _peft_adapter(base, tmp_path / "dora", r=2, lora_alpha=4, target_modules=["q_proj"], use_dora=True)
    pickled = tmp_path / "pickled"
    _peft_adapter(base, pickled, r=2, lora_alpha=4, target_modules=["q_proj"], safe=False)
    assert not (pickled / "adapter_model.safetensors").exists() and (pickled / "adapter_model.bin").is_file()
    other = synthetic.build_random(tmp_path / "other-base", "qwen2", seed=0, hidden_size=32, intermediate_size=64)
    cases = [(tmp_path / "dora", base, "DoRA adapters (use_dora) are not supported"),
             (pickled, base, "the adapter is pickled (adapter_model.bin); rankedit never unpickles"),
             (adapter, other, "does not match base")]
    capsys.readouterr()  # the adapters' own build output
    for tuned, b, needle in cases:
        code, out, err = run_cli(["analyze", b, tuned, "-o", tmp_path / "never", "--no-plots"], capsys)
        assert code != 0 and needle in err and "Traceback" not in err + out, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_scoring_an_adapter_alone_names_the_way(lora_case, tmp_path, capsys):
    _, adapter, _, _ = lora_case
    code, out, err = run_cli(["score", adapter, "--tasks", "organism_id", "-o", tmp_path / "s"], capsys)
    assert code != 0 and f"{adapter} is a LoRA adapter, not a model" in err and "rankedit run merges it" in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()


def test_trajectory_reads_checkpoint_adapters_exactly(lora_case, tmp_path, capsys):
    """checkpoint-N adapters whose B is t·B_1 (t = 1, 2, 4: exact in float32): dW_t = t·dW_1, a line in t (R² = 1)."""
    import shutil

    from safetensors.torch import save_file

    base, adapter, _, _ = lora_case
    tensors = _tensors(adapter)
    for t in (1, 2, 4):  # trl's checkpoint-N, and verl's LoRA actor layout for one of them
        step = tmp_path / "run" / (f"checkpoint-{t}" if t != 2 else "global_step_2/actor/lora_adapter")
        step.mkdir(parents=True)
        shutil.copy(adapter / "adapter_config.json", step)
        save_file({k: v * t if "lora_B" in k else v for k, v in tensors.items()}, str(step / "adapter_model.safetensors"))
    code, out, err = run_cli(["trajectory", base, "--run-dir", tmp_path / "run", "-o", tmp_path / "t", "--no-plots",
                              "--modules", "q_proj|down_proj"], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (tmp_path / "t" / "trajectory.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rows} == {1, 2, 4} and len(rows) == 3 * 4
    for r in rows:
        first = next(x for x in rows if x["name"] == r["name"] and x["step"] == 1)
        assert r["dw_norm"] == pytest.approx(r["step"] * first["dw_norm"], rel=1e-12)
        assert r["cos_dw_final"] == pytest.approx(1.0, abs=1e-12)
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["dw_linearity_whole"]["r2"] == pytest.approx(1.0, abs=1e-12)


def test_fan_in_fan_out_and_rslora_match_peft(tmp_path):
    """GPT-2's Conv1D matrices (stored (in, out): fan_in_fan_out) with rsLoRA's alpha/sqrt(r) scale."""
    import copy

    from rankedit.files.adapter import AdapterCheckpoint
    from rankedit.files.checkpoint import Checkpoint

    base = synthetic.build_random(tmp_path / "base", "gpt2", seed=0)
    model = _peft_adapter(base, tmp_path / "adapter", r=4, lora_alpha=6, target_modules=["c_attn", "c_fc"],
                          fan_in_fan_out=True, use_rslora=True)
    view = AdapterCheckpoint(tmp_path / "adapter", Checkpoint(base))
    assert view.lora and all(m.transpose and m.scale == 6 / 2 for m in view.lora.values())
    for name in view.lora:
        layer = model.get_submodule("base_model.model." + name.removesuffix(".weight"))
        assert torch.equal(view.delta(name, torch.float32), layer.get_delta_weight("default"))
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    for name in view.lora:
        assert torch.equal(view.get(name), merged[name]), name
