"""The early-stopping figure: weight error and retention against the window fraction f, one line per
extrapolation mode and a dashed one for the control (the window's last checkpoint as it is)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rankedit.report.early_stop import CONTROL  # noqa: E402


def early_stop_plot(block: dict, path: Path) -> Path | None:
    """Two panels over f; None when the sweep has no rows."""
    rows = block.get("rows") or []
    if not rows:
        return None
    modes = list(dict.fromkeys(e["mode"] for e in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    windows = sorted({e["f"] for e in rows})
    for ax, key, label in ((axes[0], "weight_error", "weight error to the final checkpoint T,\n"
                                                     "‖W − W_T‖ / ‖W_T − W_0‖"),
                           (axes[1], "retention", "retention of the final run's gain, R")):
        for mode in modes:
            pts = sorted((e["f"], e[key]) for e in rows if e["mode"] == mode and e[key] is not None)
            if not pts:
                continue
            control = mode == CONTROL
            ax.plot(*zip(*pts), "--" if control else "-", marker="s" if control else "o",
                    color="#777777" if control else None,
                    label="window's last checkpoint (control)" if control else mode)
        ax.set_xlabel("window: fraction f of training steps used")
        ax.set_ylabel(label, fontsize=9)
        # ticks at the windows swept, on the whole run: one window is one point, not a zoom around it
        ax.set_xlim(0, 1)
        ax.set_xticks(sorted({0.0, 1.0, *windows}))
        ax.grid(alpha=0.3)
    axes[0].set_ylim(bottom=0)
    keep = block.get("speedup", {}).get("keep")
    if keep is not None:
        axes[1].axhline(keep, color="#b22222", lw=0.8, ls=":", label=f"{keep:.0%} of the gain")
    if not any(e["retention"] is not None for e in rows):  # say why the panel is empty
        axes[1].text(0.5, 0.5, "retention undefined:\nthe run's own gain is not significant",
                     transform=axes[1].transAxes, ha="center", va="center", fontsize=9, color="#555555")
    for ax in axes:  # the modes in the left panel's legend (it always has points), the threshold in the right's
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle("Early stopping by extrapolation: each edit built from the checkpoints up to f·T, "
                 f"{len(windows)} window(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
