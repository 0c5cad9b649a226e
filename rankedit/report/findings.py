"""report.md's opening paragraph: the three findings a reader needs first, each with its interval.

A pure function of a single-run report (``rankedit.report.rows``), written before the tables:

1. the best edit: of the tuned run's edits (not a control) with a defined R on the first trained task
   whose tuned gain is significant, the smallest in bytes whose 95% interval reaches the highest R
   measured (the edit a reader cannot tell from the best, at the least cost), with its R, interval
   and bytes; where R is undefined there, the tuned run's gain and why;
2. its control (the edit whose ``control_of`` names it), or the first control with a defined R,
   with its interval, and whether the two intervals overlap;
3. forgetting on the first control task, s_base − s in points (positive = worse), of that edit and
   of the tuned run, with their intervals.

Every number is read from the report; the words around them follow the numbers.
"""

from __future__ import annotations

import math


def _pts(v: float, lo: float, hi: float) -> str:
    return f"{100 * v:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] points"


def _r(row: dict) -> str:
    return f"R = {row['retention']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _size(e: dict) -> str:
    b, ratio = e.get("storage_bytes"), e.get("storage_ratio")
    if not b:
        return ""
    return f" with {b:,} bytes" + (f" ({ratio:.2%} of the bf16 ΔW)" if ratio else "")


def _edit_name(e: dict) -> str:
    return f"{e['name']} ({e['keeps']})" if e.get("keeps") else e["name"]


def findings(report: dict) -> list[str]:
    """The three findings, one sentence each (none when the report has no trained task or no tuned run)."""
    control = set(report["control_tasks"])
    trained = [t for t in report["tasks"] if t not in control]
    refs = {(r["model"], r["task"]): r for r in report.get("references", [])}
    tuned_on = {t: refs.get(("tuned", t)) for t in trained}
    if not trained or not any(g and g["gain"] is not None for g in tuned_on.values()):
        return []
    task = next((t for t in trained if tuned_on[t] and tuned_on[t]["significant"]), trained[0])
    g = tuned_on[task]
    rows = {(r["edit"], r["task"]): r for r in report["rows"]}
    edits = [e for e in report["edits"] if e["of"] == "tuned"]
    mains = [e for e in edits if not e.get("control_of")]
    defined = [e for e in mains if (rows.get((e["name"], task)) or {}).get("retention") is not None]
    out = []
    best = None
    if g is None or g["gain"] is None:
        out.append(f"The tuned run was not scored on {task}, so no edit's R is measured there.")
    elif not g["significant"]:
        out.append(f"R is undefined on {task}: the tuned run's gain there, {_pts(g['gain'], g['ci_low'], g['ci_high'])}, "
                   "is not significant (its 95% interval does not lie above 0), so no edit's share of it is measured.")
        gains = [(e, rows[(e["name"], task)]) for e in mains if (rows.get((e["name"], task)) or {}).get("gain") is not None]
        if gains:
            e, r = max(gains, key=lambda x: x[1]["gain"])
            out.append(f"The largest gain of an edit on {task} is {e['name']}'s, "
                       f"{_pts(r['gain'], r['gain_ci_low'], r['gain_ci_high'])}.")
    elif not defined:
        out.append(f"The tuned run gains {_pts(g['gain'], g['ci_low'], g['ci_high'])} on {task}; no edit of it has a "
                   "defined R there.")
    else:
        top = max(defined, key=lambda e: rows[(e["name"], task)]["retention"])
        top_r = rows[(top["name"], task)]["retention"]
        best = min((e for e in defined if rows[(e["name"], task)]["ci_high"] >= top_r),
                   key=lambda e: (e.get("storage_bytes") or math.inf, -rows[(e["name"], task)]["retention"]))
        why = ("the highest R measured" if best is top else
               f"the smallest edit whose interval reaches the highest R measured ({top['name']}'s, {top_r:.2f})")
        out.append(f"Of the tuned run's gain on {task}, {_pts(g['gain'], g['ci_low'], g['ci_high'])}, the edit "
                   f"{_edit_name(best)} keeps {_r(rows[(best['name'], task)])}{_size(best)}: {why}.")
    if best is not None:
        ctl = next((e for e in edits if e.get("control_of") == best["name"]
                    and (rows.get((e["name"], task)) or {}).get("retention") is not None), None)
        own = ctl is not None
        ctl = ctl or next((e for e in edits if e.get("control_of")
                           and (rows.get((e["name"], task)) or {}).get("retention") is not None), None)
        if ctl is None:
            out.append(f"No control edit has a defined R on {task}, so what {best['name']} keeps is read against 0 only.")
        else:
            a, c = rows[(best["name"], task)], rows[(ctl["name"], task)]
            apart = c["ci_high"] < a["ci_low"] or a["ci_high"] < c["ci_low"]
            who = f"Its control {ctl['name']}" if own else f"The control {ctl['name']} of {ctl['control_of']}"
            out.append(f"{who} keeps {_r(c)}; the two 95% intervals "
                       + ("do not overlap." if apart else "overlap, so the two are not told apart on these problems."))
    ctl_task = next((t for t in report["tasks"] if t in control), None)
    if ctl_task is None:
        out.append("The plan has no control task, so forgetting is not measured.")
        return out
    t = refs.get(("tuned", ctl_task))
    tuned_lost = (f"the tuned run {_pts(-t['gain'], -t['ci_high'], -t['ci_low'])}" if t and t["gain"] is not None
                  else None)
    f = rows.get((best["name"], ctl_task)) if best is not None else None
    if f is not None and f.get("forgetting") is not None:
        out.append(f"On the control task {ctl_task}, {best['name']} loses "
                   f"{_pts(f['forgetting'], f['forgetting_ci_low'], f['forgetting_ci_high'])} (forgetting, s_base − s; "
                   "positive = worse)" + (f", {tuned_lost}." if tuned_lost else "."))
    elif tuned_lost:
        out.append(f"On the control task {ctl_task}, {tuned_lost.replace('the tuned run', 'the tuned run loses', 1)} "
                   "(forgetting, s_base − s; positive = worse).")
    return out


def findings_paragraph(report: dict) -> list[str]:
    """report.md's lines for the findings: one paragraph, the three numbered, then a blank line."""
    found = findings(report)
    if not found:
        return []
    return ["**Findings.** " + " ".join(f"({i}) {s}" for i, s in enumerate(found, 1)), ""]
