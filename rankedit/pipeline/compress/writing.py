"""What ``rankedit compress`` writes: compress.json, a short compress.md and the candidates' frontier PNG."""

from __future__ import annotations

import json
from pathlib import Path

from rankedit.core.names import FIG_FRONTIER
from rankedit.files.atomic import atomic_write_text
from rankedit.files.inventory import register
from rankedit.report.frontier import mark_pareto
from rankedit.report.frontier_figure import frontier_plot

COMPRESS_JSON = "compress.json"
COMPRESS_MD = "compress.md"
TARGET_TEXT = {"point": "the point estimate of R", "lower": "the lower bound of R's 95% interval"}


def _r(x: dict | None) -> str:
    if not x or x.get("value") is None:
        return "undefined"
    lo, hi = x.get("ci_low"), x.get("ci_high")
    return f"{x['value']:.2f}" + ("" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]")


def winner_line(doc: dict) -> str:
    """One line on the winner: family, budget, bytes, ratio to the bf16 delta, retention with its interval."""
    w = doc["winner"]
    aim = f"keep ≥ {doc['keep']:g} of the gain on {TARGET_TEXT[doc['target']]}"
    if w is None:
        return f"no candidate met the target ({aim}); see compress.md for the best each family reached"
    rets = "; ".join(f"R {t} = {_r(w['retention'].get(t))}" for t in doc["judged_tasks"])
    return (f"winner: {w['family']} {w['label'].removeprefix(w['family'] + ' ') if w['label'] != w['family'] else '(fixed size)'}"
            f", {w['stored_bytes']:,} bytes = {w['bytes_ratio']:.3g} × the bf16 delta; {rets} (target: {aim})")


def _mb(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


def exact_line(doc: dict) -> str | None:
    """The lossless point beside the winner: "exact patch: X MB, R = 1; winner: Y MB, R = ..."."""
    e = doc.get("exact_patch")  # reports written before the exact patch was measured have none
    if not e:
        return None
    w = doc["winner"]
    line = (f"exact patch: {_mb(e['stored_bytes'])} ({e['stored_bytes']:,} bytes, "
            f"{e['checkpoint_ratio']:.3g} × the checkpoint), R = 1 (its rebuild is the tuned model bit for bit: "
            "the tuned model's scores, not scored again)")
    if w is None:
        return line + "; no winner"
    rets = "; ".join(f"R {t} = {_r(w['retention'].get(t))}" for t in doc["judged_tasks"])
    return (line + f"; winner: {_mb(w['stored_bytes'])}, {rets} "
            f"(the exact patch is {e['stored_bytes'] / w['stored_bytes']:.3g} × its bytes)")


def markdown(doc: dict) -> str:
    lines = ["# rankedit compress", "",
             f"Base `{doc['models']['base']}` → tuned `{doc['models']['tuned']}`; suite {doc['suite']}, "
             f"judged on {', '.join(doc['judged_tasks'])} (trained tasks where the tuned gain is significant).", "",
             f"Target: R ≥ {doc['keep']:g} on {TARGET_TEXT[doc['target']]}, on every judged task (the worst decides). "
             "Each family's budget is bisected (galloping from the smallest), assuming R grows with the budget; "
             "sign and sub-rank-1 have one size, so one candidate each.", "",
             f"**{winner_line(doc)}**", ""] + ([exact_line(doc), ""] if exact_line(doc) else [])
    skipped = {t: g for t, g in doc["tuned_gain"].items() if t not in doc["judged_tasks"]}
    if skipped:
        lines += ["Not judged (the tuned gain there is not significantly above 0, so R is undefined): " + "; ".join(
            f"{t}, gain {100 * g['value']:+.1f} points [{100 * g['ci_low']:+.1f}, {100 * g['ci_high']:+.1f}]"
            for t, g in skipped.items()) + ".", ""]
    if doc["winner"] and doc["winner"].get("artifact"):
        a = doc["winner"]["artifact"]
        lines += [f"Artifact ({a.get('kind')}): `{a.get('path')}`.", ""]
    lines += ["| family | axis | candidates | smallest meeting | resolved |", "|---|---|---|---|---|"]
    for name, f in doc["families"].items():
        lines.append(f"| {name} | {f['axis'].replace('|', chr(92) + '|')} | {f['evaluated']} | {f['winner_label'] or 'none'} | "
                     f"{'–' if f['fixed'] or f['winner_label'] is None else ('yes' if f['resolved'] else 'no (cap)')} |")
    head = ["candidate", "bytes", "× bf16 ΔW"] + [f"R {t} [95%]" for t in doc["judged_tasks"]] + ["meets"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(doc["candidates"], key=lambda r: (r["family"], r["stored_bytes"] or 0)):
        lines.append("| " + " | ".join([r["label"], f"{r['stored_bytes']:,}", f"{r['bytes_ratio']:.3g}"]
                                       + [_r(r["retention"].get(t)) for t in doc["judged_tasks"]]
                                       + ["**yes**" if r["meets"] else "no"]) + " |")
    return "\n".join(lines) + "\n"


STORED_KEYS = ("energy_kept_stored", "stored_delta_error", "stored_dtype")  # the scored object's own figures


def frontier_doc(doc: dict) -> dict:
    """The candidates as the rows ``rankedit.report.frontier_figure.frontier_plot`` draws."""
    rows = []
    for r in doc["candidates"]:
        for task in doc["judged_tasks"]:
            ret = r["retention"].get(task, {})
            rows.append({"edit": r["label"], "method": r["family"], "of": "tuned", "control_of": None,
                         "control": False, "task": task, "storage_bytes": r["stored_bytes"],
                         "storage_ratio": r["bytes_ratio"], "retention": ret.get("value"), "ci_low": ret.get("ci_low"),
                         "ci_high": ret.get("ci_high"), "retention_defined": ret.get("value") is not None,
                         "gain": ret.get("gain"), "gain_ci_low": None, "gain_ci_high": None,
                         "forgetting": r["forgetting"], "pareto": None,
                         **{k: r.get(k) for k in STORED_KEYS}})
    e = doc.get("exact_patch")
    for task in doc["judged_tasks"] if e else []:  # the lossless point: R = 1, the tuned model's scores
        ret = e["retention"][task]
        rows.append({"edit": e["label"], "method": e["family"], "of": "tuned", "control_of": None, "control": False,
                     "task": task, "storage_bytes": e["stored_bytes"], "storage_ratio": e["bytes_ratio"],
                     "retention": ret["value"], "ci_low": ret["ci_low"], "ci_high": ret["ci_high"],
                     "retention_defined": True, "gain": ret["gain"], "gain_ci_low": None, "gain_ci_high": None,
                     "forgetting": e["forgetting"], "pareto": None, **{k: None for k in STORED_KEYS}})
    control = [t for t in doc["tasks"] if any(t in r["forgetting"] for r in doc["candidates"])]
    return {"name": "rankedit compress: the candidates", "frontier": mark_pareto(rows), "control_tasks": control}


def write_outputs(doc: dict, out: Path) -> None:
    """compress.json and compress.md (each atomic), and frontier.png when some candidate has a size."""
    fig = frontier_plot(frontier_doc(doc), out / FIG_FRONTIER) if doc["candidates"] else None
    if fig is not None:
        register(Path(fig))
    doc["figure"] = FIG_FRONTIER if fig is not None else None
    atomic_write_text(out / COMPRESS_JSON, json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")
    atomic_write_text(out / COMPRESS_MD, markdown(doc))
