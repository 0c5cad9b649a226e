"""The report's KL section: each model's KL travelled from the base beside its forgetting on the control tasks.

Pure functions of the report dict (``report["kl"]``, written by the pipeline's KL
stage, and the forgetting the retention rows already hold: ``rankedit.report.rows``),
plus the figure ``kl_forgetting.png``: forgetting on each control task against the
per-sequence KL ``E_y Σ_t log π(y_t|·) − log π_base(y_t|·)`` (its Rao-Blackwellised estimate,
docs/science.md "KL travelled"), across base (0, 0), tuned, SFT and every edit. RL's Razor
predicts forgetting grows with that KL.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REFERENCES = ("base", "tuned", "other_tuned", "sft")


def forgetting_of(report: dict, label: str, task: str) -> dict | None:
    """{value, ci_low, ci_high} of ``label``'s forgetting (s_base − s, points lost) on control ``task``;
    exactly 0 for the base."""
    if label == "base":
        return {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0} if "base" in report.get("scores", {}) else None
    if label in REFERENCES:
        for r in report.get("references", []):
            if r["model"] == label and r["task"] == task and r["gain"] is not None:  # forgetting = −gain
                return {"value": -r["gain"], "ci_low": -r["ci_high"], "ci_high": -r["ci_low"]}
        return None
    for r in report.get("rows", []):
        if r["edit"] == label and r["task"] == task and r["forgetting"] is not None:
            return {"value": r["forgetting"], "ci_low": r["forgetting_ci_low"], "ci_high": r["forgetting_ci_high"]}
    return None


def kl_points(report: dict) -> list[dict]:
    """One point per (model, control task): per-sequence KL (both estimators) and forgetting, with intervals.

    Per sequence: the KL of the whole completion distributions, KL(π(y|x) ‖ π_base(y|x)), which needs no
    1/|y| convention."""
    models = report.get("kl", {}).get("models", {})
    points = []
    for label, k in models.items():
        if "error" in k:
            continue
        for task in report.get("control_tasks", []):
            points.append({"model": label, "task": task, "kl_rb": k["per_sequence"]["rb"], "kl_mc": k["per_sequence"]["mc"],
                           "forgetting": forgetting_of(report, label, task)})
    return points


def _f(x: dict | None, digits: int = 4, scale: float = 1.0, signed: bool = False) -> str:
    if x is None:
        return "–"
    s = "+" if signed else ""
    return (f"{x['value'] * scale:{s}.{digits}f} [{x['ci_low'] * scale:{s}.{digits}f}, "
            f"{x['ci_high'] * scale:{s}.{digits}f}]")


def kl_markdown(report: dict) -> list[str]:
    """Lines of report.md's "KL travelled from the base" section (none when the plan had no ``kl:``)."""
    block = report.get("kl")
    if not block:
        return []
    st, controls = block["settings"], report.get("control_tasks", [])
    lines = ["", "## KL travelled from the base", "",
             f"KL(π ‖ π_base) on the RL task's prompts, from each model's own samples ({st['prompts']} prompts × "
             f"{st['samples']} samples at temperature 1, at most {st['max_tokens']} tokens, seed {st['seed']}). "
             "Per sequence: E Σ_t log π(y_t) − log π_base(y_t); per token: E (1/|y|) Σ_t of the same. MC is the "
             "log-ratio at the sampled tokens; RB uses the exact KL over the vocabulary at each sampled prefix (per "
             "token, as a control variate of MC: docs/science.md). Each is unbiased for the quantity it is named "
             "after; the figure plots KL per sequence, RB. "
             "95% bootstrap intervals over prompts. Forgetting: s_base − s on the control task, the points lost (positive = worse).", ""]
    head = ["model", "KL/token MC", "KL/token RB", "KL/sequence MC", "KL/sequence RB", "tokens", "truncated"] + \
        [f"forgetting {t}" for t in controls]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, k in block["models"].items():
        if "error" in k:
            lines.append(f"| {label} | failed: {k['error']} |" + " |" * (len(head) - 2))
            continue
        cells = [label, _f(k["per_token"]["mc"]), _f(k["per_token"]["rb"]), _f(k["per_sequence"]["mc"], 3),
                 _f(k["per_sequence"]["rb"], 3),
                 f"{k['mean_tokens']:.1f}", f"{k['truncation_rate']:.0%}"]
        cells += [_f(forgetting_of(report, label, t), 1, 100, True) for t in controls]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def kl_forgetting_plot(report: dict, path: Path) -> Path | None:
    """Forgetting on each control task (points) against per-sequence KL travelled (RB), every model labelled."""
    points = [p for p in kl_points(report) if p["forgetting"] is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    markers = "osD^v"
    tasks = list(dict.fromkeys(p["task"] for p in points))
    names: dict[tuple, list[str]] = {}  # models at one spot (the base and an edit that keeps nothing) share a label
    for p in points:
        x, f = p["kl_rb"], p["forgetting"]
        ref = p["model"] in REFERENCES
        colour = "#444444" if ref else "#1f5aa6"
        ax.errorbar([x["value"]], [100 * f["value"]],
                    xerr=[[max(x["value"] - x["ci_low"], 0)], [max(x["ci_high"] - x["value"], 0)]],
                    yerr=[[max(100 * (f["value"] - f["ci_low"]), 0)], [max(100 * (f["ci_high"] - f["value"]), 0)]],
                    fmt=markers[tasks.index(p["task"]) % 5], color=colour, ecolor=colour, capsize=3, ms=6,
                    mfc=colour if ref else "white", zorder=3 if ref else 2)
        names.setdefault((round(x["value"], 6), round(100 * f["value"], 6)), []).append(p["model"])
    for (x, y), labels in names.items():
        ax.annotate(", ".join(dict.fromkeys(labels)), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("KL travelled from the base, per sequence (nats; Rao-Blackwellised, 95% bootstrap interval over prompts)",
                  fontsize=8)
    ax.set_ylabel("forgetting on " + ", ".join(tasks) + ": points lost, s_base − s\n(higher is worse)", fontsize=8)
    ax.set_title(f"{report['name']}\nforgetting against KL travelled (RL's Razor; filled: base, tuned, SFT; "
                 "hollow: edits)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
