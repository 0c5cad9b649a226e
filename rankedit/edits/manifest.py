"""``rankedit_edit.json``: the recipe, the inputs' hashes and what each matrix kept.

Pure assembly of a dict from facts gathered elsewhere; the caller writes it.
No timestamps, so the same inputs and recipe give a byte-identical file.
"""

from __future__ import annotations
from rankedit.core.names import EDIT_MANIFEST

import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Optional

MANIFEST = EDIT_MANIFEST


def package_version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"


def summarize(matrices: list[dict], numels: dict[str, int]) -> dict:
    """Overall energy kept (‖dW_edit‖_F / ‖dW‖_F over all edited matrices) and density."""
    dw2 = sum(m["dw_norm"] ** 2 for m in matrices)
    ed2 = sum(m["edit_norm"] ** 2 for m in matrices)
    dens = [m for m in matrices if m.get("density") is not None]
    density = None
    if dens:
        total = sum(numels[m["name"]] for m in dens)
        density = sum(m["density"] * numels[m["name"]] for m in dens) / total if total else None
    out = {
        "energy_kept": math.sqrt(ed2 / dw2) if dw2 > 0 else None,
        "density": density,
        "n_matrices": len(matrices),
    }
    errs = [m["svd_error"] for m in matrices if m.get("svd_error") is not None]
    if errs:  # edits built on top-k SVDs: the worst bound, and how many subspaces were ill-determined
        out["svd_error_max"] = max(errs)
        out["svd_not_identifiable"] = sum(1 for m in matrices if m.get("svd_identifiable") is False)
    return out


def matrix_record(m: dict) -> dict:
    """What the manifest keeps of one matrix's facts (SVD accuracy only for edits that use an SVD)."""
    rec = {k: m[k] for k in ("name", "energy_kept", "density", "rank_kept")}
    if m.get("svd_error") is not None:
        rec["svd_error"] = m["svd_error"]
        rec["svd_identifiable"] = m["svd_identifiable"]
    return rec


def build_manifest(method: str, mergekit_method: Optional[str], params: dict, inputs: dict,
                   matrices: list[dict], numels: dict[str, int]) -> dict[str, Any]:
    from rankedit import __version__

    return {
        "rankedit_version": __version__,
        "mergekit_version": package_version("mergekit"),
        "method": method,
        "mergekit_method": mergekit_method,
        "params": params,
        "inputs": inputs,
        "matrices": [matrix_record(m) for m in matrices],
        "summary": summarize(matrices, numels),
    }


def mergekit_yaml_manifest(merge_method: str, mergekit_config: dict, matrices: list[dict]) -> dict[str, Any]:
    """The manifest of a plain mergekit YAML run with rankedit's methods: the YAML stands for the recipe
    and the inputs, and no density is summed (the numels of a YAML's models are not read)."""
    from rankedit import __version__

    return {
        "rankedit_version": __version__, "mergekit_version": package_version("mergekit"),
        "method": merge_method, "mergekit_config": mergekit_config,
        "matrices": [matrix_record(m) for m in matrices],
        "summary": {k: v for k, v in summarize(matrices, {m["name"]: 1 for m in matrices}).items() if k != "density"},
    }


def strict_json(doc: Any) -> str:
    """JSON as the standard defines it: a NaN or Inf is refused, never written as ``NaN``."""
    from rankedit.core.errors import RankeditError

    try:
        return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as e:
        raise RankeditError(f"internal: a non-finite number in {MANIFEST} ({e})") from None


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    path = Path(out_dir) / MANIFEST
    path.write_text(strict_json(manifest))
    return path


def read_manifest(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / MANIFEST).read_text())
