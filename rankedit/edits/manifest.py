"""``rankedit_edit.json``: the recipe, the inputs' hashes and what each matrix kept.

Pure assembly of a dict from facts gathered elsewhere; the caller writes it.
No timestamps, so the same inputs and recipe give a byte-identical file.
"""

from __future__ import annotations
from rankedit.core.names import EDIT_MANIFEST
from rankedit.edits.realized import overall_stored, stored_figures
from rankedit.edits.storage import Storage, bf16_delta_bytes

import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Optional
from rankedit import __version__
from rankedit.core.errors import RankeditError
from rankedit.edits.registry import describe

MANIFEST = EDIT_MANIFEST


def package_version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"


STORAGE_KEYS = ("stored_params", "stored_bytes", "bf16_delta_bytes")


def matrix_facts(name: str, dw, res, storage: Storage, written: Optional[dict] = None) -> dict:
    """One matrix's facts from its update ``dw`` and the edit's ``EditResult`` (tensors in, numbers out):
    what ``matrix_record`` keeps plus the norms ``summarize`` sums. ``written``: the norms of the edit as
    written to disk (``rankedit.edits.realized.stored_matrix``), where the writer knows them."""
    dw_norm = float(dw.norm())
    edit_norm = float(res.delta.norm())
    # ‖dW_k‖: the kept part before the rescale c (None where c = 0 leaves no way back to it)
    kept_norm = edit_norm / abs(res.rescale) if res.rescale != 0 else None
    ratio = lambda x: x / dw_norm if dw_norm > 0 and x is not None else None  # noqa: E731
    return {
        "name": name, "energy_kept": ratio(edit_norm), "density": res.density, "rank_kept": res.rank_kept,
        "svd_error": res.svd_error, "svd_identifiable": res.svd_identifiable, "sign_ambiguous": res.sign_ambiguous,
        "svd_mode": res.svd_mode, "svd_residual_bound": res.svd_residual_bound,
        "energy_before_rescale": ratio(kept_norm), "rescale": res.rescale,
        "stored_params": storage.params, "stored_bytes": storage.bytes,
        "bf16_delta_bytes": bf16_delta_bytes(tuple(dw.shape)),
        "dw_norm": dw_norm, "edit_norm": edit_norm, "kept_norm": kept_norm,
        **(written or {}),
    }


def _overall_energy(matrices: list[dict]) -> dict:
    """The whole edit's energies: sqrt of summed squares, and the rescale they imply."""
    dw2 = sum(m["dw_norm"] ** 2 for m in matrices)
    ed2 = sum(m["edit_norm"] ** 2 for m in matrices)
    kept = [m.get("kept_norm") for m in matrices]
    k2 = sum(k ** 2 for k in kept) if matrices and None not in kept else None
    return {
        "energy_kept": math.sqrt(ed2 / dw2) if dw2 > 0 else None,
        "energy_before_rescale": math.sqrt(k2 / dw2) if dw2 > 0 and k2 is not None else None,
        "rescale": math.sqrt(ed2 / k2) if k2 else None,
    }


def _overall_storage(matrices: list[dict]) -> dict:
    if not matrices or any(m.get("stored_bytes") is None for m in matrices):
        return {}
    out = {k: sum(m[k] for m in matrices) for k in STORAGE_KEYS}
    out["bytes_ratio"] = out["stored_bytes"] / out["bf16_delta_bytes"] if out["bf16_delta_bytes"] else None
    return out


def summarize(matrices: list[dict], numels: dict[str, int]) -> dict:
    """Overall energy kept (‖dW_edit‖_F / ‖dW‖_F over all edited matrices), before the rescale too,
    density and storage."""
    dens = [m for m in matrices if m.get("density") is not None]
    density = None
    if dens:
        total = sum(numels[m["name"]] for m in dens)
        density = sum(m["density"] * numels[m["name"]] for m in dens) / total if total else None
    energy = _overall_energy(matrices)
    out = {
        "energy_kept": energy["energy_kept"],
        "density": density,
        "n_matrices": len(matrices),
        "energy_before_rescale": energy["energy_before_rescale"],
        "rescale": energy["rescale"],
        **_overall_storage(matrices),
        **overall_stored(matrices),  # the same figures for the edit as written to disk (rounded to its dtype)
    }
    errs = [m["svd_error"] for m in matrices if m.get("svd_error") is not None]
    if errs:  # edits built on top-k SVDs: the worst bound, and how many subspaces were ill-determined
        out["svd_error_max"] = max(errs)
        out["svd_not_identifiable"] = sum(1 for m in matrices if m.get("svd_identifiable") is False)
        out.update(svd_mode_summary(matrices))
    return out


def svd_mode_summary(matrices: list[dict]) -> dict:
    """How many matrices got the certified near-optimal top-k, the worst certified ε (``svd_residual_bound``:
    ‖dW - dW_k‖_F <= (1 + ε) · the optimal rank-k residual) and the worst ``svd_error`` of the others (the
    exact mode's bound); None where no matrix is of that kind."""
    near = [m["svd_residual_bound"] for m in matrices if m.get("svd_mode") == "near-optimal"]
    exact = [m["svd_error"] for m in matrices if m.get("svd_mode") != "near-optimal" and m.get("svd_error") is not None]
    return {"svd_near_optimal": len(near), "svd_residual_bound_max": max(near) if near else None,
            "svd_error_max_exact": max(exact) if exact else None}


def summary_lines(s: dict) -> list[str]:
    """What an edit kept, for the user: the energy kept (‖dW_edit‖/‖dW‖), and where the edit rescales the
    kept part, the energy before the rescale and the rescale itself (rank-1 of a noise-like update keeps
    0.05 of it, rescaled by 20 to 1.0); for edits on top-k SVDs, the mode of the SVD in one line."""
    def f(x):
        return "n/a" if x is None else f"{x:.4f}"

    kept = f"energy kept {f(s.get('energy_kept'))}"
    before, c = s.get("energy_before_rescale"), s.get("rescale")
    if before is not None and c is not None and abs(c - 1.0) > 1e-12:
        kept += f" (before the rescale {f(before)}, rescale ×{c:.4g})"
    dens = "" if s.get("density") is None else f", density {s['density']:.4f}"
    lines = [f"{s['n_matrices']} matrices edited, {kept}{dens}"]
    if s.get("svd_error_max") is not None:
        near, n = s.get("svd_near_optimal") or 0, s["n_matrices"]
        exact = s.get("svd_error_max_exact", s["svd_error_max"])
        within = f" (top-k within {exact:.1e} of the exact one)" if exact is not None else ""
        if near:
            lines.append(f"SVD: {n - near} of {n} matrices exact{within}, {near} near-optimal (the data's precision "
                         f"does not fix their top-k directions; residual within 1 + {s['svd_residual_bound_max']:.1e} "
                         f"of the best rank-k, certified; --exact-svd for the exact ones)")
        else:
            lines.append(f"SVD: exact for all {n} matrices{within}")
    return lines


def matrix_record(m: dict) -> dict:
    """What the manifest keeps of one matrix's facts (SVD accuracy only for edits that use an SVD)."""
    rec = {k: m[k] for k in ("name", "energy_kept", "density", "rank_kept")}
    if m.get("svd_error") is not None:
        rec["svd_error"] = m["svd_error"]
        rec["svd_identifiable"] = m["svd_identifiable"]
        if m.get("svd_mode") is not None:
            rec["svd_mode"] = m["svd_mode"]
            rec["svd_residual_bound"] = m.get("svd_residual_bound")
    rec.update({k: m.get(k) for k in ("energy_before_rescale", "rescale", *STORAGE_KEYS)})
    rec.update(stored_figures(m))  # E' = round(W0 + E) - W0: its error against E and its energy (when written)
    return rec


def build_manifest(method: str, mergekit_method: Optional[str], params: dict, inputs: dict,
                   matrices: list[dict], numels: dict[str, int]) -> dict[str, Any]:
    return {
        "rankedit_version": __version__,
        "mergekit_version": package_version("mergekit"),
        "method": method,
        "mergekit_method": mergekit_method,
        "params": params,
        "description": describe(method, params),  # what the edit does, in words (alpharl: what it adds to what)
        "inputs": inputs,
        "matrices": [matrix_record(m) for m in matrices],
        "summary": summarize(matrices, numels),
    }


def mergekit_yaml_manifest(merge_method: str, mergekit_config: dict, matrices: list[dict]) -> dict[str, Any]:
    """The manifest of a plain mergekit YAML run with rankedit's methods: the YAML stands for the recipe
    and the inputs, and no density is summed (the numels of a YAML's models are not read)."""
    return {
        "rankedit_version": __version__, "mergekit_version": package_version("mergekit"),
        "method": merge_method, "mergekit_config": mergekit_config,
        "matrices": [matrix_record(m) for m in matrices],
        "summary": {k: v for k, v in summarize(matrices, {m["name"]: 1 for m in matrices}).items() if k != "density"},
    }


def strict_json(doc: Any) -> str:
    """JSON as the standard defines it: a NaN or Inf is refused, never written as ``NaN``."""
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
