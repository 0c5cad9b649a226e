"""The smallest faithful artifact of an edit: what `rankedit compress` writes for its winner.

- A low-rank edit (rank-k, rank-auto, their controls, sub-rank-1 on ΔW's pair) becomes a PEFT
  LoRA adapter (``rankedit.edits.lora``): ``rank_pattern`` / ``alpha_pattern`` where the ranks
  differ per matrix. It loads with ``peft.PeftModel.from_pretrained(base, FOLDER)``.
- Every other edit becomes a rankedit delta (``rankedit.edits.delta_format``):
  ``delta.safetensors``, its matrices in the layout of the edit, nothing else (the other
  tensors are the base's).

Both carry ``delta.json``: the format and its version, the edit and its parameters, the base
(sha256 of its weight files, its Hub id where known, and each edited tensor's shape and
dtype), each tensor's layout, the payload's sha256 and its bytes. ``rankedit apply``
(``rankedit.edits.apply``) reads it back. Bytes on disk are what ``rankedit.edits.storage``
counts, matrix by matrix (``stored_bytes``: the safetensors payload, header aside).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rankedit.core.errors import RankeditError
from rankedit.core.modules import from_linear
from rankedit.core.names import ADAPTER_WEIGHTS, ARTIFACT_RECORD
from rankedit.edits import delta_format as fmt
from rankedit.edits.edit_plan import EditPlan, input_paths, plan_coverage, run_matrices, start_hashing, state_coverage
from rankedit.edits.methods.rank_k import extraction_params
from rankedit.edits.storage import MatrixSize
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import file_sha256
from rankedit.files.validate import check_output
from rankedit.edits.build import plan_edit
from rankedit.edits.lora import lora_folder
from rankedit.edits.registry import get_edit
from rankedit.files.provenance import hub_id_of

RECORD = ARTIFACT_RECORD
DELTA_WEIGHTS = "delta.safetensors"
KIND = "artifact"  # the output folder's kind (``rankedit.files.outdir``)


def write_artifact(base, tuned, method: str, params: dict, out, *, device: str = "cpu", progress: bool = True) -> dict:
    """Write the smallest faithful artifact of edit ``method`` with ``params`` (the same dict a plan's
    edit gets) to the new folder ``out``; return ``{"kind": "peft-lora" | "rankedit-delta", "path",
    "stored_params", "stored_bytes"}`` (bytes of the safetensors payload on disk).

    An existing ``out`` is replaced only when it is an earlier artifact holding nothing else."""
    edit = get_edit(method)
    build_only = set(edit.options.model_fields) if edit.options else set()  # e.g. rank-k's as_lora
    # a rank-family edit's artifact is an extraction: the truncated SVD unless a scale is given
    params = extraction_params(edit, {k: v for k, v in params.items() if k not in build_only})
    plan = plan_edit(method, base, tuned, **params)
    if plan.params.rest != "base":
        raise RankeditError(f"an artifact keeps the base's non-matrix tensors; {method} with rest=tuned "
                            "cannot be written as one (build the checkpoint with `rankedit edit`)")
    layout = edit.artifact_for(plan.params)
    if layout == "scalar":
        raise RankeditError(f"{method} with direction=base: its artifact (one number per matrix on the base's "
                            "pair) is not written yet; use direction=delta")
    out = Path(out)
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = start_hashing(pool, plan)
        with atomic_dir(out, kind=KIND, inputs=input_paths(plan)) as tmp:
            if layout == "lora":
                record = _write_lora(plan, tmp, device, progress)
            else:
                record = _write_delta(plan, tmp, device, progress)
            check_output(tmp, out)  # whole and finite before it is renamed into place
            record["base"] = base_record(plan, hashing[plan.base.path].result())
            record["coverage"] = plan_coverage(plan, "base")  # `rankedit apply` takes every other tensor from the base
            state_coverage(record["coverage"], what=plan.edit.name)
            (tmp / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return {"kind": record["kind"], "path": str(out), "stored_params": record["stored_params"],
            "stored_bytes": record["stored_bytes"], "coverage": record["coverage"]}


def base_record(plan: EditPlan, sha256: dict[str, str]) -> dict:
    """What names the base: its weight files' hashes and Hub id (never a local path)."""
    return {"sha256": sha256, "hub_id": hub_id_of(str(plan.base.path))}


def _head(plan: EditPlan, kind: str, payload: Path, tensors: dict, stored_params: int, stored_bytes: int) -> dict:
    return {"format": fmt.FORMAT, "version": fmt.VERSION, "kind": kind, "method": plan.edit.name,
            "params": plan.params.model_dump(mode="json"),
            "payload": {"file": payload.name, "sha256": file_sha256(payload)},
            "tensors": tensors, "stored_params": stored_params, "stored_bytes": stored_bytes}


def _tensor_record(plan: EditPlan, key: str, **layout: Any) -> dict:
    """A matrix's record: its stored shape (one expert's slice of a fused stack) and dtype, and its layout."""
    return {"shape": list(plan.shape(key)), "dtype": plan.stored_dtype(key), **layout}


def _write_lora(plan: EditPlan, tmp: Path, device: str, progress: bool) -> dict:
    # factors at the precision the edit computed them in (float32; float64 for a float64 base): rounded
    # to a bf16 base's dtype, W0 + B A would land a bf16 step away from the build's weights
    exact = {n: "source" if plan.stored_dtype(n) == "float64" else "float32" for n in plan.matrices}
    facts = lora_folder(plan, tmp, device=device, progress=progress,
                        lora_dtype="source" if set(exact.values()) == {"source"} else "float32")
    # the module PEFT targets is recorded where it is not the tensor's name (a multimodal checkpoint's prefix)
    tensors = {f["name"]: _tensor_record(plan, f["name"], layout="lora", **_where(f)) for f in facts}
    stored = sum(f["stored_bytes"] for f in facts)
    head = _head(plan, "peft-lora", tmp / ADAPTER_WEIGHTS, tensors, sum(f["stored_params"] for f in facts), stored)
    on_disk = _payload_on_disk(tmp / ADAPTER_WEIGHTS)
    padded = any(f.get("rank") is not None for f in facts)  # target parameters: zeros PEFT's layout needs
    if padded and on_disk > stored:
        # the matrices' own factors are what the edit costs; the zeros of the layout (a smaller rank padded to
        # the parameter's r, gate's and up's factors side by side on the fused gate_up) are stated apart
        head["stored_bytes"], head["padding_bytes"] = on_disk, on_disk - stored
    elif on_disk != stored:
        raise RankeditError(f"internal: the adapter holds {on_disk} bytes, its storage record says {stored}")
    return head


def _where(f: dict) -> dict:
    """Where the adapter holds a matrix's factors, where its tensor's name does not say it: the module PEFT
    targets (a multimodal checkpoint's prefix), and for a target parameter its rank, expert and expert count."""
    out = {k: f[k] for k in ("expert", "experts", "rank", "rows", "cols") if f.get(k) is not None}
    if f["module"] != f["name"].removesuffix(".weight") or out:
        out["module"] = f["module"]
    return out


def _write_delta(plan: EditPlan, tmp: Path, device: str, progress: bool) -> dict:
    import torch
    from safetensors.torch import save_file

    p, edit = plan.params, plan.edit
    layout = edit.artifact_for(p)
    if layout not in fmt.LAYOUTS:
        raise RankeditError(f"{edit.name}: unknown artifact layout {layout!r} (one of lora, {', '.join(fmt.LAYOUTS)})")
    tensors: dict[str, torch.Tensor] = {}
    records, n_params = {}, 0
    for m in run_matrices(plan, device, progress, f"{edit.name} artifact"):
        name, info, x, res = m.key, m.info, m.x, m.result
        stored = m.stored
        edited = m.weight  # the build's very bytes (rankedit.edits.matrix_edit, as every writer)
        if layout == "sparse":
            kept = from_linear(res.parts["kept"].to(torch.bool), info)
            parts, rec = fmt.encode_sparse(edited, kept)
        elif layout == "sign":
            parts, rec = fmt.encode_sign(res.delta, tuple(res.parts["scales"].shape))
        else:
            parts, rec = fmt.encode_dense(edited)
        size = MatrixSize(tuple(x.dw.shape), torch.empty((), dtype=stored).element_size(), res.density,
                          res.stored_rank)
        n_params += edit.storage(p, size).params
        tensors.update({f"{name}.{k}": v for k, v in parts.items()})
        records[name] = _tensor_record(plan, name, **rec)
        del x, res, edited
    save_file(tensors, str(tmp / DELTA_WEIGHTS), metadata={"format": "pt"})
    return _head(plan, "rankedit-delta", tmp / DELTA_WEIGHTS, records, n_params, fmt.payload_bytes(tensors))


def _payload_on_disk(path: Path) -> int:
    """Bytes of a safetensors file past its header."""
    with open(path, "rb") as f:
        head = int.from_bytes(f.read(8), "little")
    return os.path.getsize(path) - 8 - head
