"""Which modules of the model PEFT loads an adapter into: every edited matrix must be one, or the export
is refused in one line that names the family and the reason (never a target dropped in silence).

The model is laid out on the ``meta`` device from its config (transformers' own class, remote code
off, no weight read), so a target is named as PEFT will find it: a multimodal checkpoint's
``model.language_model.layers...`` is ``model.layers...`` in the causal LM. A matrix is a target
when it is an ``nn.Linear`` (or GPT-2's ``Conv1D``) there. Refused:

- experts that transformers holds fused as 3-D parameters (Qwen3-MoE and DeepSeek-V3 save one 2-D
  tensor per expert but load them fused; GPT-OSS and Granite store them fused): a per-module
  adapter has no module to attach to;
- what PEFT itself refuses (LoRA on a Mamba block's ``out_proj`` in Falcon-H1 and Nemotron-H).
"""

from __future__ import annotations

from rankedit.core.errors import RankeditError
from rankedit.core.modules import loaded_names, split_key


def _meta_model(path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from rankedit.files.validate import quiet_transformers

    with quiet_transformers():
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=False)


def peft_targets(plan) -> dict[str, str]:
    """matrix -> the module name PEFT targets for it in the loaded model; RankeditError if one has none."""
    import torch.nn as nn

    family = plan.base.model_type
    fused = [k for k in plan.matrices if split_key(k)[1] is not None]
    if fused:
        raise RankeditError(f"--as-lora: {family} stores its experts fused as 3-D tensors ({split_key(fused[0])[0]}), "
                            "which a per-module LoRA adapter cannot hold; write a merged checkpoint or an --artifact")
    try:
        model = _meta_model(plan.base.path)
    except Exception as e:  # noqa: BLE001 - transformers' own refusal, as one line
        raise RankeditError(f"--as-lora: transformers cannot lay out {family} from its config "
                            f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
    modules = dict(model.named_modules())
    linear = (nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D

        linear += (Conv1D,)
    except ImportError:  # pragma: no cover - every transformers rankedit supports has it
        pass
    out, missing = {}, []
    for key in plan.matrices:
        name = key.removesuffix(".weight")
        found = next((c for c in loaded_names(name) if isinstance(modules.get(c), linear)), None)
        if found is None:
            missing.append(name)
        else:
            out[key] = found
    if missing:
        why = ("transformers loads its experts fused as 3-D parameters" if any(".experts." in m for m in missing)
               else "they are not linear modules of the model transformers loads")
        raise RankeditError(f"--as-lora: {family}: {len(missing)} edited matrices have no module PEFT can target "
                            f"(e.g. {missing[0]}: {why}); write a merged checkpoint or an --artifact")
    _peft_refusals(plan, model, out)
    return out


def _peft_refusals(plan, model, targets: dict[str, str]) -> None:
    """What PEFT refuses for this family (its own check, where this PEFT has it), as one line."""
    try:
        from peft import LoraConfig
        from peft.tuners.tuners_utils import _check_lora_target_modules_mamba
    except ImportError:
        return
    cfg = LoraConfig(r=1, target_modules=["x"])
    for module in targets.values():
        try:
            _check_lora_target_modules_mamba(cfg, model, module.rsplit(".", 1)[-1])
        except ValueError:
            raise RankeditError(f"--as-lora: {plan.base.model_type}: PEFT refuses LoRA on a Mamba block's "
                                f"{module.rsplit('.', 1)[-1]} ({module}); write a merged checkpoint or an --artifact") \
                from None
