"""frontier.png: retention (and forgetting) against the bytes each edit costs to store, on a log axis.

One panel per trained task (R with its interval; Pareto-optimal edits joined by
a step line) and one per control task (forgetting). Each edit has its colour;
a control takes the colour of the edit it controls and is drawn hollow. Edits
of equal size are spread a little sideways so that none hides another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_SPREAD = 1.07  # sideways factor between edits of (nearly) equal size on the log axis


def _colours(rows: Sequence[dict]) -> dict[str, tuple]:
    """Edit -> colour: one per edit that is not a control; a control shares its edit's."""
    names = list(dict.fromkeys(r["edit"] for r in rows if not r["control"]))
    # tab10 while it suffices; beyond ten edits tab20, so that no two edits share a colour up to twenty
    cmap, n = (plt.get_cmap("tab10"), 10) if len(names) <= 10 else (plt.get_cmap("tab20"), 20)
    own = {name: cmap(i % n) for i, name in enumerate(names)}
    return {r["edit"]: own.get(r["control_of"], (0.5, 0.5, 0.5, 1.0)) if r["control"] else own[r["edit"]]
            for r in rows}


def _positions(rows: Sequence[dict]) -> dict[str, float]:
    """Edit -> x: its bytes, spread by a factor ``_SPREAD`` among edits within 2% of each other's size."""
    sized = sorted({r["edit"]: r["storage_bytes"] for r in rows if r["storage_bytes"]}.items(), key=lambda kv: kv[1])
    out: dict[str, float] = {}
    i = 0
    while i < len(sized):
        j = i
        while j + 1 < len(sized) and sized[j + 1][1] <= sized[i][1] * 1.02:
            j += 1
        for k in range(i, j + 1):
            out[sized[k][0]] = sized[k][1] * _SPREAD ** (k - i - (j - i) / 2)
        i = j + 1
    return out


def _point(ax, x, y, lo, hi, colour, hollow: bool, marker: str, label=None):
    err = None if lo is None or hi is None else [[max(y - lo, 0)], [max(hi - y, 0)]]
    ax.errorbar([x], [y], yerr=err, fmt=marker, color=colour, ecolor=colour, capsize=3, ms=7, mew=1.5,
                mfc="white" if hollow else colour, label=label, zorder=3)


def _panel_retention(ax, rows: list[dict], xs: dict, colours: dict, r_name: str, x_right: float) -> str:
    """Draw R against size, or each edit's gain where R is undefined for every edit; return the panel's title."""
    defined = [r for r in rows if r["retention"] is not None and r["edit"] in xs]
    if defined:
        for r in defined:
            _point(ax, xs[r["edit"]], r["retention"], r["ci_low"], r["ci_high"], colours[r["edit"]], r["control"],
                   "s" if r["of"] == "sft" else "o")
        for of in dict.fromkeys(r["of"] for r in defined):
            front = sorted((r for r in defined if r["pareto"] and r["of"] == of), key=lambda r: r["storage_bytes"])
            if front:  # ringed, and joined by a step that runs on to the right edge: what no larger edit beats
                x, y = [xs[r["edit"]] for r in front], [r["retention"] for r in front]
                ax.plot(x, y, "o", ms=13, mfc="none", mec="black", mew=1, zorder=2)
                ax.step(x + [x_right], y + [y[-1]], where="post", color="black", lw=1.2, alpha=0.7, zorder=2,
                        ls="-" if of != "sft" else ":")
        ax.axhline(1, color="black", lw=0.8, ls="--")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel(f"gain retention {r_name}\n(95% interval)")
        return "retention on {task}"
    # R undefined for every edit (the run's gain is not significant): show each edit's own gain, in points
    gains = [r for r in rows if r.get("gain") is not None and r["edit"] in xs]
    for r in gains:
        _point(ax, xs[r["edit"]], 100 * r["gain"], 100 * r["gain_ci_low"], 100 * r["gain_ci_high"],
               colours[r["edit"]], r["control"], "s" if r["of"] == "sft" else "o")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("s_edit − s_base, points\n(95% interval)")
    return f"gain on {{task}} ({r_name} undefined: the run's own gain is not significant)"


def _panel_forgetting(ax, rows: list[dict], task: str, xs: dict, colours: dict) -> None:
    for r in rows:
        f = r["forgetting"].get(task)
        if f and f["value"] is not None and r["edit"] in xs:
            _point(ax, xs[r["edit"]], 100 * f["value"], None if f["ci_low"] is None else 100 * f["ci_low"],
                   None if f["ci_high"] is None else 100 * f["ci_high"], colours[r["edit"]], r["control"],
                   "s" if r["of"] == "sft" else "o")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("forgetting: points lost on the control\ntask, s_base − s_edit (higher is worse; 95% interval)")


def _flat(rows: Sequence[dict], task: str, kind: str, trained: Sequence[str]) -> bool:
    """A panel with nothing to show: no R defined, and every edit's difference from the base exactly 0
    with a zero-width interval (a task that no model solves, say)."""
    if kind == "retention":
        mine = [r for r in rows if r["task"] == task]
        if any(r["retention"] is not None for r in mine):
            return False
        vals = [(r.get("gain"), r.get("gain_ci_low"), r.get("gain_ci_high")) for r in mine]
    else:
        vals = [(f["value"], f["ci_low"], f["ci_high"]) for r in rows if r["task"] == trained[0]
                for f in [r["forgetting"].get(task)] if f]
    return all(v in (0, None) for triple in vals for v in triple)


def frontier_plot(report: dict, path: Path, r_name: str = "R") -> Path | None:
    """The figure from ``report["frontier"]`` (rows of ``rankedit.report.frontier``); None if no edit has a size."""
    rows = report.get("frontier") or []
    xs = _positions(rows)
    if not xs:
        return None
    colours = _colours(rows)
    trained = list(dict.fromkeys(r["task"] for r in rows))
    control = [t for t in report["control_tasks"] if any(t in r["forgetting"] for r in rows)]
    panels = [(t, "retention") for t in trained] + [(t, "forgetting") for t in control]
    flat = [t for t, kind in panels if _flat(rows, t, kind, trained)]
    panels = [p for p in panels if p[0] not in flat]
    if not panels:
        return None
    lo, hi = min(xs.values()) / 2.5, max(xs.values()) * 2.5
    named = list(dict.fromkeys(r["edit"] for r in rows if r["edit"] in xs))
    legend_rows = -(-(len(named) + any(r["pareto"] for r in rows)) // 3)
    height = 3.1 * len(panels) + 1.3 + 0.22 * legend_rows
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, height), sharex=True, squeeze=False)
    for i, (ax, (task, kind)) in enumerate(zip(axes[:, 0], panels)):
        if kind == "retention":
            title = _panel_retention(ax, [r for r in rows if r["task"] == task], xs, colours, r_name, hi)
        else:
            _panel_forgetting(ax, [r for r in rows if r["task"] == trained[0]], task, xs, colours)
            title = "forgetting on the control task {task}"
        ax.set_title(title.format(task=task), fontsize=9, loc="left", fontweight="bold", pad=24 if i == 0 else 6)
        ax.grid(alpha=0.3, which="both")
    ax = axes[-1, 0]
    ax.set_xscale("log")
    ratios = [(r["storage_bytes"], r["storage_ratio"]) for r in rows if r["storage_bytes"] and r["storage_ratio"]]
    if ratios:  # the bf16 delta's size, and a top axis in multiples of it
        delta = ratios[0][0] / ratios[0][1]
        for a in axes[:, 0]:
            a.axvline(delta, color="0.4", lw=1, ls=":")
        axes[0, 0].secondary_xaxis("top", functions=(lambda b: b / delta, lambda q: q * delta)).set_xlabel(
            "size as a fraction of the bf16 delta ΔW (dotted line)", fontsize=8)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("bytes of the edit's smallest faithful artifact (log scale)")
    handles = {}
    for r in rows:
        if r["edit"] in xs and r["edit"] not in handles:
            label = r["edit"] + (f" (control of {r['control_of']})" if r["control"] else "") + \
                (" [of SFT]" if r["of"] == "sft" else "")
            handles[r["edit"]] = plt.Line2D([], [], marker="s" if r["of"] == "sft" else "o", ls="", ms=7, mew=1.5,
                                            color=colours[r["edit"]], label=label,
                                            mfc="white" if r["control"] else colours[r["edit"]])
    ring = plt.Line2D([], [], marker="o", ms=11, mfc="none", mec="black", color="black", lw=1.2,
                      label="Pareto-optimal (ringed; dotted: of SFT)")
    ranked = [ring] if any(r["pareto"] for r in rows) else []
    sft = "; square: of SFT" if any(r["of"] == "sft" for r in rows if r["edit"] in xs) else ""
    fig.legend(handles=list(handles.values()) + ranked, loc="lower center", ncol=3, fontsize=8, frameon=False,
               title=f"edit (hollow: the control of the edit of its colour{sft})", title_fontsize=8)
    left_out = f"\nnot drawn: {', '.join(flat)} (every edit scored exactly the base there)" if flat else ""
    fig.suptitle(f"{report['name']}:\nsize against gain (points at equal size spread slightly sideways){left_out}",
                 fontsize=10)
    fig.tight_layout(rect=(0, (0.35 + 0.2 * legend_rows) / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
