"""Write docs/merging.md's findings from a merge plan's report (nothing in the section is typed by hand).

    rankedit run examples/organism-merge.yaml -o out/merge
    python scripts/merge_findings.py out/merge/report.json            # print the section
    python scripts/merge_findings.py out/merge/report.json --write    # replace it in docs/merging.md, keep the report
                                                                      # as docs/organism-merge.json

The section: what the runs share before any merge (interference beside its random-pair null), every merge
against each of its runs (R with its interval, the worst), each geometry-driven merge beside its control,
and which interference figure predicts the loss. tests/test_merge_findings.py checks the section is the
kept report rendered.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MERGING_MD = ROOT / "docs" / "merging.md"
KEPT = ROOT / "docs" / "organism-merge.json"
BEGIN = "<!-- MERGE:BEGIN (scripts/merge_findings.py writes this section from docs/organism-merge.json) -->"
END = "<!-- MERGE:END -->"
FIGS = (("cosine", "cosine of the updates"), ("subspace_overlap_left", "top-k left subspace overlap"),
        ("jaccard", "Jaccard of bf16 masks"), ("sign_conflict", "sign conflicts on shared entries"),
        ("rank1_overlap", "rank-1 overlap"))


def _r(v, lo, hi) -> str:
    return "undefined" if v is None else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def section(report: dict) -> str:
    merges = {m["name"]: m for m in report["plan"]["merges"]}
    rows = report.get("merges", [])
    m = report["machine"]
    where = m if isinstance(m, str) else f"{m.get('cpu', '')}, {m.get('cores')} cores"
    secs = (report.get("timings_s") or {}).get("total")
    took = f", in {secs / 60:.1f} min with the organism built" if secs else ""
    lines = [f"From `{report['plan']['name']}` ({report['date']}; {where}{took}),"
             f" scored on {', '.join(report['tasks'])}.", ""]
    pairs = (report.get("interference") or {}).get("pairs", {})
    if pairs:
        lines += ["**The runs before any merge** (pooled over every matrix; each figure beside its random-pair null):", "",
                  "| runs | " + " | ".join(name for _, name in FIGS) + " |", "|---|" + "---|" * len(FIGS)]
        for key, p in pairs.items():
            o = p["overall"]
            cells = ["–" if o.get(f) is None else f"{o[f]:.3f} (null {o[f + '_null']:.3f})" for f, _ in FIGS]
            lines.append(f"| {key.replace('|', ' + ')} | " + " | ".join(cells) + " |")
        lines.append("")
    runs = list(dict.fromkeys(r["run"] for r in rows))  # in the order the merges name them
    if report.get("scores"):
        alias = [f"{name} is `{Path(path).name}`" for name, path in report.get("models", {}).items()
                 if name in runs and Path(path).name != name]
        lines += ["**The runs merged, alone** (accuracy on each task, the base first"
                  + (f"; {', '.join(alias)}" if alias else "") + "):", "",
                  "| model | " + " | ".join(report["tasks"]) + " |", "|---|" + "---|" * len(report["tasks"])]
        for model in ("base", *runs):
            per = report["scores"].get(model, {})
            lines.append(f"| {model} | " + " | ".join("–" if t not in per else f"{per[t]['value']:.1%}"
                                                       for t in report["tasks"]) + " |")
        lines.append("")
    defined = [r for r in rows if r["retention_defined"]]
    lines += ["**Each merge against each of its runs** (R = (s_merge − s_base) / (s_run − s_base), 95% interval; "
              "the pairs where the run's own gain on the task is significant):", "",
              "| merge | method | task | against | R | control |", "|---|---|---|---|---|---|"]
    for r in defined:
        m = merges[r["merge"]]
        lines.append(f"| {r['merge']} | {m['method']} | {r['task']} | {r['run']} | "
                     f"{_r(r['retention'], r['ci_low'], r['ci_high'])} | "
                     f"{'of ' + m['control_of'] if m.get('control_of') else ''} |")
    if len(defined) < len(rows):
        lines += ["", f"{len(rows) - len(defined)} of {len(rows)} (merge, task, run) pairs have R undefined: the run "
                      "did not gain significantly on that task (report.json's `merges` holds each with its reason)."]
    pred = report.get("merge_prediction")
    if pred and pred.get("merges"):
        sets = {tuple(sorted(merges[n]["runs"])) for n in pred["merges"] if n in merges}
        lines += ["", f"**What predicts the loss** (Spearman over {len(pred['merges'])} merges, 95% bootstrap interval"
                      + (f"; they merge {len(sets)} distinct sets of runs, so the figures of the runs take "
                         f"{len(sets)} values at most" if sets else "") + "):", ""]
        for f, v in pred["figures"].items():
            if v["rho"] is not None:
                ci = f" [{v['ci_low']:+.2f}, {v['ci_high']:+.2f}]" if v["ci_low"] is not None else ""
                lines.append(f"- {f}: rho {v['rho']:+.2f}{ci}")
        lines.append(f"- predictor: {pred['predictor'] or 'none (no interval excludes 0)'}")
    return "\n".join(lines) + "\n"


def replace(text: str, new: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: {MERGING_MD} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n" + new + END + rest.split(END, 1)[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    report = json.loads(Path(a.report).read_text())
    if "merges" not in report:
        print(f"error: {a.report} has no merges (run a plan with a merges: section)", file=sys.stderr)
        return 1
    text = section(report)
    if not a.write:
        sys.stdout.write(text)
        return 0
    if Path(a.report).resolve() != KEPT.resolve():
        shutil.copyfile(a.report, KEPT)
    MERGING_MD.write_text(replace(MERGING_MD.read_text(), text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
