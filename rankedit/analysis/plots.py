"""PNG figures: analysis heatmaps and distributions (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rankedit.analysis.metrics import HEATMAPS, UNIT_METRICS  # noqa: E402

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


def heatmap(rows: list[dict], metric: str, path: Path, title: str | None = None, cmap: str = "viridis") -> Path:
    grid, layers, modules = layer_module_grid(rows, metric)
    fig, ax = plt.subplots(figsize=(1.0 * len(modules) + 3.0, max(3.0, 0.28 * len(layers) + 1.8)))
    draw_grid(fig, ax, grid, layers, modules, title or metric, cmap, metric)
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
    ax.set_xlabel("module")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    if label is not None:
        fig.colorbar(im, ax=ax).set_label(label)
    if grid.size <= 120:  # annotate small grids with their values
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                r, g, b, _ = im.cmap(im.norm(v))
                ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color=ink)
    return im


def distribution(rows: list[dict], metric: str, path: Path, title: str) -> Path:
    kinds = sorted({r["kind"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    bins = np.linspace(0, 1, 26) if metric in UNIT_METRICS else 25
    for kind in kinds:
        vals = [r[metric] for r in rows if r["kind"] == kind and r.get(metric) is not None
                and not (isinstance(r[metric], float) and math.isnan(r[metric]))]
        if vals:
            ax.hist(vals, bins=bins, alpha=0.6, label=f"{kind} (n={len(vals)})")
    ax.set_xlabel(metric)
    ax.set_ylabel("number of matrices")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax).set_label(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analysis_plots(rows: list[dict], out: Path, moe: dict | None = None) -> list[Path]:
    """The standard analysis figures: four layer x module heatmaps (experts apart: each would hide the
    others in one cell), the rank-1 energy histogram, and for an MoE the layer x expert heatmaps."""
    out = Path(out)
    dense = [r for r in rows if r.get("expert") is None]
    paths = [heatmap(dense, m, out / f"heatmap_{m}.png", title, cmap) for m, (title, cmap) in HEATMAPS.items()]
    if moe:
        paths.append(expert_heatmap(moe, "share", out / "heatmap_expert_share.png",
                                    "Update share s_e of each expert in its layer"))
        paths.append(expert_heatmap(moe, "rank1_energy", out / "heatmap_expert_rank1_energy.png",
                                    "Rank-1 energy of each expert's update"))
    paths.append(distribution(rows, "rank1_energy", out / "rank1_energy_hist.png",
                              "Distribution of rank-1 energy over matrices"))
    return paths
