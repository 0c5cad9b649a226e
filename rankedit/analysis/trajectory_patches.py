"""Step-to-step sparsity in a trajectory: what each checkpoint costs as an exact patch.

For every measured matrix and step, against the base and against the previous checkpoint
(the base for the first step): the entries whose bits changed and the bytes of the exact patch
in each encoding, the smallest chosen (``rankedit.files.patch_format``, docs/science.md "Exact
patches"); summed per kind and over the matrices, with the ratio to those matrices' full bytes.
Measured on the checkpoint's stored tensors, in their stored dtype and layout.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rankedit.core.figure_list import FIG_PATCHES  # noqa: F401 (the trajectory writes it under this name)
from rankedit.files.patch_format import ENCODINGS, measure

FROM = ("from_base", "from_previous")
_SUMMED = ("entries", "changed", *ENCODINGS, "bytes")


def matrix_patches(w0: torch.Tensor, ws: list[torch.Tensor]) -> list[dict]:
    """Per step: ``{"full_bytes", "patch_from_base": measure(w0, w_t), "patch_from_previous": measure(w_{t-1}, w_t)}``."""
    out, prev = [], w0
    for w in ws:
        out.append({"full_bytes": w.numel() * w.element_size(), "patch_from_base": measure(w0, w),
                    "patch_from_previous": measure(prev, w)})
        prev = w
    return out


def _total(rows: list[dict], key: str) -> dict:
    tot = {k: sum(r[key][k] for r in rows) for k in _SUMMED}
    dense = sum(r["full_bytes"] for r in rows)  # the matrices themselves (an unchanged one's `full` is 0)
    return {**tot, "full_bytes": dense, "ratio": tot["bytes"] / dense if dense else 0.0,
            "unchanged_share": 1 - tot["changed"] / tot["entries"] if tot["entries"] else 1.0}


def summarize_patches(rows: list[dict], steps: list[int]) -> dict:
    """``{"from_base"|"from_previous": [{"step", overall sums..., "kinds": {kind: sums}}]}`` over the rows."""
    out = {}
    for f in FROM:
        key = f"patch_{f}"
        per_step = []
        for s in steps:
            at = [r for r in rows if r["step"] == s]
            kinds = sorted({r["kind"] for r in at})
            per_step.append({"step": s, **_total(at, key),
                             "kinds": {k: _total([r for r in at if r["kind"] == k], key) for k in kinds}})
        out[f] = per_step
    return out


def patch_figure(summary: dict, path: Path) -> Path:
    """Bytes of the exact patch over training steps: against the base, and step to step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    labels = {"from_base": "patch against the base", "from_previous": "patch against the previous checkpoint"}
    for f in FROM:
        pts = summary[f]
        ax.plot([p["step"] for p in pts], [p["bytes"] / 1e6 for p in pts], marker="o", label=labels[f])
    full = summary["from_base"][0]["full_bytes"] / 1e6 if summary["from_base"] else 0
    ax.axhline(full, color="grey", linestyle="--", label="the matrices in full")
    ax.set_xlabel("training step")
    ax.set_ylabel("bytes of the exact patch (MB, measured matrices)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Exact (lossless) patch size over training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
