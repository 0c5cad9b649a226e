"""DIR as `rankedit edit` or `rankedit apply` wrote it, or an artifact, read for `rankedit push`: its
manifest, the files it holds, its weights.

Reads, never writes: a folder that is not a whole, finite rankedit edit is one
RankeditError before anything is built or sent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.files.inventory import INVENTORY
from rankedit.core.names import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ARTIFACT_RECORD, EDIT_ANALYSIS, EDIT_MANIFEST,
                                 EDIT_SCORES)
from rankedit.edits.apply import KINDS, read_record
from rankedit.files.checkpoint import Checkpoint, file_sha256
from rankedit.files.validate import check_complete, check_files

MANIFEST = EDIT_MANIFEST
SCORES = EDIT_SCORES      # written into DIR by the pipeline, picked up automatically
ANALYSIS = EDIT_ANALYSIS  # likewise


def read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RankeditError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RankeditError(f"{what} is not valid JSON: {path} ({e})") from None
    if not isinstance(doc, dict):
        raise RankeditError(f"{what} must hold a JSON object: {path}")
    return doc


def list_files(folder: Path) -> list[tuple[str, int]]:
    """The files `upload_folder` will send (same ignore rules), with their sizes."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    rel = {p.relative_to(folder).as_posix(): p for p in sorted(folder.glob("**/*")) if p.is_file()}
    kept = filter_repo_objects(list(rel), ignore_patterns=list(DEFAULT_IGNORE_PATTERNS) + [INVENTORY])
    return [(r, rel[r].stat().st_size) for r in kept]


def check_dir(dir: str | os.PathLike) -> tuple[Path, dict, bool]:
    """DIR as `rankedit edit` or `rankedit apply` writes it (with ``rankedit_edit.json``), or an artifact
    (``delta.json``, what `rankedit compress` keeps of its winner): (folder, manifest, is a LoRA adapter).
    An artifact's manifest is made from its record (``artifact_manifest``). Reads, never writes."""
    folder = Path(dir)
    if not folder.is_dir():
        raise RankeditError(f"not a directory: {folder}")
    if not (folder / MANIFEST).is_file():
        if (folder / ARTIFACT_RECORD).is_file():
            return check_artifact(folder)
        raise RankeditError(f"{folder} has no {MANIFEST} (nor an artifact's {ARTIFACT_RECORD}): push publishes "
                            "checkpoints written by `rankedit edit` or `rankedit apply`, and artifacts")
    manifest = read_json(folder / MANIFEST, MANIFEST)
    if not manifest.get("method") or not isinstance(manifest.get("inputs"), dict):
        raise RankeditError(f"{folder / MANIFEST} lacks 'method' or 'inputs': not a rankedit edit manifest")
    lora = (folder / ADAPTER_CONFIG).is_file()
    weights = ADAPTER_WEIGHTS if lora else "*.safetensors"
    if not list(folder.glob(weights)):
        raise RankeditError(f"{folder} holds no {weights}: nothing to publish")
    check_weights(folder, lora)
    return folder, manifest, lora


def check_artifact(folder: Path) -> tuple[Path, dict, bool]:
    """An artifact folder: its record read as `rankedit apply` reads it, its payload's sha256 the one recorded."""
    rec = read_record(folder)
    payload = folder / KINDS[rec["kind"]]
    if not payload.is_file() or file_sha256(payload) != (rec.get("payload") or {}).get("sha256"):
        raise RankeditError(f"{payload}: missing or damaged, its sha256 is not the one {ARTIFACT_RECORD} records")
    check_weights(folder, lora=True)  # whole and finite; no full checkpoint to complete
    return folder, artifact_manifest(rec), rec["kind"] == "peft-lora"


def artifact_manifest(rec: dict) -> dict:
    """What the card needs of an artifact's ``delta.json``: its edit, parameters, base (Hub id) and kind."""
    base = rec.get("base") or {}
    return {"method": rec["method"], "params": rec.get("params") or {}, "record_file": ARTIFACT_RECORD,
            "artifact_kind": rec["kind"], "inputs": {"base": {"path": "", "hub_id": base.get("hub_id")}, "tuned": []},
            "matrices": [], "summary": {"n_matrices": len(rec["tensors"]), "stored_bytes": rec.get("stored_bytes")}}


def check_weights(folder: Path, lora: bool) -> None:
    """Every safetensors file that would be uploaded is whole and finite, and a full
    checkpoint has every tensor its architecture needs: nothing broken is published."""
    check_files(folder / rel for rel, _ in list_files(folder) if rel.endswith(".safetensors"))
    if not lora:
        check_complete(Checkpoint(folder))
