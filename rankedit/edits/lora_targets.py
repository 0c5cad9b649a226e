"""Which modules of the model PEFT loads an adapter into: every edited matrix must be one, or the export
is refused in one line that names the family and the reason (never a target dropped in silence).

The model is laid out on the ``meta`` device from its config (transformers' own class, remote code
off, no weight read), so a target is named as PEFT will find it: a multimodal checkpoint's
``model.language_model.layers...`` is ``model.layers...`` in the causal LM. A matrix is a target
when it is an ``nn.Linear`` (or GPT-2's ``Conv1D``) there. Refused:

- experts that transformers loads fused as 3-D parameters while the checkpoint saves one 2-D tensor
  per expert (Qwen3-MoE, DeepSeek-V3, Qwen3-Next), or under other names (Granite-4.0-H): the
  adapter would have to fuse or rename them. Where the checkpoint's fused stack is the loaded
  parameter itself (GPT-OSS), PEFT's ``target_parameters`` takes it: expert e's factors are rows
  ``e·r ... e·r + r - 1`` of ``lora_A`` and columns ``j·E + e`` of ``lora_B``, as PEFT's
  ``ParamWrapper`` reads them; a router that is not a linear module is a 2-D target parameter;
- what PEFT itself refuses (LoRA on a Mamba block's ``out_proj`` in Falcon-H1 and Nemotron-H).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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


@dataclass(frozen=True)
class Target:
    """Where PEFT puts one matrix's factors: a linear module, or a parameter (``target_parameters``): a
    2-D weight of a module that is not linear (a router), or expert ``expert`` of a fused 3-D stack."""

    name: str  # the module's name, or the parameter's full name
    param: bool = False
    expert: Optional[int] = None


def peft_targets(plan) -> dict[str, Target]:
    """matrix -> where PEFT targets it in the loaded model; RankeditError (one line) if one has no place."""
    import torch.nn as nn

    family = plan.base.model_type
    try:
        model = _meta_model(plan.base.path)
    except Exception as e:  # noqa: BLE001 - transformers' own refusal, as one line
        raise RankeditError(f"--as-lora: transformers cannot lay out {family} from its config "
                            f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    linear = (nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D

        linear += (Conv1D,)
    except ImportError:  # pragma: no cover - every transformers rankedit supports has it
        pass
    out, missing = {}, []
    for key in plan.matrices:
        name, e = split_key(key)
        shape = tuple(plan.base.info(name).shape)
        found = None
        if e is None:
            module = next((c for c in loaded_names(name.removesuffix(".weight")) if isinstance(modules.get(c), linear)), None)
            found = Target(module) if module is not None else None
        if found is None:  # a parameter of the same name and shape: PEFT's target_parameters
            param = next((c for c in loaded_names(name) if c in params and tuple(params[c].shape) == shape), None)
            found = Target(param, param=True, expert=e) if param is not None else None
        if found is None:
            missing.append((name, e))
        else:
            out[key] = found
    if missing:
        name, e = missing[0]
        why = ("transformers loads its fused experts under other names or shapes" if e is not None else
               "transformers loads its experts fused as 3-D parameters" if ".experts." in name
               else "not a linear module or a parameter of the model transformers loads")
        raise RankeditError(f"--as-lora: {family}: {len(missing)} edited matrices have no module or parameter PEFT "
                            f"can target (e.g. {name}: {why}); write a merged checkpoint or an --artifact")
    _peft_refusals(plan, model, {k: t.name for k, t in out.items() if not t.param})
    return out


def wrapper_names(config, model_path) -> dict[str, str]:
    """parameter's full name -> the module PEFT's ``ParamWrapper`` for it has in the adapter's state dict (two
    parameters of one module nest: the first is wrapped inside the second, ``...experts.base_layer``)."""
    import torch
    from peft import get_peft_model
    from peft.tuners.lora.layer import ParamWrapper

    model = _meta_model(model_path)
    with torch.device("meta"):
        peft_model = get_peft_model(model, config)
    out = {}
    for path, mod in peft_model.named_modules():
        if isinstance(mod, ParamWrapper):
            owner = path.removeprefix("base_model.model.")
            while owner.endswith(".base_layer"):
                owner = owner.removesuffix(".base_layer")
            out[f"{owner}.{mod.parameter_name}"] = path.removeprefix("base_model.model.")
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
