"""PNG figures: analysis heatmaps and distributions (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rankedit.analysis.geometry import gaussian_rank1_energy  # noqa: E402
from rankedit.analysis.metrics import HEATMAPS, UNIT_METRICS  # noqa: E402
from rankedit.core.figure_list import FIG_EXPERT_RANK1, FIG_EXPERT_SHARE, FIG_RANK1_HIST, heatmap_name  # noqa: E402

# Reading order of modules inside a block: attention first, then MLP.
_MODULE_ORDER = ["q_proj", "k_proj", "v_proj", "qkv_proj", "c_attn", "o_proj", "attn.c_proj", "dense",
                 "gate_proj", "up_proj", "gate_up_proj", "c_fc", "fc1", "down_proj", "mlp.c_proj", "fc2"]


def _module_order(modules: list[str]) -> list[str]:
    known = [m for m in _MODULE_ORDER if m in modules]
    return known + sorted(m for m in set(modules) if m not in known)


def layer_module_grid(rows: list[dict], metric: str) -> tuple[np.ndarray, list[int], list[str]]:
    layers = sorted({r["layer"] for r in rows if r["layer"] is not None})
    modules = _module_order(list({r["module"] for r in rows}))
    grid = np.full((len(layers), len(modules)), np.nan)
    for r in rows:
        v = r.get(metric)
        if r["layer"] is None or v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        grid[layers.index(r["layer"]), modules.index(r["module"])] = v
    return grid, layers, modules


def k_words(rows: list[dict]) -> str:
    """The subspace size the rows used: "top-8", or "top-k (k = 4 to 16 by matrix shape)"."""
    ks = sorted({int(r["k"]) for r in rows if r.get("k") is not None})
    if not ks:
        return "top-k"
    return f"top-{ks[0]}" if len(ks) == 1 else f"top-k (k = {ks[0]} to {ks[-1]} by matrix shape)"


def heatmap(rows: list[dict], metric: str, path: Path, title: str | None = None, cmap: str = "viridis",
            label: str | None = None) -> Path:
    """A layer x module heatmap of one metric; ``label`` the colour bar's words (with the unit)."""
    grid, layers, modules = layer_module_grid(rows, metric)
    title = (title or metric).replace("top-k", k_words(rows))
    fig, ax = plt.subplots(figsize=(1.0 * len(modules) + 3.0, max(3.0, 0.28 * len(layers) + 1.8)))
    draw_grid(fig, ax, grid, layers, modules, title, cmap, label or metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_grid(fig, ax, grid: np.ndarray, layers: list[int], modules: list[str], title: str, cmap: str,
              label: str | None, vmin: float | None = None, vmax: float | None = None):
    """One layer x module grid on ``ax``, small grids annotated with their values; its colour bar labelled
    ``label`` (None: no bar of its own, the caller draws one for several grids)."""
    im = ax.imshow(grid, aspect="auto", cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(modules)), modules, rotation=35, ha="right")
    step = max(1, len(layers) // 24)
    ax.set_yticks(range(0, len(layers), step), [str(layers[i]) for i in range(0, len(layers), step)])
    ax.set_xlabel("module (weight matrix of the block)")
    ax.set_ylabel("layer (0 = first block)")
    ax.set_title(title, fontsize=10)
    if label is not None:
        fig.colorbar(im, ax=ax).set_label(label, fontsize=8)
    if grid.size <= 120:  # annotate small grids with their values
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                r, g, b, _ = im.cmap(im.norm(v))
                ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color=ink)
    return im


_HIST_WORDS = {"rank1_energy": "rank-1 energy s₁² / Σ sᵢ² of the update (share of its squared norm, 0 to 1)"}


def distribution(rows: list[dict], metric: str, path: Path, title: str) -> Path:
    """Step histograms of ``metric`` per matrix kind (outlines: none hides another); for rank-1 energy also
    the value a Gaussian update of each kind's shapes has (``gaussian_rank1_energy``), as a dashed line
    (one shape) or a band over the kind's shapes."""
    kinds = sorted({r["kind"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    bins = np.linspace(0, 1, 26) if metric in UNIT_METRICS else 25
    for i, kind in enumerate(kinds):
        mine = [r for r in rows if r["kind"] == kind]
        vals = [r[metric] for r in mine if r.get(metric) is not None
                and not (isinstance(r[metric], float) and math.isnan(r[metric]))]
        colour = f"C{i % 10}"
        if vals:
            ax.hist(vals, bins=bins, histtype="step", lw=1.8, color=colour, label=f"{kind} (n={len(vals)})")
        if metric == "rank1_energy" and mine:
            ref = sorted({gaussian_rank1_energy(shape) for shape in {tuple(r["shape"][-2:]) for r in mine}})
            what = f"{kind}: a Gaussian update of its shapes"
            if len(ref) == 1 or ref[-1] - ref[0] < 2e-3:
                ax.axvline(ref[0], color=colour, ls="--", lw=1.2, label=f"{what} ({ref[0]:.3f})")
            else:
                ax.axvspan(ref[0], ref[-1], color=colour, alpha=0.18, label=f"{what} ({ref[0]:.3f} to {ref[-1]:.3f})")
    ax.set_xlabel(_HIST_WORDS.get(metric, metric), fontsize=9)
    ax.set_ylabel("number of matrices")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_EXPERT_WORDS = {"share": "the expert's share of its layer's ‖ΔW‖² (0 to 1)",
                 "rank1_energy": "rank-1 energy (share of ‖ΔW‖²_F, 0 to 1)"}


def expert_heatmap(moe: dict, metric: str, path: Path, title: str) -> Path:
    """Layer x expert grid of one per-expert figure of analyze's MoE summary (``rankedit.analysis.moe``)."""
    layers = list(moe["layers"])
    experts = sorted({int(e) for v in moe["layers"].values() for e in v["experts"]})
    grid = np.full((len(layers), len(experts)), np.nan)
    for i, layer in enumerate(layers):
        for e, rec in moe["layers"][layer]["experts"].items():
            if rec.get(metric) is not None:
                grid[i, experts.index(int(e))] = rec[metric]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.12 * len(experts) + 3.0), max(3.0, 0.28 * len(layers) + 1.8)))
    im = ax.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest")
    step = max(1, len(experts) // 32)
    ax.set_xticks(range(0, len(experts), step), [str(experts[j]) for j in range(0, len(experts), step)])
    step = max(1, len(layers) // 24)
    ax.set_yticks(range(0, len(layers), step), [layers[i] for i in range(0, len(layers), step)])
    ax.set_xlabel("expert (index in its layer)")
    ax.set_ylabel("layer (0 = first block)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax).set_label(_EXPERT_WORDS.get(metric, metric), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analysis_plots(rows: list[dict], out: Path, moe: dict | None = None) -> list[Path]:
    """The standard analysis figures: four layer x module heatmaps (experts apart: each would hide the
    others in one cell), the rank-1 energy histogram, and for an MoE the layer x expert heatmaps
    (their names: ``rankedit.core.figure_list``)."""
    out = Path(out)
    dense = [r for r in rows if r.get("expert") is None]
    paths = [heatmap(dense, m, out / heatmap_name(m), title, cmap, label)
             for m, (title, cmap, label) in HEATMAPS.items()]
    if moe:
        paths.append(expert_heatmap(moe, "share", out / FIG_EXPERT_SHARE,
                                    "Update share s_e of each expert in its layer"))
        paths.append(expert_heatmap(moe, "rank1_energy", out / FIG_EXPERT_RANK1,
                                    "Rank-1 energy of each expert's update"))
    paths.append(distribution(rows, "rank1_energy", out / FIG_RANK1_HIST,
                              "Rank-1 energy over matrices, beside a random update's"))
    return paths
