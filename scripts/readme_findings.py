"""Write README.md's findings section from a study's report.json (a plan with several seeds).

    python scripts/readme_findings.py out/study/report.json            # print the section
    python scripts/readme_findings.py out/study/report.json --demo out/demo/report.json --write
        # replace it in README.md, with a column for `make demo` (seed 0) and whether each of its
        # R lies inside the across-seed interval; keeps both reports under docs/

The section sits between the FINDINGS markers in README.md; nothing in it is
typed by hand, so the README's numbers are always the study's (tests check it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = ("<!-- FINDINGS:BEGIN (scripts/readme_findings.py writes this section from docs/organism-study.json "
         "and docs/organism-demo.json) -->")
END = "<!-- FINDINGS:END -->"
GEOMETRY = ("rel_update_norm", "sparsity_bf16", "rank1_energy", "angle_left_deg", "spectral_shift",
            "overlap_principal", "jaccard")


def _r(x, lo=None, hi=None, pct=False):
    if x is None:
        return "–"
    f = (lambda v: f"{100 * v:+.1f}") if pct else (lambda v: f"{v:.2f}")
    return f(x) + (f" [{f(lo)}, {f(hi)}]" if lo is not None and hi is not None else "")


def render(report: dict, demo: dict | None = None) -> str:
    runs = list(report["runs"])
    control = set(report["control_tasks"])
    task = next(t for t in report["tasks"] if t not in control)
    ctl = next((t for t in report["tasks"] if t in control), None)
    secs = report["timings_s"]["total"]
    m = report["machine"]
    out = [BEGIN, "",
           f"Measured by `make study` (`rankedit run examples/organism-seeds.yaml -o out/study`) on {report['date']}, "
           f"{m['cpu']} ({m['cores']} cores, torch {m['torch']}), in {secs / 60:.0f} min; "
           f"{len(runs)} organism seeds ({', '.join(runs)}). Each seed is its own base, GRPO run and SFT run. "
           "Per seed: R with its 95% paired-bootstrap interval over the problems; over seeds: the mean with a 95% "
           "hierarchical-bootstrap interval (seeds, then problems), which covers training noise as well. "
           "Reported as measured; a tiny arithmetic model is an instrument for the method, not evidence about "
           "large reasoning models.", ""]
    refs = [r for r in report["references"] if r["task"] in (task, ctl)]
    out += ["Gains over base (points):", "", "| run | task | " + " | ".join(runs) + " | mean over seeds |",
            "|---|---|" + "---|" * (len(runs) + 1)]
    for r in refs:
        cells = [_r(r["per_run"][n]["gain"], pct=True) if n in r["per_run"] else "–" for n in runs]
        out.append(f"| {r['model']} | {r['task']} | " + " | ".join(cells) + " | "
                   + _r(r["mean"], r["ci_low"], r["ci_high"], pct=True) + " |")
    demo_r = {r["edit"]: r for r in (demo or {}).get("rows", []) if r["task"] == task}
    out += ["", f"What each edit keeps of the gain on `{task}` (R), and forgetting on `{ctl}` (points, mean over seeds):",
            "", "| edit | keeps | " + " | ".join(runs) + " | mean R over seeds | forgetting |"
            + (" `make demo` (seed 0) |" if demo else ""), "|---|---|" + "---|" * (len(runs) + 2 + bool(demo))]
    forget = {r["edit"]: r for r in report["rows"] if r["task"] == ctl}
    inside = []
    for r in (x for x in report["rows"] if x["task"] == task):
        cells = [_r(r["per_run"][n]["retention"], r["per_run"][n]["ci_low"], r["per_run"][n]["ci_high"])
                 if r["per_run"].get(n, {}).get("retention") is not None else "undefined" for n in runs]
        f = forget.get(r["edit"])
        line = (f"| {r['edit']} | {r['keeps']} | " + " | ".join(cells) + " | "
                + (_r(r["mean"], r["ci_low"], r["ci_high"]) if r["defined"] else "undefined") + " | "
                + (_r(f["mean"], pct=True) if f else "–") + " |")
        d = demo_r.get(r["edit"])
        if demo:
            ok = d is not None and d["retention"] is not None and r["defined"] and r["ci_low"] <= d["retention"] <= r["ci_high"]
            inside.append(ok)
            line += f" {_r(d['retention']) if d and d['retention'] is not None else '–'}{' ✓' if ok else ''} |"
        out.append(line)
    if demo:
        out += ["", f"`make demo` (seed 0, {demo['scores']['base'][task]['n']} problems per task) falls inside the "
                f"across-seed interval for {sum(inside)} of {len(inside)} edits (✓)."]
    claims = [c for c in report["conclusions"] if c["task"] == task]
    if claims:
        out += ["", "Which conclusions hold in every seed (the per-seed 95% interval excludes the compared value):", ""]
        out += [f"- {c['claim']}: {c['holds']}/{c['runs']} seeds" + (" (every seed)" if c["every_run"] else "")
                for c in claims]
    geo = report["geometry"]["spread"]
    kinds = [k for k in ("tuned", "sft", "sft-matched") if k in geo]
    out += ["", "Geometry of the updates (mean over matrices; mean ± sd over seeds):", "",
            "| metric | " + " | ".join({"tuned": "RL", "sft": "SFT", "sft-matched": "SFT, matched size"}[k]
                                      for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for metric in GEOMETRY:
        cells = []
        for k in kinds:
            s = geo[k].get(metric)
            cells.append("–" if not s or s["mean"] is None else f"{s['mean']:.3g}"
                         + (f" ± {s['sd']:.1g}" if s["sd"] is not None else ""))
        if any(c != "–" for c in cells):
            out.append(f"| `{metric}` | " + " | ".join(cells) + " |")
    out += ["", END]
    return "\n".join(out)


def replace_section(readme: str, section: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit("README.md has no FINDINGS markers")
    head, rest = readme.split(BEGIN, 1)
    return head + section + rest.split(END, 1)[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--demo", type=Path, help="a `make demo` report.json to set beside the study (seed 0)")
    ap.add_argument("--write", action="store_true", help="replace the section in README.md and keep the reports")
    a = ap.parse_args(argv)
    report = json.loads(a.report.read_text())
    demo = json.loads(a.demo.read_text()) if a.demo else None
    section = render(report, demo)
    if not a.write:
        print(section)
        return
    readme = ROOT / "README.md"
    readme.write_text(replace_section(readme.read_text(), section))
    shutil.copyfile(a.report, ROOT / "docs" / "organism-study.json")
    if a.demo:
        shutil.copyfile(a.demo, ROOT / "docs" / "organism-demo.json")
    print(f"README.md findings written from {a.report}", file=sys.stderr)


if __name__ == "__main__":
    main()
