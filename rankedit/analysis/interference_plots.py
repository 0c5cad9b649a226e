"""Layer x module heatmaps of the interference between tuned runs: one PNG per figure, one panel per pair."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rankedit.analysis.interference import FIGURES  # noqa: E402
from rankedit.analysis.plots import draw_grid, layer_module_grid  # noqa: E402

# figure -> (what the colour bar says, colormap, lowest, highest): one fixed scale, so panels compare
SCALES = {
    "cosine": ("cosine of the two updates ΔW_A, ΔW_B", "RdBu_r", -1.0, 1.0),
    "subspace_overlap_left": ("left subspace overlap: mean cos² of the principal angles", "viridis", 0.0, 1.0),
    "subspace_overlap_right": ("right subspace overlap: mean cos² of the principal angles", "viridis", 0.0, 1.0),
    "jaccard": ("Jaccard index: entries both runs changed / entries either changed", "viridis", 0.0, 1.0),
    "sign_conflict": ("sign conflict: share of the entries both changed, with opposite signs", "magma", 0.0, 1.0),
    "rank1_overlap": ("rank-1 overlap: |cos(u₁ of A, u₁ of B)| × |cos(v₁ of A, v₁ of B)|", "viridis", 0.0, 1.0),
}
TITLES = {
    "cosine": "Cosine of the updates",
    "subspace_overlap_left": "Overlap of the top-k left singular subspaces of the updates",
    "subspace_overlap_right": "Overlap of the top-k right singular subspaces of the updates",
    "jaccard": "Jaccard index of the bf16 update masks",
    "sign_conflict": "Sign conflicts among the entries both runs changed",
    "rank1_overlap": "Overlap of the updates' rank-1 directions",
}


def _fmt(v) -> str:
    return "undefined" if v is None or v != v else f"{v:.3g}"  # NaN: undefined (no shared entry, a zero update)


def interference_plots(rows: list[dict], block: dict, out: Path) -> list[Path]:
    """``interference_FIGURE.png`` for each figure: a panel per pair of runs, titled with its overall value and null.
    Experts are left out, as in the other layer x module heatmaps (each would hide the others in one cell)."""
    out = Path(out)
    dense = [r for r in rows if r.get("expert") is None]
    pairs = list(block["pairs"])
    paths = []
    for fig_name in FIGURES:
        label, cmap, lo, hi = SCALES[fig_name]
        grids = [layer_module_grid([{**r, fig_name: r["interference"][p][fig_name]} for r in dense], fig_name)
                 for p in pairs]
        layers, modules = grids[0][1], grids[0][2]
        fig, axes = plt.subplots(1, len(pairs), squeeze=False, layout="constrained",
                                 figsize=(len(pairs) * (0.9 * len(modules) + 2.0) + 1.5,
                                          max(3.4, 0.28 * len(layers) + 2.4)))
        for ax, p, (grid, _, _) in zip(axes[0], pairs, grids):
            o = block["pairs"][p]["overall"]
            null = _fmt(o[fig_name + "_null"])
            if fig_name == "cosine" and _fmt(o["cosine_null_std"]) != "undefined":
                null = f"0 ± {_fmt(o['cosine_null_std'])}"
            title = f"{p.replace('|', ' vs ')}\noverall {_fmt(o[fig_name])} (null {null})"
            im = draw_grid(fig, ax, grid, layers, modules, title, cmap, None, vmin=lo, vmax=hi)
        fig.colorbar(im, ax=list(axes[0]), shrink=0.9).set_label(label)
        fig.suptitle(f"{TITLES[fig_name]}, per layer and module", fontsize=11)
        path = out / f"interference_{fig_name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
