"""PNG figures of a trajectory (matplotlib, headless): a(t) with its line and null band; cosines to the final step."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rankedit.analysis.plots import layer_module_grid  # noqa: E402
from rankedit.analysis.trajectory_math import line_fit  # noqa: E402

FIG_A = "a_final.png"
FIG_COS_HEATMAP = "cos_dw_final.png"
FIG_COS_LINES = "cos_v_final.png"
MAX_PANELS = 9


def representative(per_matrix: list[dict], n: int = MAX_PANELS) -> list[dict]:
    """Up to n matrices spread evenly over the model's order (first, last and between)."""
    if len(per_matrix) <= n:
        return per_matrix
    idx = sorted({round(i * (len(per_matrix) - 1) / (n - 1)) for i in range(n)})
    return [per_matrix[i] for i in idx]


def a_final_figure(rows: list[dict], per_matrix: list[dict], steps: list[int], path: Path, seed: int = 0) -> Path:
    """a(t) of a few matrices, the least-squares line in t, and as null band the 5-95% envelope
    of the lines fitted to the same values with the steps shuffled (what chance alone draws)."""
    chosen = representative(per_matrix)
    cols = min(3, len(chosen))
    nrows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    t = np.asarray(steps, dtype=float)
    grid = np.linspace(t.min(), t.max(), 50)
    rng = np.random.default_rng(seed)
    for ax, m in zip(axes.flat, chosen):
        a = np.array([r["a_final"] for r in rows if r["name"] == m["name"]])
        b0, b1 = line_fit(t, a)
        lines = np.array([np.polyval(line_fit(t[rng.permutation(len(t))], a)[::-1], grid) for _ in range(200)])
        ax.fill_between(grid, np.quantile(lines, 0.05, axis=0), np.quantile(lines, 0.95, axis=0), color="0.85",
                        label="shuffled steps, 5-95%")
        ax.plot(t, a, "o", color="C0", label="a(t)")
        ax.plot(grid, b0 + b1 * grid, "-", color="C3", label="line in t")
        lin = m["a_final"]
        ax.set_title(f"{m['name']}\nR² {_fmt(lin['r2'])}  shuffled {_fmt(lin['r2_shuffled'])}  "
                     f"walk {_fmt(lin['r2_walk'])}", fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel("a(t)")
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cos_heatmaps(rows: list[dict], steps: list[int], path: Path, metric: str = "cos_dw_final") -> Path:
    """One layer x module heatmap of ``metric`` per step, on one colour scale (-1..1)."""
    fig, axes = plt.subplots(1, len(steps), figsize=(1.6 * len(steps) + 1.5, 3.5), squeeze=False, sharey=True)
    im = None
    for ax, s in zip(axes.flat, steps):
        grid, layers, modules = layer_module_grid([r for r in rows if r["step"] == s], metric)
        im = ax.imshow(grid, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(modules)), modules, rotation=90, fontsize=6)
        ax.set_yticks(range(len(layers)), [str(v) for v in layers], fontsize=6)
        ax.set_title(f"step {s}", fontsize=8)
    axes.flat[0].set_ylabel("layer")
    fig.colorbar(im, ax=list(axes.flat), shrink=0.8).set_label(metric)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the rotated module names below the panels
    plt.close(fig)
    return path


def cos_lines(rows: list[dict], steps: list[int], path: Path, metric: str = "cos_v_final") -> Path:
    """``metric`` over steps, one line per matrix (colour: layer), the mean in black; x: not identifiable."""
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    names = list(dict.fromkeys(r["name"] for r in rows))
    layers = [r["layer"] for r in rows if r["layer"] is not None]
    top = max(layers) if layers else 0
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        layer = mine[0]["layer"] or 0
        ax.plot([r["step"] for r in mine], [r[metric] for r in mine], lw=0.7, alpha=0.6,
                color=plt.cm.viridis(layer / top if top else 0.0))
        bad = [r for r in mine if r["not_identifiable"]]
        ax.plot([r["step"] for r in bad], [r[metric] for r in bad], "x", color="C3", ms=4)
    mean = [np.nanmean([r[metric] for r in rows if r["step"] == s and r[metric] is not None]) for s in steps]
    ax.plot(steps, mean, "-", color="black", lw=2, label="mean over matrices")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} (colour: layer; x: s1/s2 below the gap threshold)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def trajectory_plots(rows: list[dict], per_matrix: list[dict], steps: list[int], out: Path, seed: int = 0) -> list[Path]:
    out = Path(out)
    return [a_final_figure(rows, per_matrix, steps, out / FIG_A, seed), cos_heatmaps(rows, steps, out / FIG_COS_HEATMAP),
            cos_lines(rows, steps, out / FIG_COS_LINES)]


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
