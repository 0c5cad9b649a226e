"""Where PEFT puts each edited matrix's factors in the model it loads: every edited matrix has a place, or
the export is refused in one line that names the family and the reason (never a target dropped in silence).

The model is laid out on the ``meta`` device from its config (transformers' own class, remote code
off, no weight read), so a target is named as PEFT will find it: a multimodal checkpoint's
``model.language_model.layers...`` is ``model.layers...`` in the causal LM. A matrix goes to:

- a linear module (``nn.Linear``, GPT-2's ``Conv1D``) of its name;
- else a parameter (PEFT's ``target_parameters``): of its name and shape (a router that is not a
  linear module; GPT-OSS's fused ``[E, in, out]`` expert stacks), of the name transformers' own
  loading rules rename it to (Granite-4.0-H's ``input_linear.weight`` -> ``experts.gate_up_proj``),
  or, for one expert's 2-D tensor that transformers fuses on loading (Qwen3-MoE, DeepSeek-V3,
  Qwen3-Next: gate and up concatenated into ``experts.gate_up_proj``), its expert and part there;
- refused: what PEFT itself refuses (LoRA on a Mamba block's ``out_proj`` in Falcon-H1 and Nemotron-H),
  and a matrix none of these place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from rankedit.core.errors import RankeditError
from rankedit.core.modules import loaded_names, split_key
import re
from rankedit.files.validate import quiet_transformers


def _meta_model(path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

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
    part: int = 0  # where transformers fuses per-expert tensors (gate, up -> gate_up): this one's place
    parts: int = 1  # and how many are concatenated along the output axis


def _loading_rules(model_type: str) -> tuple[list, list]:
    """transformers' own rules for loading a checkpoint of ``model_type``: (renames: (regex, replacement)),
    (fusions: (regex of a per-expert tensor, fused parameter, part, parts)); only the fusions rankedit can
    map back (experts stacked on axis 0, parts concatenated along the output axis)."""
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
        from transformers.core_model_loading import Concatenate, MergeModulelist, WeightConverter, WeightRenaming
    except ImportError:  # a transformers without loading rules: names are what they are on disk
        return [], []
    renames, fusions = [], []
    for rule in get_checkpoint_conversion_mapping(model_type) or []:
        src, tgt, ops = list(rule.source_patterns), list(rule.target_patterns), list(getattr(rule, "operations", None) or [])
        if isinstance(rule, WeightRenaming) and len(tgt) == 1:
            renames += [(re.compile(pat), tgt[0]) for pat in src]
        elif isinstance(rule, WeightConverter) and len(tgt) == 1 and ops and isinstance(ops[0], MergeModulelist) \
                and ops[0].dim == 0 and (len(ops) == 1 or (len(ops) == 2 and isinstance(ops[1], Concatenate)
                                                            and ops[1].dim == 1)):
            fusions += [(re.compile(re.escape(pat).replace(r"\*", r"(\d+)")), tgt[0], i, len(src))
                        for i, pat in enumerate(src)]
    return renames, fusions


def _fused_place(name: str, model_type: str, params: dict) -> Optional[Target]:
    """A per-expert 2-D tensor's place in the parameter transformers fuses it into (``experts.gate_up_proj``)."""
    _, fusions = _loading_rules(model_type)
    for pattern, target, part, parts in fusions:
        m = pattern.search(name)
        if m is not None:
            fused = name[:m.start()] + target + name[m.end():]
            param = next((c for c in loaded_names(fused) if c in params and params[c].ndim == 3), None)
            if param is not None and int(m.group(1)) < params[param].shape[0]:
                return Target(param, param=True, expert=int(m.group(1)), part=part, parts=parts)
    return None


def _peft_rewritten_leaves(model_type: str) -> set[str]:
    """Module names PEFT rewrites on loading an adapter of this family (its transformers-v4 MoE conversion turns a
    target module ``...down_proj`` into the fused expert parameter ``down_proj``, whichever block it is in): a dense
    or shared MLP's such projection is targeted by its weight instead, which that conversion leaves alone."""
    try:
        from peft.utils.transformers_weight_conversion import _MODEL_TO_CONVERSION_PATTERN, _MOE_TARGET_MODULE_MAPPING
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # a PEFT without that conversion: target modules are taken as they are
        return set()
    if get_checkpoint_conversion_mapping(model_type) is None:
        return set()
    return set(_MOE_TARGET_MODULE_MAPPING.get(_MODEL_TO_CONVERSION_PATTERN.get(model_type), {}))


def _renamed(name: str, model_type: str) -> list[str]:
    renames, _ = _loading_rules(model_type)
    out = name
    for pattern, repl in renames:
        out = pattern.sub(repl, out)
    return loaded_names(out) if out != name else []


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
    rewritten = _peft_rewritten_leaves(family)
    for key in plan.matrices:
        name, e = split_key(key)
        shape = tuple(plan.base.info(name).shape)
        found = None
        if e is None:
            module = next((c for c in loaded_names(name.removesuffix(".weight")) if isinstance(modules.get(c), linear)), None)
            if module is not None and module.rsplit(".", 1)[-1] in rewritten:  # its weight, as a target parameter
                found = Target(module + ".weight", param=True)
            else:
                found = Target(module) if module is not None else None
        if found is None:  # a parameter of the same shape, maybe renamed on loading: PEFT's target_parameters
            param = next((c for c in loaded_names(name) + _renamed(name, family)
                          if c in params and tuple(params[c].shape) == shape), None)
            found = Target(param, param=True, expert=e) if param is not None else None
        if found is None and e is None and len(shape) == 2:  # one expert's tensor, fused on loading
            found = _fused_place(name, family, params)
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
    with torch.device("meta"):  # a copy: PEFT may rewrite a config in place (its transformers-v4 conversion)
        peft_model = get_peft_model(model, copy.deepcopy(config))
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
