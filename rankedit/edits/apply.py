"""`rankedit apply ARTIFACT BASE -o OUT`: rebuild an edited checkpoint from its artifact and its base.

The artifact is a folder ``rankedit.edits.artifact`` wrote (a PEFT LoRA adapter or a rankedit
delta, each with ``delta.json``). Before any work: the record is read and its format version
checked, the payload's sha256 compared with the one recorded (a damaged file is refused), and
the base must be the one the artifact was made from (each edited tensor's shape and dtype, then
the sha256 of its weight files). Then every tensor of the base is written, one at a time, the
edited ones rebuilt as the build computed them (``W0 + B @ A`` for LoRA factors, merged without
PEFT), into an atomic folder that is checked whole, finite and with the base's tensors
(``rankedit.files.validate.check_output``) before it is renamed into place. Beside the weights,
``rankedit_edit.json`` names the edit, its parameters and the two inputs, so `rankedit push`
publishes the rebuilt checkpoint as it does an edit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from rankedit.core.errors import RankeditError
from rankedit.core.modules import as_linear, classify, from_linear, split_key
from rankedit.core.names import ADAPTER_WEIGHTS, HF_CONFIG
from rankedit.edits import delta_format as fmt
from rankedit.edits.artifact import DELTA_WEIGHTS, RECORD
from rankedit.edits.manifest import write_manifest
from rankedit.edits.matrix_edit import compute_dtype
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import Checkpoint, file_sha256, first_line
from rankedit.files.outdir import check_out
from rankedit.files.validate import check_inputs, check_output
from safetensors import safe_open
from tqdm.auto import tqdm
from rankedit import __version__
from rankedit.edits.build import EXTRA_FILES
from rankedit.edits.merge_options import checkpoint_bytes, shard_bytes
from rankedit.files.hashes import checkpoint_sha256
from rankedit.files.shards import write_shards

KINDS = {"peft-lora": ADAPTER_WEIGHTS, "rankedit-delta": DELTA_WEIGHTS}
OUT_KIND = "edit"  # the rebuilt folder is an edited checkpoint, as `rankedit edit` writes


def read_record(artifact: Path) -> dict:
    """The artifact's ``delta.json``, checked for what this version of rankedit reads."""
    if not artifact.is_dir():
        raise RankeditError(f"{artifact}: no such artifact folder")
    path = artifact / RECORD
    if not path.is_file():
        raise RankeditError(f"{artifact}: no {RECORD}, so not an artifact rankedit wrote (or it is incomplete)")
    try:
        rec = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RankeditError(f"{path}: damaged, not valid JSON ({first_line(e)})") from None
    if not isinstance(rec, dict) or rec.get("format") != fmt.FORMAT:
        raise RankeditError(f"{path}: not a rankedit artifact record (format {rec.get('format') if isinstance(rec, dict) else None!r})")
    if rec.get("version") != fmt.VERSION:
        raise RankeditError(f"{path}: artifact format version {rec.get('version')!r} is unknown to this rankedit "
                            f"(it reads version {fmt.VERSION})")
    if rec.get("kind") not in KINDS or not isinstance(rec.get("tensors"), dict) or not rec["tensors"]:
        raise RankeditError(f"{path}: damaged record (kind {rec.get('kind')!r}, {len(rec.get('tensors') or {})} tensors)")
    known = {"lora"} if rec["kind"] == "peft-lora" else set(fmt.LAYOUTS)
    bad = sorted(n for n, t in rec["tensors"].items() if not isinstance(t, dict) or t.get("layout") not in known)
    if bad:
        raise RankeditError(f"{path}: unknown layout for {bad[0]}")
    return rec


def check_base(rec: dict, base: Checkpoint, artifact: Path) -> None:
    """Refuse a base other than the one the artifact was made from."""
    for key, t in rec["tensors"].items():
        name, e = split_key(key)
        if name not in base.names:
            raise RankeditError(f"{artifact} was made for another base: {base.path} has no tensor {name}")
        info = base.info(name)
        shape = list(info.shape[1:] if e is not None else info.shape)  # one expert's slice of a fused stack
        if shape != t.get("shape") or info.dtype != t.get("dtype") or (e is not None and e >= info.shape[0]):
            raise RankeditError(f"{artifact} was made for another base: {key} is {t.get('shape')} {t.get('dtype')} "
                                f"there, {shape} {info.dtype} in {base.path}")
    want, have = (rec.get("base") or {}).get("sha256") or {}, checkpoint_sha256(base)
    if want != have:
        diff = sorted(set(want) ^ set(have)) or sorted(f for f in want if want[f] != have.get(f))
        raise RankeditError(f"{artifact} was made for another base: {base.path} differs ({diff[0]}: sha256 "
                            "or file not the recorded one)")


def open_payload(rec: dict, artifact: Path):
    """The payload, opened after its sha256 matched the record's."""
    path = artifact / KINDS[rec["kind"]]
    if not path.is_file():
        raise RankeditError(f"{artifact}: {path.name} is missing")
    if file_sha256(path) != (rec.get("payload") or {}).get("sha256"):
        raise RankeditError(f"{path}: damaged, its sha256 is not the one {RECORD} records")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # noqa: BLE001 - the library's own checks, as one line
        raise RankeditError(f"{path}: corrupt safetensors file ({first_line(e)})") from None


def rebuild(name: str, t: dict, base: Checkpoint, payload, device: str, w0: torch.Tensor | None = None) -> torch.Tensor:
    """One edited matrix, in the base's stored layout and dtype (``w0``: its base value, when it is one
    expert's slice of a fused stack)."""
    tensor_name = split_key(name)[0]
    w0 = base.get(name) if w0 is None else w0
    stored = w0.dtype
    layout = t["layout"]
    if layout == "lora":
        module = t.get("module") or name.removesuffix(".weight")
        A = payload.get_tensor(f"base_model.model.{module}.lora_A.weight")
        B = payload.get_tensor(f"base_model.model.{module}.lora_B.weight")
        if t.get("expert") is not None:  # one expert of a target parameter, as PEFT's ParamWrapper reads it
            r, n = t["rank"], t["experts"]
            A, B = A.reshape(n, r, -1)[t["expert"]], B.reshape(B.shape[0], r, n)[:, :, t["expert"]]
        if "cols" in t:  # its own factors among those of the parameter (the rest: padding, other parts)
            (r0, r1), (c0, c1) = t["rows"], t["cols"]
            A, B = A[c0:c1], B[r0:r1, c0:c1]
        info = classify(tensor_name, tuple(base.info(tensor_name).shape), base.model_type, base.config)
        cdt = compute_dtype(t["dtype"])
        w = as_linear(w0.to(device=device, dtype=cdt), info) + B.to(device=device, dtype=cdt) @ A.to(device=device, dtype=cdt)
        return from_linear(w, info).to(stored).cpu()
    parts = {k.removeprefix(name + "."): payload.get_tensor(k) for k in _keys_of(payload, name)}
    if layout == "sparse":
        return fmt.decode_sparse(w0, parts, t)
    if layout == "sign":
        info = classify(tensor_name, tuple(base.info(tensor_name).shape), base.model_type, base.config)
        parts = {k: v.to(device) for k, v in parts.items()}
        return from_linear(fmt.decode_sign(as_linear(w0.to(device), info), parts), info).to(stored).cpu()
    values = parts["values"]
    if values.shape != w0.shape or values.dtype != stored:
        raise ValueError(f"dense values are {list(values.shape)} {values.dtype}")
    return values


def _keys_of(payload, name: str) -> list[str]:
    keys = [k for k in payload.keys() if k.rsplit(".", 1)[0] == name]
    if not keys:
        raise KeyError(f"no tensors for {name}")
    return keys


def apply_artifact(artifact, base, out, *, device: str = "cpu", progress: bool = True, overwrite: bool = False) -> Path:
    """Apply an artifact folder to ``base``; write a full HF safetensors checkpoint to ``out``.

    ``artifact``: a folder ``write_artifact`` wrote (what ``rankedit compress`` writes for its winner,
    or ``rankedit edit METHOD ... --artifact``). The base must be the one it was made from (shapes,
    dtypes and sha256 are checked first). The output is validated finite and complete, as `rankedit
    edit` checks its own, before it is renamed into place. ``overwrite``: replace an ``out`` holding
    files rankedit did not write (they are lost); an earlier rankedit output is replaced anyway."""
    artifact = Path(artifact)
    rec = read_record(artifact)
    base_ck = Checkpoint(base)
    inputs = [artifact, base_ck.path]
    check_out(out, OUT_KIND, inputs, overwrite)  # before the work, not after it
    check_base(rec, base_ck, artifact)
    payload = open_payload(rec, artifact)
    check_inputs([base_ck])
    out = Path(out)
    bar = tqdm(total=len(rec["tensors"]), desc="apply", disable=not progress)

    slices: dict[str, list[str]] = {}  # a fused expert stack's matrices, by tensor
    for key in rec["tensors"]:
        if split_key(key)[1] is not None:
            slices.setdefault(split_key(key)[0], []).append(key)

    def tensor(name: str) -> torch.Tensor:
        t = rec["tensors"].get(name)
        if t is None and name not in slices:
            return base_ck.get(name)
        try:
            if t is not None:
                w = rebuild(name, t, base_ck, payload, device)
            else:
                w = base_ck.get(name).clone()
                for key in slices[name]:
                    e = split_key(key)[1]
                    w[e] = rebuild(key, rec["tensors"][key], base_ck, payload, device, w0=w[e].clone())
        except (KeyError, ValueError, RuntimeError, IndexError) as e:
            raise RankeditError(f"{artifact}: damaged, cannot rebuild {name} ({first_line(e)})") from None
        bar.update(1 if t is not None else len(slices[name]))
        return w

    sizes = [(n, base_ck.info(n).numel * getattr(torch, base_ck.info(n).dtype).itemsize) for n in base_ck.names]
    with atomic_dir(out, kind=OUT_KIND, inputs=inputs, overwrite=overwrite) as tmp:
        write_shards(tmp, sizes, tensor, shard_bytes(checkpoint_bytes(base_ck.path)))
        bar.close()
        for f in (HF_CONFIG, *EXTRA_FILES):
            if (base_ck.path / f).is_file():
                shutil.copyfile(base_ck.path / f, tmp / f)
        check_output(tmp, out, like=base_ck)  # never rename a non-finite or incomplete model into place
        write_manifest(tmp, applied_manifest(rec, artifact, base_ck))
    return out


def applied_manifest(rec: dict, artifact: Path, base: Checkpoint) -> dict:
    """The rankedit_edit.json of a rebuilt checkpoint: the artifact's edit and parameters, the base and the
    artifact as its inputs (what `rankedit push` publishes and its card names). No per-matrix facts: the
    artifact does not carry them (the build's own manifest does)."""
    return {"rankedit_version": __version__, "method": rec["method"], "params": rec.get("params") or {},
            "inputs": {"base": {"path": str(base.path.resolve()), "sha256": (rec.get("base") or {}).get("sha256")},
                       "tuned": [], "other": None,
                       "artifact": {"path": str(artifact.resolve()), "kind": rec["kind"], "payload": rec.get("payload")}},
            "matrices": [], "summary": {"n_matrices": len(rec["tensors"])}}
