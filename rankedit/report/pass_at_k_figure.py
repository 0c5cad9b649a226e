"""pass_at_k.png: pass@k against k on a log axis, one panel per task, every sampled model with its interval.

The question it answers: does an edit that keeps the pass@1 gain also keep the
base's reach at large k? Base is drawn black and dashed; the point where the
tuned model crosses base, if it does, is marked.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pass_at_k_plot(report: dict, path: Path) -> Path | None:
    blocks = report.get("pass_at_k") or {}
    if not blocks:
        return None
    tasks = list(blocks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, task in zip(axes[0], tasks):
        blk = blocks[task]
        others = [lab for lab in blk["models"] if lab != "base"]
        for lab, c in blk["models"].items():
            colour = "black" if lab == "base" else cmap(others.index(lab) % 10)
            ax.plot(c["k"], c["value"], color=colour, ls="--" if lab == "base" else "-", lw=1.6, label=lab)
            ax.fill_between(c["k"], c["ci_low"], c["ci_high"], color=colour, alpha=0.12, lw=0)
            k = c.get("crosses_base_at")
            if lab == "tuned" and k:
                ax.axvline(k, color=colour, lw=0.8, ls=":")
                ax.annotate(f"crosses base at k={k}", (k, c["value"][k - 1]), textcoords="offset points",
                            xytext=(4, -12), fontsize=8, color=colour)
        ax.set_xscale("log", base=2)
        ax.set_xlim(1, blk["n"])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k (samples)")
        ax.set_title(f"{task} (n = {blk['n']}, {blk['problems']} problems)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("pass@k (95% bootstrap interval)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
