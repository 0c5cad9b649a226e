"""Write the organism's findings (docs/findings.md) and the README's five headlines from the runs' reports.

    python scripts/readme_findings.py out/study/report.json            # print the three-seed section
    python scripts/readme_findings.py out/study/report.json --demo out/demo/report.json --write
        # replace it in docs/findings.md, with a column for `make demo` (seed 0) and whether each of its
        # R lies inside the across-seed interval; keeps both reports under docs/
    python scripts/readme_findings.py --frontier out/frontier/report.json --write
        # the size-against-gain section, from `rankedit run examples/organism-frontier.yaml`
    python scripts/readme_findings.py --compress out/compress/compress.json --write
        # the compress run (`rankedit compress --organism small --keep 0.95 -o out/compress`)
    python scripts/readme_findings.py --trajectory out/trajectory/report.json --write
        # early stopping by extrapolation and linearity, from examples/organism-trajectory.yaml
    python scripts/readme_findings.py --behaviour out/behaviour/report.json --write
        # the behaviour section (pass@k, KL travelled, propensity), from examples/organism-behaviour.yaml
    python scripts/readme_findings.py --headlines [--write]
        # the README's five headline findings, from the reports kept in docs/ (every --write redoes them)

Each section sits between its markers in docs/findings.md (FINDINGS, FRONTIER, COMPRESS, TRAJECTORY,
BEHAVIOUR), the headlines between HEADLINES markers in README.md; nothing in them is typed by hand, so
the numbers are always the runs' (tests/test_readme_findings.py checks it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from rankedit.pipeline.trajectory_stage import patch_sentence

ROOT = Path(__file__).resolve().parent.parent
FINDINGS_MD = ROOT / "docs" / "findings.md"
README = ROOT / "README.md"
BEGIN = ("<!-- FINDINGS:BEGIN (scripts/readme_findings.py writes this section from docs/organism-study.json "
         "and docs/organism-demo.json) -->")
END = "<!-- FINDINGS:END -->"
FRONTIER_BEGIN = ("<!-- FRONTIER:BEGIN (scripts/readme_findings.py writes this section from "
                  "docs/organism-frontier.json) -->")
FRONTIER_END = "<!-- FRONTIER:END -->"
COMPRESS_BEGIN = ("<!-- COMPRESS:BEGIN (scripts/readme_findings.py writes this section from "
                  "docs/organism-compress.json) -->")
COMPRESS_END = "<!-- COMPRESS:END -->"
TRAJECTORY_BEGIN = ("<!-- TRAJECTORY:BEGIN (scripts/readme_findings.py writes this section from "
                    "docs/organism-trajectory.json) -->")
TRAJECTORY_END = "<!-- TRAJECTORY:END -->"
BEHAVIOUR_BEGIN = ("<!-- BEHAVIOUR:BEGIN (scripts/readme_findings.py writes this section from "
                   "docs/organism-behaviour.json) -->")
BEHAVIOUR_END = "<!-- BEHAVIOUR:END -->"
HEADLINES_BEGIN = ("<!-- HEADLINES:BEGIN (scripts/readme_findings.py --headlines writes this section from the "
                   "reports in docs/) -->")
HEADLINES_END = "<!-- HEADLINES:END -->"
# the kept reports the headlines are written from, by the name render_headlines takes them
KEPT = {"study": "organism-study.json", "frontier": "organism-frontier.json", "compress": "organism-compress.json",
        "trajectory": "organism-trajectory.json", "behaviour": "organism-behaviour.json"}
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
           f"{m['cpu']} ({m['cores']} cores, torch {m['torch']}), in {secs / 60:.0f} min (what an earlier run had "
           "cached is reused, and the time counts only what this run computed; BENCHMARKS.md has a run from "
           "nothing); "
           f"{len(runs)} organism seeds ({', '.join(runs)}). Each seed is its own base, GRPO run and SFT run. "
           "Per seed: R with its 95% paired-bootstrap interval over the problems; over seeds: the mean with a 95% "
           "hierarchical-bootstrap interval (seeds, then problems), which covers training noise as well, and where one "
           "seed lands (one seed drawn, then its problems; 95%). "
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
    out += ["", f"What each edit keeps of the gain on `{task}` (R), and forgetting on `{ctl}` (points lost, s_base − s: higher is worse; mean over seeds):",
            "", "| edit | keeps | " + " | ".join(runs) + " | mean R over seeds | one seed lands in | forgetting |"
            + (" `make demo` (seed 0) |" if demo else ""), "|---|---|" + "---|" * (len(runs) + 3 + bool(demo))]
    forget = {r["edit"]: r for r in report["rows"] if r["task"] == ctl}
    inside, same = [], []
    for r in (x for x in report["rows"] if x["task"] == task):
        cells = [_r(r["per_run"][n]["retention"], r["per_run"][n]["ci_low"], r["per_run"][n]["ci_high"])
                 if r["per_run"].get(n, {}).get("retention") is not None else "undefined" for n in runs]
        f = forget.get(r["edit"])
        line = (f"| {r['edit']} | {r['keeps']} | " + " | ".join(cells) + " | "
                + (_r(r["mean"], r["ci_low"], r["ci_high"]) if r["defined"] else "undefined") + " | "
                + (f"[{r['one_run_low']:.2f}, {r['one_run_high']:.2f}]" if r["defined"] else "–") + " | "
                + (_r(f["mean"], pct=True) if f else "–") + " |")
        d = demo_r.get(r["edit"])
        if demo:
            ok = (d is not None and d["retention"] is not None and r["defined"]
                  and r["one_run_low"] <= d["retention"] <= r["one_run_high"])
            inside.append(ok)
            seed0 = r["per_run"].get("seed0", {}).get("retention")
            same.append(d is not None and seed0 is not None and d["retention"] == seed0)
            line += f" {_r(d['retention']) if d and d['retention'] is not None else '–'}{' ✓' if ok else ''} |"
        out.append(line)
    if demo:
        out += ["", f"`make demo` (seed 0, {demo['scores']['base'][task]['n']} problems of `{task}`) lands inside the "
                f"one-seed interval for {sum(inside)} of {len(inside)} edits (✓), and its R equals the seed0 column's "
                f"to the last digit for {sum(same)} of {len(same)}: the same organism, edits and problems. "
                "The one-seed interval is where a single seed of this recipe lands (one seed drawn, then its "
                "problems, 95%); the mean's interval is narrower and is not meant to hold any one seed."]
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


def _smallest(rows: list[dict], keep: float, key: str) -> str:
    """The smallest non-control edit whose R (point, or its interval's lower bound) reaches ``keep``."""
    ok = [r for r in rows if not r["control"] and r["retention"] is not None and r[key] >= keep]
    if not ok:
        return "none"
    r = min(ok, key=lambda r: (r["storage_bytes"], -r["retention"]))
    return (f"{r['edit']} ({r['storage_bytes']:,} bytes, {r['storage_ratio']:.3g} of the bf16 ΔW, "
            f"R {_r(r['retention'], r['ci_low'], r['ci_high'])})")


def render_frontier(report: dict) -> str:
    """The size-against-gain section from a one-run report (examples/organism-frontier.yaml)."""
    control = set(report["control_tasks"])
    task = next(t for t in report["tasks"] if t not in control)
    ctl = next((t for t in report["tasks"] if t in control), None)
    m, keeps = report["machine"], {e["name"]: e["keeps"] for e in report["edits"]}
    rows = sorted((r for r in report["frontier"] if r["task"] == task), key=lambda r: (r["storage_bytes"], r["edit"]))
    out = [FRONTIER_BEGIN, "",
           f"Measured by `rankedit run examples/organism-frontier.yaml -o out/frontier` on {report['date']}, "
           f"{m['cpu']} ({m['cores']} cores, torch {m['torch']}), in {report['timings_s']['total'] / 60:.0f} min "
           f"(scores cached by an earlier run are reused, and the time counts only what this run computed); the small organism, seed 0, "
           f"{report['scores']['base'][task]['n']} problems per task. Size: the bytes of each edit's smallest "
           "faithful artifact, and their ratio to the bf16 ΔW of the same matrices. R on "
           f"`{task}` with its 95% paired-bootstrap interval; forgetting on `{ctl}` in points lost (s_base − s; higher is worse). Pareto: no other "
           "edit is as small with R as high, one of them strictly (point estimates).", "",
           f"| edit | keeps | bytes | × bf16 ΔW | R {task} | forgetting {ctl} | Pareto |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["forgetting"].get(ctl) if ctl else None
        name = r["edit"] + (f" (control of {r['control_of']})" if r["control"] else "")
        out.append(f"| {name} | {keeps[r['edit']].replace('|', chr(92) + '|')} | {r['storage_bytes']:,} | {r['storage_ratio']:.3g} | "
                   + (_r(r["retention"], r["ci_low"], r["ci_high"]) if r["retention"] is not None else "undefined")
                   + " | " + (_r(f["value"], f["ci_low"], f["ci_high"], pct=True) if f else "–")
                   + " | " + ("**yes**" if r["pareto"] else "no") + " |")
    out += ["", f"The smallest edit keeping at least 95% of the gain: {_smallest(rows, 0.95, 'retention')} on the "
            f"point estimate; {_smallest(rows, 0.95, 'ci_low')} on the interval's lower bound.", "", FRONTIER_END]
    return "\n".join(out)


def _measured(report: dict, plan: str) -> str:
    m = report["machine"]
    return (f"Measured by `rankedit run examples/{plan}.yaml -o out/{plan.removeprefix('organism-')}` on "
            f"{report['date']}, {m['cpu']} ({m['cores']} cores, torch {m['torch']}), in "
            f"{report['timings_s']['total'] / 60:.0f} min (what an earlier run had cached is reused, and the time "
            "counts only what this run computed)")


def render_compress(doc: dict) -> str:
    """The compress run's section from its compress.json (the small organism, default families)."""
    m, w = doc["machine"], doc["winner"]
    task = doc["judged_tasks"][0]
    fams = ", ".join(doc["families"])
    out = [COMPRESS_BEGIN, "",
           f"`rankedit compress --organism small --keep {doc['keep']:g} -o out/compress` on {doc['date']}, "
           f"{m['cpu']} ({m['cores']} cores, torch {m['torch']}), in {doc['timings_s']['total'] / 60:.1f} min (scores "
           f"cached by an earlier search are reused); families {fams}; target: R ≥ {doc['keep']:g} on the "
           f"{'point estimate' if doc['target'] == 'point' else 'lower bound of the 95% interval'}, judged on "
           + ", ".join(f"{t} ({doc['tuned_gain'][t]['n']} problems)" for t in doc["judged_tasks"]) + ".", "",
           f"| family | candidates: budget, × bf16 ΔW, R on {task} | smallest meeting the target |", "|---|---|---|"]
    for name, f in doc["families"].items():
        tried = sorted((c for c in doc["candidates"] if c["family"] == name), key=lambda c: c["stored_bytes"])
        cells = "; ".join(f"{c['label'].removeprefix(name).strip() or name} ({c['bytes_ratio']:.3g}) "
                          f"{_r(c['retention'][task]['value'])}" for c in tried)
        out.append(f"| {name} | {cells} | {f['winner_label'] or 'none'} |")
    if w is None:
        out += ["", "No candidate met the target."]
    else:
        r = w["retention"][task]
        out += ["", f"Winner: **{w['label']}**, written as a {w['artifact']['kind']} artifact of "
                f"{w['stored_bytes']:,} bytes = {w['bytes_ratio']:.3g} × the bf16 ΔW; R on `{task}` "
                f"{_r(r['value'], r['ci_low'], r['ci_high'])}."]
    e = doc.get("exact_patch")  # compress.json from before compress measured the exact patch has none
    if e:
        out[-1] += (f" The lossless point, the exact patch (`rankedit patch`, R = 1 by construction: the tuned "
                    f"model's own scores), is {e['stored_bytes']:,} bytes = {e['bytes_ratio']:.3g} × the bf16 ΔW"
                    + (f", {e['stored_bytes'] / w['stored_bytes']:.3g} × the winner's." if w else "."))
    out += ["", COMPRESS_END]
    return "\n".join(out)


def render_trajectory(report: dict) -> str:
    """Early stopping by extrapolation and the trajectory's linearity (examples/organism-trajectory.yaml)."""
    control = set(report["control_tasks"])
    task = next(t for t in report["tasks"] if t not in control)
    es, traj = report["early_stop"], report["trajectory"]
    rows = {r["edit"]: r for r in report["rows"] if r["task"] == task}
    modes = list(dict.fromkeys(r["mode"] for r in es["rows"]))
    fs = sorted({r["f"] for r in es["rows"]})
    cell = {(r["mode"], r["f"]): r for r in es["rows"]}
    out = [TRAJECTORY_BEGIN, "", _measured(report, "organism-trajectory") + f"; the small organism, seed 0, "
           f"{report['scores']['base'][task]['n']} problems per task. Per window fraction f (the checkpoints up to "
           f"f of training; `last` is the window's last checkpoint used as it is): weight error to the final "
           f"checkpoint (‖W − W_T‖_F / ‖W_T − W_0‖_F), then R on `{task}` with its 95% paired-bootstrap interval.",
           "", "| mode | " + " | ".join(f"f = {f:g}" for f in fs) + " |", "|---|" + "---|" * len(fs)]
    for mode in modes:
        cells = []
        for f in fs:
            c = cell.get((mode, f))
            r = rows.get(c["edit"]) if c else None
            cells.append("–" if c is None else f"{c['weight_error']:.2f}; R " + (
                _r(r["retention"], r["ci_low"], r["ci_high"]) if r and r["retention"] is not None else "undefined"))
        out.append(f"| {mode} | " + " | ".join(cells) + " |")
    sp = es["speedup"]
    best = sp.get("extrapolated_mode")
    out += ["", f"Smallest f keeping ≥ {sp['keep']:.0%} of the gain (point estimate): the plain checkpoint "
            f"{sp['plain'] if sp['plain'] is not None else 'none'}; "
            + "; ".join(f"{m} {v if v is not None else 'none'}" for m, v in sp["modes"].items())
            + (f" (best extrapolation: {best})." if best else ".")]
    a, w = traj["a_final_linearity_mean"], traj["dw_linearity_whole"]
    nid = traj["not_identifiable"]
    out += ["", f"Linearity over the run's {traj['n_steps']} checkpoints ({traj['n_matrices']} matrices), R² of a "
            f"line in t beside its nulls: a(t) on the final direction {a['r2']:.3f} (shuffled steps "
            f"{a['r2_shuffled']:.3f}, Gaussian vectors {a['r2_random']:.3f}, random walk {a['r2_walk']:.3f}); the "
            f"whole update {w['r2']:.3f} (shuffled {w['r2_shuffled']:.3f}, Gaussian {w['r2_random']:.3f}, random "
            f"walk {w['r2_walk']:.3f}). {nid['pairs']} of {nid['of']} (matrix, step) pairs have a top direction "
            "too close to tied to be identified."]
    if traj.get("patches"):  # reports from before the trajectory measured exact patches have none
        s = patch_sentence(traj["patches"])
        out[-1] += f" As {s[0].lower()}{s[1:]}."
    out += ["", TRAJECTORY_END]
    return "\n".join(out)


def render_behaviour(report: dict) -> str:
    """The behaviour section from a sampled one-run report with KL (examples/organism-behaviour.yaml)."""
    control = set(report["control_tasks"])
    task = next(t for t in report["tasks"] if t not in control)
    ctl = next((t for t in report["tasks"] if t in control), None)
    smp, pk = report["sampling"], report["pass_at_k"][task]
    n = pk["n"]
    ks = [k for k in (1, 4, 16, n) if k <= n]
    out = [BEHAVIOUR_BEGIN, "", _measured(report, "organism-behaviour") + f"; the small organism, seed 0, "
           f"{pk['problems']} problems per task, n = {n} samples each (temperature {smp['temperature']:g}, top_p "
           f"{smp['top_p']:g}, seed {smp['seed']}). pass@k: the unbiased estimator, 95% bootstrap interval over "
           "problems; \"crosses base\": the first k where the model's lead over base (or its deficit) reverses.", "",
           f"pass@k on `{task}`:", "", "| model | " + " | ".join(f"pass@{k}" for k in ks) + f" | maj@{n} | crosses base at k |",
           "|---|" + "---|" * (len(ks) + 2)]
    for label, c in pk["models"].items():
        cells = [_r(c["value"][k - 1], c["ci_low"][k - 1], c["ci_high"][k - 1]) for k in ks]
        cross = c.get("crosses_base_at")
        out.append(f"| {label} | " + " | ".join(cells) + f" | {c['maj_at_k'][n - 1]:.2f} | "
                   + ("–" if label == "base" else str(cross) if cross else "no") + " |")
    rows = [r for r in report["rows"] if r["task"] == task]
    out += ["", f"Retention on avg@{n} (R with its 95% paired-bootstrap interval): "
            + "; ".join(f"{r['edit']} {_r(r['retention'], r['ci_low'], r['ci_high'])}" for r in rows
                        if r["retention"] is not None) + "."]
    kl = report["kl"]
    st = kl["settings"]
    forget = {r["edit"]: r for r in report["rows"] if r["task"] == ctl}
    refs = {r["model"]: r for r in report["references"] if r["task"] == ctl}
    out += ["", f"KL travelled from the base on the RL task's prompts ({st['prompts']} prompts × {st['samples']} "
            f"samples at temperature 1, at most {st['max_tokens']} tokens), per sequence in nats, Monte Carlo and "
            f"Rao-Blackwellised, against forgetting on `{ctl}` (points lost, s_base − s: higher is worse):", "",
            "| model | KL MC | KL RB | forgetting |", "|---|---|---|---|"]
    for label, k in kl["models"].items():
        f, ref = forget.get(label), refs.get(label)
        if f is not None:
            fc = _r(f["forgetting"], f["forgetting_ci_low"], f["forgetting_ci_high"], pct=True)
        elif ref is not None:  # a reference run holds its gain there: its forgetting is the gain negated
            fc = _r(-ref["gain"], -ref["ci_high"], -ref["ci_low"], pct=True)
        else:
            fc = "+0.0" if label == "base" else "–"
        ps = k["per_sequence"]
        out.append(f"| {label} | {_r(ps['mc']['value'], ps['mc']['ci_low'], ps['mc']['ci_high'])} | "
                   f"{_r(ps['rb']['value'], ps['rb']['ci_low'], ps['rb']['ci_high'])} | {fc} |")
    cmp = report["analysis"]["compare"]
    names = {"tuned": "RL", "sft": "SFT", "sft-matched": "SFT at RL's update size"}
    out += ["", "Propensity share (the part of ‖ΔW‖² that only rescales W0's singular values; mean over matrices): "
            + ", ".join(f"{names.get(k, k)} {v['propensity_share']:.3f}" for k, v in cmp.items()
                        if v.get("propensity_share") is not None) + ".", "", BEHAVIOUR_END]
    return "\n".join(out)


def _row(report: dict, edit: str, task: str) -> dict:
    return next(r for r in report["rows"] if r["edit"] == edit and r["task"] == task)


def _than(a: float, b: float) -> str:
    return "more than" if a > b else "less than" if a < b else "as much as"


def render_headlines(study: dict, frontier: dict, compress: dict, trajectory: dict, behaviour: dict) -> str:
    """The README's five headline findings: every number read from the kept reports, the words around them
    chosen by the numbers (more/less), so a new run rewrites them and nothing is typed by hand."""
    control = set(study["control_tasks"])
    task = next(t for t in study["tasks"] if t not in control)
    runs = list(study["runs"])
    mean = {r["edit"]: r for r in study["rows"] if r["task"] == task}

    def m(edit: str) -> str:
        r = mean[edit]
        return _r(r["mean"], r["ci_low"], r["ci_high"])

    per_run = [mean["rank1"]["per_run"][n]["retention"] for n in runs]
    beats = next(c for c in study["conclusions"] if c["task"] == task and c["claim"].startswith("rank1 keeps more"))
    f1 = next(r for r in frontier["frontier"] if r["edit"] == "rank1" and r["task"] == task)
    w = compress["winner"]
    wr = w["retention"][task]
    n_small, n_all = frontier["scores"]["base"][task]["n"], compress["tuned_gain"][task]["n"]
    sp = trajectory["early_stop"]["speedup"]
    fs = sorted({r["f"] for r in trajectory["early_stop"]["rows"]})
    never = [mode for mode, f in sp["modes"].items() if f is None]
    ctl = next(t for t in behaviour["tasks"] if t in set(behaviour["control_tasks"]))
    kl = {k: v["per_sequence"]["rb"]["value"] for k, v in behaviour["kl"]["models"].items()}
    # forgetting, s_base - s: a reference run holds its gain on the control task, the edit its forgetting
    lost = {r["model"]: -r["gain"] for r in behaviour["references"] if r["task"] == ctl}
    lost["rank1"] = _row(behaviour, "rank1", ctl)["forgetting"]
    sampled = _row(behaviour, "rank1", task)
    n = behaviour["pass_at_k"][task]["n"]
    ex, end = mean["extrapolate-rank1"], mean["window-end"]
    lines = [
        f"1. **Rank 1 keeps R = {m('rank1')} of the RL gain** on `{task}` (mean over {len(runs)} seeds, "
        f"{min(per_run):.2f} to {max(per_run):.2f} per seed): the top singular direction of every matrix's "
        f"update, rescaled to the update's norm. A random direction of the same norm keeps {m('rank1-random')} "
        f"(rank 1 keeps more than it in {beats['holds']} of {beats['runs']} seeds); rank 8 keeps {m('rank8')}.",
        f"2. **{f1['storage_ratio']:.2%} of the bf16 update's bytes keep R = "
        f"{_r(f1['retention'], f1['ci_low'], f1['ci_high'])}:** rank 1 stored as float32 LoRA factors "
        f"({f1['storage_bytes']:,} bytes, {n_small} problems, seed 0). On all {n_all} problems `rankedit "
        f"compress` needs {w['label']} ({w['bytes_ratio']:.2%} of the bf16 ΔW) to keep "
        f"{compress['keep']:.0%}: R = {_r(wr['value'], wr['ci_low'], wr['ci_high'])}.",
        f"3. **The update outside W0's principal subspaces keeps {_than(mean['off-principal']['mean'], mean['principal-only']['mean'])} "
        f"the part inside:** off-principal {m('off-principal')}, principal-only {m('principal-only')} "
        f"(top-16 singular subspaces of each base matrix; mean over {len(runs)} seeds).",
        f"4. **Extrapolating the run's early checkpoints keeps {_than(ex['mean'], end['mean'])} stopping there:** "
        f"{ex['keeps']} keeps {m('extrapolate-rank1')}; {end['keeps'].removesuffix(' (control)')}, "
        f"{m('window-end')}; the linear one {m('extrapolate-linear')}. Over windows of {fs[0]:.0%} to {fs[-1]:.0%} "
        "of training, the "
        f"plain checkpoint keeps {sp['keep']:.0%} from f = {sp['plain'] if sp['plain'] is not None else 'never'}, "
        f"the best extrapolation ({sp.get('extrapolated_mode') or 'none'}) from f = "
        f"{sp['extrapolated'] if sp['extrapolated'] is not None else 'never'}"
        + (f"; {' and '.join(never)} never" if never else "") + ".",
        f"5. **KL travelled and forgetting:** per sequence from the base, RL moved {kl['tuned']:.2f} nats, SFT "
        f"{kl['sft']:.2f} and rank 1 {kl['rank1']:.2f}; their forgetting on `{ctl}` (points lost, s_base − s; "
        f"higher is worse) is {100 * lost['tuned']:+.1f}, {100 * lost['sft']:+.1f} and {100 * lost['rank1']:+.1f}. "
        "Sampled at "
        f"temperature 1 (avg@{n}), rank 1 keeps R = {_r(sampled['retention'], sampled['ci_low'], sampled['ci_high'])}.",
    ]
    return "\n".join([HEADLINES_BEGIN, "", *lines, "", HEADLINES_END])


def kept_headlines() -> str:
    """The headlines from the reports kept in docs/."""
    return render_headlines(**{k: json.loads((ROOT / "docs" / f).read_text()) for k, f in KEPT.items()})


def replace_section(text: str, section: str, begin: str = BEGIN, end: str = END, where: str = "docs/findings.md") -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"{where} has no markers {begin.split()[1]}")
    head, rest = text.split(begin, 1)
    return head + section + rest.split(end, 1)[1]


def _write(path: Path, section: str, begin: str, end: str) -> None:
    path.write_text(replace_section(path.read_text(), section, begin, end, str(path.relative_to(ROOT))))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, nargs="?", help="the study's report.json (`make study`)")
    ap.add_argument("--demo", type=Path, help="a `make demo` report.json to set beside the study (seed 0)")
    ap.add_argument("--frontier", type=Path, help="the report.json of examples/organism-frontier.yaml")
    ap.add_argument("--behaviour", type=Path, help="the report.json of examples/organism-behaviour.yaml")
    ap.add_argument("--compress", type=Path, help="the compress.json of `rankedit compress --organism small`")
    ap.add_argument("--trajectory", type=Path, help="the report.json of examples/organism-trajectory.yaml")
    ap.add_argument("--headlines", action="store_true", help="the README's five headlines, from the reports in docs/")
    ap.add_argument("--write", action="store_true",
                    help="replace the section(s) in docs/findings.md, keep the reports, redo the README's headlines")
    a = ap.parse_args(argv)
    sections = (
            (a.frontier, render_frontier, FRONTIER_BEGIN, FRONTIER_END, "organism-frontier.json"),
            (a.behaviour, render_behaviour, BEHAVIOUR_BEGIN, BEHAVIOUR_END, "organism-behaviour.json"),
            (a.compress, render_compress, COMPRESS_BEGIN, COMPRESS_END, "organism-compress.json"),
            (a.trajectory, render_trajectory, TRAJECTORY_BEGIN, TRAJECTORY_END, "organism-trajectory.json"))
    if not a.report and not a.headlines and not any(given for given, *_ in sections):
        ap.error("give the study's report.json, --frontier, --compress, --trajectory, --behaviour, --headlines, or several")
    for given, render_it, begin, end, doc in sections:
        if given:
            section = render_it(json.loads(given.read_text()))
            if not a.write:
                print(section)
            else:
                _write(FINDINGS_MD, section, begin, end)
                shutil.copyfile(given, ROOT / "docs" / doc)
                print(f"docs/findings.md {doc.removesuffix('.json')} written from {given}", file=sys.stderr)
    if a.report:
        report = json.loads(a.report.read_text())
        demo = json.loads(a.demo.read_text()) if a.demo else None
        section = render(report, demo)
        if not a.write:
            print(section)
        else:
            _write(FINDINGS_MD, section, BEGIN, END)
            shutil.copyfile(a.report, ROOT / "docs" / "organism-study.json")
            if a.demo:
                shutil.copyfile(a.demo, ROOT / "docs" / "organism-demo.json")
            print(f"docs/findings.md findings written from {a.report}", file=sys.stderr)
    if a.write:  # the kept reports may have changed: the headlines follow them
        _write(README, kept_headlines(), HEADLINES_BEGIN, HEADLINES_END)
        print("README.md headlines written from the reports in docs/", file=sys.stderr)
    elif a.headlines:
        print(kept_headlines())


if __name__ == "__main__":
    main()
