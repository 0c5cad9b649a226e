"""PNG figures of a trajectory (matplotlib, headless): a(t) with its line and 1 − R² beside the random-walk null;
cosines to the final step. Their names are rankedit/core/figure_list.py's; captions in docs/figures.md."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rankedit.analysis.plots import layer_module_grid  # noqa: E402
from rankedit.analysis.trajectory_math import line_fit  # noqa: E402
from rankedit.core.figure_list import FIG_A, FIG_COS_HEATMAP, FIG_COS_LINES  # noqa: E402,F401

MAX_PANELS = 9
_WORDS = {"cos_dw_final": "cosine of ΔW_t with the final update ΔW_T (−1 to 1)",
          "cos_v_final": "cosine of v₁(t) with the final v₁(T) (0 to 1, sign-aligned)"}


def representative(per_matrix: list[dict], n: int = MAX_PANELS) -> list[dict]:
    """Up to n matrices spread evenly over the model's order (first, last and between)."""
    if len(per_matrix) <= n:
        return per_matrix
    idx = sorted({round(i * (len(per_matrix) - 1) / (n - 1)) for i in range(n)})
    return [per_matrix[i] for i in idx]


FLOOR = 1e-9  # 1 − R² below this (a planted line, to rounding) is drawn on this floor of the log axis


def unexplained(r2) -> float:
    """1 − R², floored for a log axis (nan stays nan)."""
    return math.nan if r2 is None or not math.isfinite(r2) else max(1.0 - r2, FLOOR)


def a_final_figure(rows: list[dict], per_matrix: list[dict], steps: list[int], path: Path) -> Path:
    """Above: a(t) of up to nine matrices with the least-squares line in t. Below: 1 − R² of that line for
    every matrix on a log axis, beside the 5-95% band of the random-walk null (``a_final_linearity``).

    R² itself cannot tell a run from a walk: a walk's a(t), measured on its own final direction, is a line
    to within 1/(√m + √n)² (docs/science.md), so both read R² 1.00. Their unexplained shares differ by
    orders of magnitude, which the log axis shows."""
    # nothing here is random: the nulls were drawn, seeded, by a_final_linearity into per_matrix
    chosen = representative(per_matrix)
    cols = min(3, len(chosen))
    nrows = math.ceil(len(chosen) / cols)
    fig = plt.figure(figsize=(4.2 * cols, 3.0 * nrows + 3.6))
    grid = fig.add_gridspec(nrows + 1, cols, height_ratios=[1.0] * nrows + [1.15])
    t = np.asarray(steps, dtype=float)
    line_t = np.linspace(0.0, t.max(), 50)
    for i, m in enumerate(chosen):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        a = np.array([r["a_final"] for r in rows if r["name"] == m["name"]])
        b0, b1 = line_fit(t, a)
        ax.plot(t, a, "o", color="C0", label="a(t) at each checkpoint")
        ax.plot(line_t, b0 + b1 * line_t, "-", color="C3", lw=1, label="least-squares line in t")
        lin = m["a_final"]
        ax.set_title(f"{m['name']}\n1 − R² {_sci(lin['r2'])} (walk null {_sci(lin['r2_walk'])}, 5-95% "
                     f"{_sci(lin.get('r2_walk_q95'))} to {_sci(lin.get('r2_walk_q05'))})", fontsize=7)
        ax.set_xlabel("training step")
        ax.set_ylabel("a(t) = u₁(T)ᵀ ΔW_t v₁(T)", fontsize=8)
        if i == 0:
            ax.legend(fontsize=6, loc="upper left")
    _unexplained_panel(fig.add_subplot(grid[nrows, :]), per_matrix, {m["name"] for m in chosen})
    shown = (f"all {len(per_matrix)} matrices" if len(chosen) == len(per_matrix) else
             f"{len(chosen)} of {len(per_matrix)} matrices, spread evenly over the model's order "
             f"(every one below and in summary.json)")
    fig.suptitle(f"a(t): the update on its final top direction, {shown}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _unexplained_panel(ax, per_matrix: list[dict], shown: set[str]) -> None:
    """1 − R² of a(t) per matrix (filled: drawn above) beside its walk null's mean and 5-95% band."""
    x = np.arange(len(per_matrix))
    lin = [m["a_final"] for m in per_matrix]
    lo = [unexplained(d.get("r2_walk_q95")) for d in lin]  # the 95th percentile of R² is the low end of 1 − R²
    hi = [unexplained(d.get("r2_walk_q05")) for d in lin]
    ax.vlines(x, lo, hi, color="0.6", lw=5, label="random-walk null, 5-95% of its draws")
    ax.plot(x, [unexplained(d.get("r2_walk")) for d in lin], "_", color="0.2", ms=9,
            label="random-walk null, mean")
    run = np.array([unexplained(d.get("r2")) for d in lin])
    filled = np.array([m["name"] in shown for m in per_matrix])
    ax.plot(x[filled], run[filled], "o", color="C0", label="this run (a(t) drawn above)")
    if not filled.all():
        ax.plot(x[~filled], run[~filled], "o", color="C0", mfc="white", label="this run (not drawn above)")
    ax.set_yscale("log")
    ax.set_ylabel(f"1 − R² of the line in t\n(log; below {FLOOR:.0e} drawn at it)", fontsize=8)
    if len(per_matrix) <= 40:
        ax.set_xticks(x, [_short(m) for m in per_matrix], rotation=90, fontsize=6)
        ax.set_xlabel("matrix (layer.module)", fontsize=8)
    else:
        ax.set_xlabel("matrix, in the model's order", fontsize=8)
    ax.set_title("unexplained share of a(t): below the band, more linear than a random walk; above, less",
                 fontsize=8)
    ax.legend(fontsize=6, loc="best")


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
        ax.set_xlabel("module", fontsize=7)
        ax.set_ylabel("layer", fontsize=7)
    fig.colorbar(im, ax=list(axes.flat), shrink=0.8).set_label(_WORDS.get(metric, metric), fontsize=8)
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
    ax.set_xlabel("training step")
    ax.set_ylabel(_WORDS.get(metric, metric), fontsize=8)
    ax.set_title(f"{metric} per matrix (colour: layer, dark = first); ×: s1/s2 below the gap threshold", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def trajectory_plots(rows: list[dict], per_matrix: list[dict], steps: list[int], out: Path) -> list[Path]:
    out = Path(out)
    return [a_final_figure(rows, per_matrix, steps, out / FIG_A), cos_heatmaps(rows, steps, out / FIG_COS_HEATMAP),
            cos_lines(rows, steps, out / FIG_COS_LINES)]


def _short(m: dict) -> str:
    """``3.mlp.down_proj``-like: the layer and module, or the name where there is no layer."""
    return m["name"] if m.get("layer") is None else f"{m['layer']}.{m['module']}"


def _sci(r2) -> str:
    """1 − R² in two significant digits ("-" when undefined)."""
    v = unexplained(r2)
    return "-" if math.isnan(v) else f"{v:.1e}"
