"""``--as-lora``: a low-rank edit written as a PEFT LoRA adapter instead of a merged checkpoint
(rank-k here; ``rankedit.edits.artifact`` writes every low-rank edit so, rank-auto's ranks per matrix
as ``rank_pattern``).

For each edited matrix the rank-k factors ``B @ A = c · U_k S_k V_kᵀ`` (the very
function the merged edit uses, same seed) become ``lora_B`` (m x k) and
``lora_A`` (k x n), with ``lora_alpha = r`` so PEFT's scaling is 1. An adapter is an
extraction: c = 1 (``scale: none``, the truncated SVD, the best rank-k approximation of
ΔW) unless a scale is given (``rankedit.edits.methods.rank_k.extraction_params``). Loaded with
``peft.PeftModel.from_pretrained(base_model, OUT)`` it reproduces the merged
rank-k edit of the same scale. The manifest's ``stored_delta_error`` is the error of
the product of the factors as stored (in their dtype) against the edit. GPT-2's Conv1D layers are marked ``fan_in_fan_out``. Streams one
matrix pair at a time. Factors are computed in float32 and stored in the base
matrix's own dtype (a bf16 model gives a bf16 adapter, as mergekit's LoRA
extraction does) unless ``lora_dtype`` asks for another.

``adapter_config.json`` is written by rankedit, not by PEFT's
``save_pretrained``: PEFT turns ``target_modules`` into a set and writes it in
hash order, which would make two identical exports differ. Its
``base_model_name_or_path`` is the base's Hub id when one is known (a Hub id
given to `rankedit edit`, a snapshot of the HF cache, a config naming its
origin), else the base's absolute path, so that
``peft.AutoPeftModelForCausalLM.from_pretrained(OUT)`` loads it on this machine;
`rankedit push` uploads a copy naming the Hub id instead (``rankedit.publish.hub``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import json

import torch
from safetensors.torch import save_file

from rankedit.files.atomic import atomic_dir
from rankedit.edits.manifest import build_manifest, write_manifest
from rankedit.edits.realized import dtype_name, realized_norms, warn_written
from rankedit.core.svd import warn_unidentifiable
from rankedit.core.errors import RankeditError
from rankedit.files.validate import check_output
from rankedit.core.names import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from collections import Counter
from rankedit.core.threads import hot_path_threads
from rankedit.edits.edit_plan import (
    check_update, input_paths, inputs_record, largest_short_side, plan_coverage, record_params, run_matrices,
    start_hashing, state_coverage,
)
from rankedit.edits.lora_targets import peft_targets, wrapper_names
from rankedit.files.provenance import hub_id_of

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
    """Yield ``(name, A, B, facts)`` for every edited matrix of a low-rank plan (the edit's own factors,
    ``EditResult.parts``, α folded into B; A, B in the stored dtype)."""
    p = plan.params
    for m in run_matrices(plan, device, progress, f"{plan.edit.name} factors"):
        res = m.result
        B, A = res.parts["B"], res.parts["A"]
        if p.multiplier != 1:  # α, as Edit.run applies it to the merged edit
            B = B * p.multiplier
        dt = _factor_dtype(plan.stored_dtype(m.key), lora_dtype)
        Aq, Bq = A.to(dt), B.to(dt)
        # the edit as written: the product of the factors as stored (rounded to ``dt``), against the edit
        written = {**realized_norms(res.delta, Bq.to(res.delta.dtype) @ Aq.to(res.delta.dtype)),
                   "stored_dtype": dtype_name(dt)}
        # what this adapter stores: its factors in ``dt`` (the record counts the faithful, float32 ones)
        facts = {**m.facts(plan.edit, p, dt.itemsize, written=False), **written}
        facts["stored_bytes"] = facts["stored_params"] * dt.itemsize
        yield m.key, Aq.cpu().contiguous(), Bq.cpu().contiguous(), facts


def lora_config(ranks: dict[str, int], fan_in_fan_out: bool, params: dict[str, int] | None = None):
    """PEFT's ``LoraConfig`` for factors of these ranks (module name -> rank): r is the commonest rank (the
    smallest of equally common ones), ``rank_pattern`` / ``alpha_pattern`` name every module of another,
    and each alpha is its rank, so PEFT's scaling alpha/r is 1. A full module name is a pattern that
    matches only itself (PEFT matches ``(.*\\.)?NAME$``). ``params`` (parameter name -> rank): PEFT's
    ``target_parameters``, all at r, the largest of their ranks (factors of a smaller one are padded with
    zeros, which add nothing): a pattern would name their module, not the parameter."""
    from peft import LoraConfig

    counts = Counter(ranks.values())
    r = max(params.values()) if params else min(counts, key=lambda k: (-counts[k], k))
    pattern = {m: k for m, k in sorted(ranks.items()) if k != r}
    extra = {"target_parameters": sorted(params)} if params else {}
    return LoraConfig(r=r, lora_alpha=r, rank_pattern=pattern, alpha_pattern=dict(pattern), lora_dropout=0.0,
                      bias="none", task_type="CAUSAL_LM", target_modules=sorted(ranks),
                      fan_in_fan_out=fan_in_fan_out, inference_mode=True, **extra)


def lora_folder(plan, tmp: Path, *, device: str = "cpu", progress: bool = False, lora_dtype: str = "source",
                targets: dict | None = None) -> list[dict]:
    """Write the adapter (weights, then adapter_config.json) of a low-rank plan into ``tmp``; return the facts."""
    targets = targets or peft_targets(plan)  # every edited matrix has a place in PEFT, or one line refuses the export
    tensors, facts, ranks = {}, [], {}
    on_params: dict[str, dict] = {}  # parameter -> {expert or None: {part: (A, B)}}: PEFT's target_parameters
    placed: dict[str, dict] = {}  # matrix -> its facts, where it is on a target parameter
    with hot_path_threads("edit", largest_short_side(plan)):
        for name, A, B, f in lora_tensors(plan, device, progress, lora_dtype):
            t = targets[name]
            if t.param:
                on_params.setdefault(t.name, {}).setdefault(t.expert, {})[t.part] = (A, B)
                placed[name] = {**f, "module": t.name, "expert": t.expert, "part": t.part}
                facts.append(placed[name])
                continue
            tensors[f"base_model.model.{t.name}.lora_A.weight"] = A
            tensors[f"base_model.model.{t.name}.lora_B.weight"] = B
            ranks[t.name] = A.shape[0]
            facts.append({**f, "module": t.name})
    warn_unidentifiable(plan.edit.name, facts)
    fused = {p: {e: fuse_parts(parts) for e, parts in by_e.items()} for p, by_e in on_params.items()}
    params = {p: max(a.shape[0] for a, _, _ in by_e.values()) for p, by_e in fused.items()}
    cfg = lora_config(ranks, plan.base.model_type == "gpt2", params)
    if on_params:
        wrapped = wrapper_names(cfg, plan.base.path)
        for p, by_e in fused.items():
            A, B = param_factors({e: (a, b) for e, (a, b, _) in by_e.items()}, cfg.r)
            tensors[f"base_model.model.{wrapped[p]}.lora_A.weight"] = A
            tensors[f"base_model.model.{wrapped[p]}.lora_B.weight"] = B
        for f in placed.values():  # where `rankedit apply` finds this matrix's own factors again
            rows, cols = fused[f["module"]][f["expert"]][2][f.pop("part")]
            f.update(module=wrapped[f["module"]], rank=cfg.r, experts=len(fused[f["module"]]), rows=rows, cols=cols)
    save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    base_ref = hub_id_of(str(plan.base.path)) or str(Path(plan.base.path).resolve())
    (tmp / ADAPTER_CONFIG).write_text(adapter_config(cfg, base_ref))
    return facts


def fuse_parts(parts: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One expert's factors on a parameter transformers fuses from per-expert tensors along the output axis
    (gate and up -> gate_up): A = [A_0; A_1 ...], B = diag(B_0, B_1 ...), so B A = [B_0 A_0; B_1 A_1 ...];
    and each part's (rows, cols) of B, where its own factors are."""
    order = sorted(parts)
    A = torch.cat([parts[p][0] for p in order])
    B = A.new_zeros(sum(parts[p][1].shape[0] for p in order), A.shape[0])
    where, r0, c0 = {}, 0, 0
    for p in order:
        a, b = parts[p]
        B[r0:r0 + b.shape[0], c0:c0 + a.shape[0]] = b
        where[p] = ([r0, r0 + b.shape[0]], [c0, c0 + a.shape[0]])
        r0, c0 = r0 + b.shape[0], c0 + a.shape[0]
    return A, B, where


def param_factors(by_expert: dict, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One target parameter's ``lora_A`` (E·r × in) and ``lora_B`` (out × r·E) from each expert's factors A_e
    (k × in), B_e (out × k), k ≤ r padded with zeros, laid out as PEFT's ``ParamWrapper`` reads them:
    A reshaped (E, r, in), B reshaped (out, r, E); a 2-D parameter (``None``: no expert) is A (r × in), B (out × r)."""
    def pad(A, B):
        k = A.shape[0]
        return (torch.cat([A, A.new_zeros(r - k, A.shape[1])]), torch.cat([B, B.new_zeros(B.shape[0], r - k)], dim=1))

    if list(by_expert) == [None]:
        return pad(*by_expert[None])
    padded = [pad(*by_expert[e]) for e in sorted(by_expert)]
    A = torch.cat([a for a, _ in padded])  # (E r, in): expert-major
    B = torch.stack([b for _, b in padded], dim=2).reshape(padded[0][1].shape[0], -1)  # (out, r, E) -> (out, r E)
    return A.contiguous(), B.contiguous()


def export_lora(plan, out, *, device: str = "cpu", overwrite: bool = False, progress: bool = False,
                lora_dtype: str = "source") -> Path:
    if plan.edit.artifact_for(plan.params) != "lora":
        raise RankeditError(f"--as-lora exports low-rank edits only (rank-k, rank-auto), not {plan.edit.name}")
    if plan.params.rest != "base":
        raise RankeditError("--as-lora keeps the base's non-matrix tensors; --rest tuned cannot be written as a LoRA adapter")
    _factor_dtype("float32", lora_dtype)  # an unknown --lora-dtype fails before any work

    targets = peft_targets(plan)  # a family PEFT cannot load the adapter of is refused before any work
    out = Path(out)
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = start_hashing(pool, plan)
        with atomic_dir(out, kind=f"edit:{plan.edit.name}:lora", inputs=input_paths(plan), overwrite=overwrite) as tmp:
            facts = lora_folder(plan, tmp, device=device, progress=progress, lora_dtype=lora_dtype, targets=targets)
            check_update(plan, facts)  # an adapter of a zero update would be all zeros
            check_output(tmp, out)  # whole and finite before it is renamed into place
            hashes = {p: f.result() for p, f in hashing.items()}
            numels = {n: plan.numel(n) for n in plan.matrices}
            params = {**record_params(plan, True), "lora_dtype": lora_dtype}
            manifest = build_manifest(plan.edit.name, None, params, inputs_record(plan, hashes),
                                      facts, numels)
            warn_written(plan.edit.name, manifest["summary"])  # factors rounded to --lora-dtype
            manifest["coverage"] = plan_coverage(plan, "base")  # the adapter leaves every other tensor to the base
            state_coverage(manifest["coverage"], what=plan.edit.name)
            write_manifest(tmp, manifest)
    return out
