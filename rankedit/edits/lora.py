"""``--as-lora``: a rank-k edit written as a PEFT LoRA adapter instead of a merged checkpoint.

For each edited matrix the rank-k factors ``B @ A = c · U_k S_k V_kᵀ`` (the very
function the merged edit uses, same seed) become ``lora_B`` (m x k) and
``lora_A`` (k x n), with ``lora_alpha = r`` so PEFT's scaling is 1. Loaded with
``peft.PeftModel.from_pretrained(base_model, OUT)`` it reproduces the merged
rank-k edit. GPT-2's Conv1D layers are marked ``fan_in_fan_out``. Streams one
matrix pair at a time. Factors are computed in float32 and stored in the base
matrix's own dtype (a bf16 model gives a bf16 adapter, as mergekit's LoRA
extraction does) unless ``lora_dtype`` asks for another.

``adapter_config.json`` is written by rankedit, not by PEFT's
``save_pretrained``: PEFT turns ``target_modules`` into a set and writes it in
hash order, which would make two identical exports differ. Its
``base_model_name_or_path`` is the base's Hub id when one is known (a Hub id
given to `rankedit edit`, a snapshot of the HF cache, a config naming its
origin), else null: a local path means nothing to whoever downloads the adapter.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import json

import torch
from safetensors.torch import save_file

from rankedit.files.atomic import atomic_dir
from rankedit.edits.manifest import build_manifest, matrix_facts, write_manifest
from rankedit.edits.registry import EditResult, matrix_seed
from rankedit.edits.storage import MatrixSize
from rankedit.core.svd import svd_facts, warn_unidentifiable
from rankedit.core.errors import RankeditError
from rankedit.core.modules import as_linear, classify
from rankedit.files.validate import check_output
from rankedit.core.names import ADAPTER_CONFIG, ADAPTER_WEIGHTS

# --lora-dtype: "source" keeps each base matrix's dtype
LORA_DTYPES = {"source": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _factor_dtype(stored: str, lora_dtype: str) -> torch.dtype:
    if lora_dtype not in LORA_DTYPES:
        raise RankeditError(f"--lora-dtype must be one of {', '.join(LORA_DTYPES)}, got {lora_dtype!r}")
    want = LORA_DTYPES[lora_dtype]
    if want is not None:
        return want
    src = getattr(torch, stored, None)
    # integer or exotic (fp8) storage: keep the factors in float32 rather than round them into it
    return src if src in (torch.float32, torch.bfloat16, torch.float16, torch.float64) else torch.float32


def adapter_config(cfg, base_id: str | None) -> str:
    """The adapter_config.json text of a PEFT ``LoraConfig``: sorted keys and lists, so byte-deterministic."""
    d = cfg.to_dict()
    d = {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in d.items()}
    d["base_model_name_or_path"] = base_id
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


def lora_tensors(plan, device: str = "cpu", progress: bool = False, lora_dtype: str = "source"):
    """Yield ``(name, A, B, facts)`` for every edited matrix of a rank-k plan (A, B in the stored dtype)."""
    from tqdm.auto import tqdm

    from rankedit.edits.rank_k import rank_k_parts

    p = plan.params
    mt = plan.base.model_type
    for name in tqdm(plan.matrices, desc="rank-k factors", disable=not progress):
        info = classify(name, plan.base.info(name).shape, mt)
        w0 = as_linear(plan.base.get(name).to(device=device, dtype=torch.float32), info)
        w1 = as_linear(plan.tuned[0].get(name).to(device=device, dtype=torch.float32), info)
        dw = w1 - w0
        B, A, kept, acc, c = rank_k_parts(dw, p.k, p.scale, matrix_seed(p.seed, name))
        if p.multiplier != 1:  # α, as Edit.run applies it to the merged edit
            B, c = B * p.multiplier, c * p.multiplier
        dt = _factor_dtype(plan.base.info(name).dtype, lora_dtype)
        res = EditResult(delta=B @ A, rank_kept=kept, rescale=c, **svd_facts(acc))
        facts = matrix_facts(name, dw, res, plan.edit.storage(p, MatrixSize(tuple(dw.shape), dt.itemsize)))
        yield name, A.to(dt).cpu().contiguous(), B.to(dt).cpu().contiguous(), facts


def export_lora(plan, out, *, device: str = "cpu", overwrite: bool = False, progress: bool = False,
                lora_dtype: str = "source") -> Path:
    from peft import LoraConfig

    from rankedit.edits.edit_plan import inputs_record, input_paths, largest_short_side, record_params, start_hashing
    from rankedit.core.threads import hot_path_threads
    from rankedit.files.provenance import hub_id_of

    if plan.edit.name != "rank-k":
        raise RankeditError(f"--as-lora exports rank-k edits only, not {plan.edit.name}")
    if plan.params.rest != "base":
        raise RankeditError("--as-lora keeps the base's non-matrix tensors; --rest tuned cannot be written as a LoRA adapter")
    _factor_dtype("float32", lora_dtype)  # an unknown --lora-dtype fails before any work
    out = Path(out)
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = start_hashing(pool, plan)
        with atomic_dir(out, kind="edit", inputs=input_paths(plan), overwrite=overwrite) as tmp:
            tensors, facts = {}, []
            with hot_path_threads("edit", largest_short_side(plan)):
                for name, A, B, f in lora_tensors(plan, device, progress, lora_dtype):
                    module = name.removesuffix(".weight")
                    tensors[f"base_model.model.{module}.lora_A.weight"] = A
                    tensors[f"base_model.model.{module}.lora_B.weight"] = B
                    facts.append(f)
            warn_unidentifiable(plan.edit.name, facts)
            save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
            check_output(tmp, out)  # whole and finite before it is renamed into place
            k = plan.params.k
            cfg = LoraConfig(
                r=k, lora_alpha=k, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                target_modules=sorted(n.removesuffix(".weight") for n in plan.matrices),
                fan_in_fan_out=plan.base.model_type == "gpt2", inference_mode=True,
            )
            (tmp / ADAPTER_CONFIG).write_text(adapter_config(cfg, hub_id_of(str(plan.base.path))))
            hashes = {p: f.result() for p, f in hashing.items()}
            numels = {n: plan.base.info(n).numel for n in plan.matrices}
            params = {**record_params(plan, True), "lora_dtype": lora_dtype}
            manifest = build_manifest(plan.edit.name, None, params, inputs_record(plan, hashes),
                                      facts, numels)
            write_manifest(tmp, manifest)
    return out
