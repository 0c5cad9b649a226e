"""``--as-lora``: a rank-k edit written as a PEFT LoRA adapter instead of a merged checkpoint.

For each edited matrix the rank-k factors ``B @ A = c · U_k S_k V_kᵀ`` (the very
function the merged edit uses, same seed) become ``lora_B`` (m x k) and
``lora_A`` (k x n), with ``lora_alpha = r`` so PEFT's scaling is 1. Loaded with
``peft.PeftModel.from_pretrained(base_model, OUT)`` it reproduces the merged
rank-k edit. GPT-2's Conv1D layers are marked ``fan_in_fan_out``. Streams one
matrix pair at a time; factors are stored in float32.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import save_file

from rankedit.atomic import atomic_dir
from rankedit.edits.manifest import build_manifest, write_manifest
from rankedit.edits.registry import matrix_seed
from rankedit.edits.svd import warn_unidentifiable
from rankedit.errors import RankeditError
from rankedit.modules import as_linear, classify

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def lora_tensors(plan, device: str = "cpu", progress: bool = False):
    """Yield ``(name, A, B, facts)`` for every edited matrix of a rank-k plan."""
    from tqdm.auto import tqdm

    from rankedit.edits.rank_k import rank_k_parts

    p = plan.params
    mt = plan.base.model_type
    for name in tqdm(plan.matrices, desc="rank-k factors", disable=not progress):
        info = classify(name, plan.base.info(name).shape, mt)
        w0 = as_linear(plan.base.get(name).to(device=device, dtype=torch.float32), info)
        w1 = as_linear(plan.tuned[0].get(name).to(device=device, dtype=torch.float32), info)
        dw = w1 - w0
        B, A, kept, acc = rank_k_parts(dw, p.k, p.scale, matrix_seed(p.seed, name))
        dw_norm = float(dw.norm())
        edit_norm = float((B @ A).norm())
        facts = {"name": name, "energy_kept": edit_norm / dw_norm if dw_norm > 0 else None, "density": None,
                 "rank_kept": kept, "dw_norm": dw_norm, "edit_norm": edit_norm,
                 "svd_error": acc.edit_error, "svd_identifiable": acc.identifiable}
        yield name, A.cpu().contiguous(), B.cpu().contiguous(), facts


def export_lora(plan, out, *, device: str = "cpu", overwrite: bool = True, progress: bool = False) -> Path:
    from peft import LoraConfig

    from rankedit.edits.build import _inputs_record, _start_hashing, record_params

    if plan.edit.name != "rank-k":
        raise RankeditError(f"--as-lora exports rank-k edits only, not {plan.edit.name}")
    if plan.params.rest != "base":
        raise RankeditError("--as-lora keeps the base's non-matrix tensors; --rest tuned cannot be written as a LoRA adapter")
    out = Path(out)
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = _start_hashing(pool, plan)
        with atomic_dir(out, overwrite=overwrite) as tmp:
            tensors, facts = {}, []
            for name, A, B, f in lora_tensors(plan, device, progress):
                module = name.removesuffix(".weight")
                tensors[f"base_model.model.{module}.lora_A.weight"] = A
                tensors[f"base_model.model.{module}.lora_B.weight"] = B
                facts.append(f)
            warn_unidentifiable(plan.edit.name, facts)
            save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
            k = plan.params.k
            cfg = LoraConfig(
                r=k, lora_alpha=k, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                target_modules=[n.removesuffix(".weight") for n in plan.matrices],
                fan_in_fan_out=plan.base.model_type == "gpt2",
                base_model_name_or_path=str(plan.base.path.resolve()), inference_mode=True,
            )
            cfg.save_pretrained(str(tmp))
            hashes = {p: f.result() for p, f in hashing.items()}
            numels = {n: plan.base.info(n).numel for n in plan.matrices}
            manifest = build_manifest(plan.edit.name, None, record_params(plan, True), _inputs_record(plan, hashes),
                                      facts, numels)
            write_manifest(tmp, manifest)
    return out
