"""The edit as written: what rounding the edited matrix to its stored dtype leaves of the edit.

An edit E of a matrix is stored as ``round_dtype(W0 + E)``; what a user loads and scores is the
realized delta ``E' = round(W0 + E) - W0``. In bf16 an entry of E below half a bf16 step of W0's
entry is lost (docs/science.md, "The edit as written"). ``stored_matrix`` is the one small pure
function every writer calls (the mergekit adapter, the LoRA export): tensors in, the stored tensor
and two norms out; the manifest (``rankedit.edits.manifest``) turns the norms into
``stored_delta_error`` and ``energy_kept_stored``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from rankedit.core.kept import kept

if TYPE_CHECKING:  # tensor methods only: the manifest, which reads these figures, stays free of torch
    import torch

# a rounding that moves the edit by more than this share of ‖E‖ is worth a warning line
ROUNDING_WARN = 0.05
# an edit whose update is this many times ‖ΔW‖ (of the last checkpoint) is worth a warning line
ENERGY_WARN = 1.5
# --dtype: "source" keeps each tensor's own dtype; "float32" writes the edit (nearly) exactly
OUT_DTYPES = ("source", "float32")


def realized_norms(edit: torch.Tensor, realized: torch.Tensor) -> dict:
    """‖E' - E‖ and ‖E'‖ (E, E' in the same layout and compute dtype)."""
    return {"stored_error_norm": float((realized - edit).norm()), "stored_edit_norm": float(realized.norm())}


def stored_matrix(w0: torch.Tensor, delta: torch.Tensor, dtype: torch.dtype,
                  weight: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict]:
    """The edited matrix as written in ``dtype`` (``weight``, where the edit gives the matrix itself, else
    ``w0 + delta``) and the norms of its realized delta ``E' = stored - w0`` against ``delta``:
    ``{"stored_error_norm": ‖E' - E‖, "stored_edit_norm": ‖E'‖, "stored_dtype": name}``.

    The same values as ``realized_norms(delta, stored.to(w0.dtype) - w0)``, computed in place in one
    buffer this thread keeps: four fresh full-size allocations per matrix, each paged in anew, were 38 ms
    of a 1536 x 4224 matrix on the merge's own thread (issue #32's pair, 84 matrices: 3.2 s)."""
    import torch  # heavy: the manifest imports this module for its figures alone

    work = kept("edit as written", w0)
    if weight is not None:
        stored = weight.to(dtype)
    elif dtype == w0.dtype:
        stored = w0 + delta  # stored as computed: its own tensor, not the scratch the norms use
    else:
        stored = torch.add(w0, delta, out=work).to(dtype)
    work.copy_(stored)
    work.sub_(w0)  # E' (the rounding to dtype and back, exactly as stored.to(w0.dtype))
    edit_norm = float(work.norm())
    work.sub_(delta)  # E' - E
    return stored, {"stored_error_norm": float(work.norm()), "stored_edit_norm": edit_norm,
                    "stored_dtype": dtype_name(dtype)}




def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def stored_figures(m: Mapping) -> dict:
    """One matrix's figures of the edit as written, from its norms (``matrix_facts``' keys): relative
    error of the realized delta and the energy it keeps. An edit of norm 0 written exactly has error 0."""
    err, got = m.get("stored_error_norm"), m.get("stored_edit_norm")
    if err is None or got is None:
        return {}
    edit, dw = m["edit_norm"], m["dw_norm"]
    return {"stored_delta_error": err / edit if edit > 0 else (0.0 if err == 0 else None),
            "energy_kept_stored": got / dw if dw > 0 else None, "stored_dtype": m.get("stored_dtype")}


def overall_stored(matrices: Sequence[Mapping]) -> dict:
    """The whole edit's figures as written: sqrt of summed squares over matrices, as ``energy_kept``."""
    if not matrices or any(m.get("stored_error_norm") is None for m in matrices):
        return {}
    err2 = sum(m["stored_error_norm"] ** 2 for m in matrices)
    got2 = sum(m["stored_edit_norm"] ** 2 for m in matrices)
    ed2 = sum(m["edit_norm"] ** 2 for m in matrices)
    dw2 = sum(m["dw_norm"] ** 2 for m in matrices)
    dtypes = sorted({m.get("stored_dtype") for m in matrices if m.get("stored_dtype")})
    return {"stored_delta_error": (err2 / ed2) ** 0.5 if ed2 > 0 else (0.0 if err2 == 0 else None),
            "energy_kept_stored": (got2 / dw2) ** 0.5 if dw2 > 0 else None,
            "stored_dtype": dtypes[0] if len(dtypes) == 1 else ",".join(dtypes) or None,
            "stored_delta_error_max": max((f.get("stored_delta_error") or 0.0) for f in map(stored_figures, matrices)),
            "n_rounding_over": sum(1 for f in map(stored_figures, matrices)
                                   if (f.get("stored_delta_error") or 0.0) > ROUNDING_WARN)}


def rounding_warning(method: str, summary: Mapping) -> Optional[str]:
    """One line when rounding to the stored dtype moved the edit by more than ``ROUNDING_WARN`` of ‖E‖."""
    err = summary.get("stored_delta_error")
    worst = summary.get("stored_delta_error_max") or 0.0
    if err is None or max(err, worst) <= ROUNDING_WARN:
        return None
    return (f"{method}: rounding to {summary.get('stored_dtype')} moved the edit by {err:.1%} of its norm overall "
            f"({summary.get('n_rounding_over')} matrices by more than {ROUNDING_WARN:.0%}, up to {worst:.1%}); what is "
            f"scored is the edit as written (energy kept on disk {_g(summary.get('energy_kept_stored'))} against "
            f"{_g(summary.get('energy_kept'))} before rounding); --dtype float32 writes it exactly")


def energy_warning(method: str, summary: Mapping, what: str = "") -> Optional[str]:
    """One line when the edit's update is more than ``ENERGY_WARN`` × ‖ΔW‖."""
    e = summary.get("energy_kept")
    if e is None or e <= ENERGY_WARN:
        return None
    return f"{method}: energy kept {e:.3g} > {ENERGY_WARN:g}: the edit moves the weights {e:.3g}× as far as ΔW{what}"


def _g(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def warn_written(method: str, summary: Mapping, energy_note: Optional[str] = None) -> None:
    """The build's warning lines about the edit as written (and, given ``energy_note``, its energy)."""
    log = logging.getLogger("rankedit")
    msgs = [rounding_warning(method, summary)]
    if energy_note is not None:
        msgs.append(energy_warning(method, summary, energy_note))
    for msg in msgs:
        if msg:
            log.warning(msg)
