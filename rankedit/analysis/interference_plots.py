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
    "cosine": ("cosine of the updates", "RdBu_r", -1.0, 1.0),
    "subspace_overlap_left": ("mean cos² of the angles", "viridis", 0.0, 1.0),
    "subspace_overlap_right": ("mean cos² of the angles", "viridis", 0.0, 1.0),
    "jaccard": ("Jaccard index", "viridis", 0.0, 1.0),
    "sign_conflict": ("share with opposite signs", "magma", 0.0, 1.0),
    "rank1_overlap": ("rank-1 overlap", "viridis", 0.0, 1.0),
}
# figure -> the figure's title: what is measured, in words
TITLES = {
    "cosine": "Cosine of the two updates ΔW_A, ΔW_B (−1 opposed, 0 unrelated, 1 the same direction)",
    "subspace_overlap_left": "Overlap of the updates' top-k left singular subspaces: mean cos² of their principal angles",
    "subspace_overlap_right": "Overlap of the updates' top-k right singular subspaces: mean cos² of their principal "
                              "angles",
    "jaccard": "Jaccard index of the bf16 update masks: entries both runs changed / entries either changed",
    "sign_conflict": "Sign conflict: share of the entries both runs changed whose updates have opposite signs",
    "rank1_overlap": "Overlap of the updates' rank-1 directions: |u₁ᴬ·u₁ᴮ| × |v₁ᴬ·v₁ᴮ|",
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
        fig, axes = plt.subplots(1, len(pairs), squeeze=False,
                                 figsize=(len(pairs) * (0.9 * len(modules) + 2.0) + 1.5,
                                          max(3.4, 0.28 * len(layers) + 2.4)))
        for ax, p, (grid, _, _) in zip(axes[0], pairs, grids):
            o = block["pairs"][p]["overall"]
            null = _fmt(o[fig_name + "_null"])
            if fig_name == "cosine" and _fmt(o["cosine_null_std"]) != "undefined":
                null = f"0 ± {_fmt(o['cosine_null_std'])}"
            title = f"{p.replace('|', ' vs ')}\noverall {_fmt(o[fig_name])} (null {null})"
            im = draw_grid(fig, ax, grid, layers, modules, title, cmap, None, vmin=lo, vmax=hi)
        fig.suptitle(f"{TITLES[fig_name]}, per layer and module", fontsize=11)
        fig.tight_layout(rect=(0.0, 0.0, 0.9, 1.0))  # the right tenth holds the shared colour bar
        fig.colorbar(im, cax=fig.add_axes((0.92, 0.18, 0.012, 0.64))).set_label(label)
        path = out / f"interference_{fig_name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
