"""DIR as `rankedit edit` wrote it, read for `rankedit push`: its manifest, the files it holds, its weights.

Reads, never writes: a folder that is not a whole, finite rankedit edit is one
RankeditError before anything is built or sent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.files.inventory import INVENTORY
from rankedit.core.names import ADAPTER_CONFIG, ADAPTER_WEIGHTS, EDIT_ANALYSIS, EDIT_MANIFEST, EDIT_SCORES

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
    """DIR as `rankedit edit` writes it: (folder, manifest, is a LoRA adapter). Reads, never writes."""
    folder = Path(dir)
    if not folder.is_dir():
        raise RankeditError(f"not a directory: {folder}")
    if not (folder / MANIFEST).is_file():
        raise RankeditError(f"{folder} has no {MANIFEST}: push publishes checkpoints written by `rankedit edit`")
    manifest = read_json(folder / MANIFEST, MANIFEST)
    if not manifest.get("method") or not isinstance(manifest.get("inputs"), dict):
        raise RankeditError(f"{folder / MANIFEST} lacks 'method' or 'inputs': not a rankedit edit manifest")
    lora = (folder / ADAPTER_CONFIG).is_file()
    weights = ADAPTER_WEIGHTS if lora else "*.safetensors"
    if not list(folder.glob(weights)):
        raise RankeditError(f"{folder} holds no {weights}: nothing to publish")
    check_weights(folder, lora)
    return folder, manifest, lora


def check_weights(folder: Path, lora: bool) -> None:
    """Every safetensors file that would be uploaded is whole and finite, and a full
    checkpoint has every tensor its architecture needs: nothing broken is published."""
    from rankedit.files.checkpoint import Checkpoint
    from rankedit.files.validate import check_complete, check_files

    check_files(folder / rel for rel, _ in list_files(folder) if rel.endswith(".safetensors"))
    if not lora:
        check_complete(Checkpoint(folder))
