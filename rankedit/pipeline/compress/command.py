"""``rankedit compress``: the smallest edit of each family that keeps a target share of the RL gain.

The recipe:

1. resolve the models as ``rankedit run`` does (BASE and TUNED, or the embedded organism);
2. score base and tuned (lm-eval, cached); the judged tasks are the trained (not control) tasks
   on which the tuned gain is significant: retention is undefined elsewhere;
3. for each family, bisect its budget grid (``rankedit.pipeline.compress.bisect``) for the smallest budget
   whose retention meets ``keep`` on every judged task, on the point estimate or on the 95%
   interval's lower bound (``target``); each candidate is built and scored once, ever
   (``rankedit.pipeline.compress.candidates``);
4. the winner is the smallest (in stored bytes) of the families' smallest meeting candidates; its
   artifact is written to OUT/artifact (``rankedit.edits.artifact``), the search to
   OUT/compress.json, OUT/compress.md and OUT/frontier.png.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from rankedit.core import machine
from rankedit.core.errors import RankeditError
from rankedit.core.option_rules import check_value, default
from rankedit.pipeline.compress.bisect import TARGETS, smallest_meeting
from rankedit.pipeline.compress.candidates import Scorer, candidate, per_problem
from rankedit.pipeline.compress.budgets import Family, families as pick_families
from rankedit.pipeline.compress.compress_options import CompressOptions
from rankedit.pipeline.progress import say
from rankedit.scoring import retention as ev
from tqdm.auto import tqdm
from rankedit.edits.artifact import write_artifact
from rankedit.edits.build import plan_edit
from rankedit.files.outdir import check_inputs, check_replace, claim_dir
from rankedit.pipeline.compress.writing import write_outputs
from rankedit.pipeline.models import resolve_models
from rankedit.pipeline.plan import parse_plan
from rankedit.pipeline.requirements import check_requirements
from rankedit.pipeline.run import check_tasks
from rankedit.report.rows import per_sample
from rankedit.scoring import score as scoring
from rankedit.files.patch import patch_size

ARTIFACT = "artifact"


def _plan(base, tuned, organism, seed, suite, tasks, include_paths, limit, batch_size, device, dtype, n_boot):
    if organism is None and (base is None or tuned is None):
        raise RankeditError("give BASE and TUNED, or --organism micro|small")
    if organism is not None and (base is not None or tuned is not None):
        raise RankeditError("give either BASE and TUNED or --organism, not both")
    if suite is None and not tasks:
        if organism is None:
            raise RankeditError("give the tasks that hold the gain: --suite NAME or --tasks T1,T2")
        suite = "organism"
    data = {"name": "rankedit compress", "analyze": {"enabled": False},
            "score": {"suite": suite, "tasks": list(tasks) if tasks else None, "limit": limit,
                      "include_paths": [str(p) for p in include_paths], "batch_size": batch_size,
                      "device": device, "dtype": dtype, "n_boot": n_boot}}
    if organism is not None:
        data["organism"] = {"size": organism, "seed": seed}
    else:
        data.update(base=str(base), tuned=str(tuned))
    return parse_plan(data, "compress")


def _scorer(plan, models, quiet: bool):
    """Score base and tuned; return (Scorer for the candidates, the ScoreResult of base and tuned)."""
    s = plan.score

    def run(labels: dict):
        return scoring.score(labels, suite=s.suite, tasks=s.tasks, backend=s.backend, batch_size=s.batch_size,
                     limit=s.limit, device=s.device, dtype=s.dtype, max_gen_toks=s.max_gen_toks,
                     apply_chat_template=s.apply_chat_template, num_fewshot=s.num_fewshot,
                     include_paths=s.include_paths)

    say("score: base and tuned", quiet)
    ref = run({"base": models.base, "tuned": models.tuned})
    metrics = {t: ref.primary_metric(t) for t in ref.tasks}
    return Scorer(lambda label, path: run({label: path}), ref.models["base"].key, ref.models["tuned"].sha256,
                  metrics), ref


def _judged_tasks(ref, metrics: dict, n_boot: int) -> tuple[list[str], dict]:
    """The trained tasks with a significant tuned gain, and every trained task's gain."""
    control = set(ref.suite.control_tasks)
    gains, judged = {}, []
    for task in (t for t in ref.tasks if t not in control):
        b, t_ = per_sample(ref, "base", task, metrics[task]), per_sample(ref, "tuned", task, metrics[task])
        if b is None or t_ is None:
            continue
        _, arr = ev.align({"base": b, "tuned": t_})
        g = ev.gain(arr["base"], arr["tuned"], n_boot=n_boot)
        gains[task] = {"value": g.value, "ci_low": g.ci_low, "ci_high": g.ci_high, "n": len(arr["base"])}
        if g.ci_low > 0:
            judged.append(task)
    if not judged:
        told = "; ".join(f"{t}: {100 * g['value']:+.1f} points [{100 * g['ci_low']:+.1f}, {100 * g['ci_high']:+.1f}]"
                         for t, g in gains.items()) or "no trained task was scored"
        raise RankeditError(f"the tuned model's gain over base is not significant on any trained task ({told}); "
                            "there is no gain to keep (score more problems, or check the tasks)")
    return judged, gains


def _none(x) -> Optional[float]:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _rate(rec: dict, ref, metrics: dict, judged: list[str], n_boot: int) -> dict:
    """Retention on each judged task and forgetting on each control task, with their intervals."""
    out = {"retention": {}, "forgetting": {}}
    for task in list(judged) + [t for t in ref.suite.control_tasks if t in metrics]:
        e = per_problem(rec, task)
        b = per_sample(ref, "base", task, metrics[task])
        if e is None or b is None:
            continue
        if task in judged:
            _, arr = ev.align({"base": b, "tuned": per_sample(ref, "tuned", task, metrics[task]), "edit": e})
            r = ev.retention(arr["base"], arr["tuned"], arr["edit"], n_boot=n_boot)
            out["retention"][task] = {"value": _none(r.value), "ci_low": _none(r.ci_low), "ci_high": _none(r.ci_high),
                                      "gain": r.gain_edit.value}
        else:
            _, arr = ev.align({"base": b, "edit": e})
            f = ev.forgetting(arr["base"], arr["edit"], n_boot=n_boot)
            out["forgetting"][task] = {"value": f.value, "ci_low": f.ci_low, "ci_high": f.ci_high}
    vals = [out["retention"].get(t, {}).get("value") for t in judged]
    lows = [out["retention"].get(t, {}).get("ci_low") for t in judged]
    # the worst judged task decides: the budget must keep the gain everywhere it is measured
    out["criterion"] = {"value": None if None in vals else min(vals), "ci_low": None if None in lows else min(lows)}
    return out


def _search(fam: Family, short: int, models, scorer: Scorer, ref, judged, keep, target, max_evals, n_boot,
            build_device, quiet) -> tuple[dict, list[dict]]:
    grid = fam.grid(short)
    rows: list[dict] = []
    bar = tqdm(total=min(max_evals, len(grid)), desc=fam.name, unit="cand", disable=quiet)

    def evaluate(budget):
        label = f"{fam.name} {fam.label(budget)}" if not fam.fixed else fam.name
        rec = candidate(fam.name, fam.params(budget), models.base, models.tuned, scorer, label, build_device)
        row = {"family": fam.name, "budget": budget, "label": label, "params": rec["params"],
               **rec["size"], "scores": rec["scores"], **_rate(rec, ref, scorer.metrics, judged, n_boot),
               "cached": rec["cached"]}
        rows.append(row)
        c = row["criterion"]
        r = "–" if c["value"] is None else f"{c['value']:.2f}"
        bar.set_postfix_str(f"{fam.label(budget)}: R={r}{' (cached)' if rec['cached'] else ''}"[:60])
        bar.update(1)
        return c["value"], c["ci_low"]

    try:
        s = smallest_meeting(grid, evaluate, keep, target, max_evals)
    finally:
        bar.close()
    for row, p in zip(rows, s.probes):  # one row per probe, in the same order
        row["meets"] = p.meets
        row["family_winner"] = p is s.winner
    summary = {"axis": fam.axis, "fixed": fam.fixed, "grid": [grid[0], grid[-1]] if not fam.fixed else None,
               "grid_size": len(grid), "evaluated": s.evals, "scored_now": sum(not r["cached"] for r in rows),
               "winner": s.winner.budget if s.winner else None,
               "winner_label": next((r["label"] for r in rows if r["family_winner"]), None), "resolved": s.resolved}
    return summary, rows


def compress(base: str | os.PathLike | None = None, tuned: str | os.PathLike | None = None,
             out: str | os.PathLike = "out/compress", *, keep: float = default(CompressOptions, "keep"),
             families: Sequence[str] | None = None, target: str = default(CompressOptions, "target"),
             organism: str | None = default(CompressOptions, "organism"), seed: int = default(CompressOptions, "seed"),
             suite: str | None = default(CompressOptions, "suite"), tasks: Sequence[str] | None = None,
             include_paths: Sequence[str | os.PathLike] = (), limit: int | None = default(CompressOptions, "limit"),
             batch_size: int | str = default(CompressOptions, "batch_size"),
             device: str | None = default(CompressOptions, "device"), dtype: str | None = None,
             build_device: str = default(CompressOptions, "build_device"), n_boot: int = 2000,
             max_candidates: int = default(CompressOptions, "max_candidates"), quiet: bool = False,
             overwrite: bool = False) -> dict:
    """Search each family for its smallest budget keeping ``keep`` of the tuned gain; write the winner.

    ``families``: edit methods among rank-k, rank-auto, mask, dare, sign, sub-rank-1 (default rank-k,
    mask, sign, sub-rank-1). ``target``: "point" (the retention's point estimate meets ``keep``) or
    "lower" (its 95% interval's lower bound does). BASE and TUNED, or ``organism`` ("micro" or "small",
    with ``seed``). ``suite`` or ``tasks`` (with ``include_paths``), ``limit``, ``batch_size``,
    ``device`` and ``dtype`` are the scoring's, as in ``rankedit score``; ``build_device`` is where the
    edits compute their SVDs. At most ``max_candidates`` candidates are scored per family, each once
    ever (cached). Returns the compress.json dict; raises RankeditError on bad input.
    """
    given = {"keep": keep, "seed": seed, "limit": limit, "batch_size": batch_size, "max_candidates": max_candidates}
    for field, value in given.items():
        check_value(CompressOptions, field, value, "--" + field.replace("_", "-"))  # the spec's bounds
    if target not in TARGETS:
        raise RankeditError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    fams = pick_families(families)
    plan = _plan(base, tuned, organism, seed, suite, tasks, include_paths, limit, batch_size, device, dtype, n_boot)
    out = Path(out).absolute()
    t0 = time.time()
    given = [base, tuned, *plan.score.include_paths]
    check_inputs(out, given)
    check_replace(out, "compress", overwrite, resume=True)
    check_requirements(plan, "compress")
    check_tasks(plan)
    models = resolve_models(plan, quiet)
    check_inputs(out, models.paths())
    scorer, ref = _scorer(plan, models, quiet)
    judged, gains = _judged_tasks(ref, scorer.metrics, n_boot)
    short = _short_side(models.base, models.tuned)
    claim_dir(out, "compress", given, overwrite)  # only now: bad input leaves no OUT behind
    summaries, rows = {}, []
    for fam in fams:
        summaries[fam.name], got = _search(fam, short, models, scorer, ref, judged, keep, target, max_candidates,
                                           n_boot, build_device, quiet)
        rows += got
    exact = exact_patch(models, ref, scorer.metrics, judged, gains, n_boot, rows, quiet)
    best = [r for r in rows if r["family_winner"]]
    winner = min(best, key=lambda r: (r["stored_bytes"], -(r["criterion"]["value"] or 0)), default=None)
    artifact = None
    if winner is not None:
        say(f"artifact: {winner['label']}", quiet)
        artifact = write_artifact(models.base, models.tuned, winner["family"], winner["params"], out / ARTIFACT,
                                  device=build_device, progress=not quiet)
    doc = {"keep": keep, "target": target, "models": {"base": models.base, "tuned": models.tuned},
           "suite": ref.suite.name, "tasks": ref.tasks, "judged_tasks": judged, "metrics": scorer.metrics,
           "limit": limit, "n_boot": n_boot, "tuned_gain": gains, "families": summaries, "candidates": rows,
           "winner": None if winner is None else {**winner, "artifact": artifact}, "exact_patch": exact,
           # where, when and how long: README findings quote them (a time counts only what was not cached)
           "machine": machine.describe(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
           "timings_s": {"total": round(time.time() - t0, 1)}}
    write_outputs(doc, out)
    return doc


def exact_patch(models, ref, metrics: dict, judged: list[str], gains: dict, n_boot: int, rows: list[dict],
                quiet: bool) -> dict:
    """The lossless point: TUNED as an exact patch of BASE (``rankedit patch``). Its rebuild is TUNED
    bit for bit, so it is not scored again: its scores are the tuned model's, R = 1 on every judged
    task with the interval [1, 1] (every bootstrap resample of (tuned - base) / (tuned - base) is 1),
    and its forgetting is the tuned model's. Its bytes are the patch's payload (``patch_size``; every
    tensor that changed, embeddings and norms too), its ratio over the same bf16 delta as the candidates'."""
    say("exact patch: measuring its bytes", quiet)
    size = patch_size(models.base, models.tuned)
    forgetting = {}
    for task in [t for t in ref.suite.control_tasks if t in metrics]:
        b, t_ = per_sample(ref, "base", task, metrics[task]), per_sample(ref, "tuned", task, metrics[task])
        if b is None or t_ is None:
            continue
        _, arr = ev.align({"base": b, "edit": t_})
        f = ev.forgetting(arr["base"], arr["edit"], n_boot=n_boot)
        forgetting[task] = {"value": f.value, "ci_low": f.ci_low, "ci_high": f.ci_high}
    delta = next((r["bf16_delta_bytes"] for r in rows if r.get("bf16_delta_bytes")), None)
    return {"family": "exact patch", "label": "exact patch", "scored_as": "tuned",
            "stored_bytes": size["patch_bytes"], "checkpoint_bytes": size["checkpoint_bytes"],
            "checkpoint_ratio": size["patch_bytes"] / size["checkpoint_bytes"] if size["checkpoint_bytes"] else None,
            "bf16_delta_bytes": delta, "bytes_ratio": size["patch_bytes"] / delta if delta else None,
            "encodings": size["encodings"],
            "retention": {t: {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "gain": gains[t]["value"]} for t in judged},
            "forgetting": forgetting, "criterion": {"value": 1.0, "ci_low": 1.0}}


def _short_side(base: str, tuned: str) -> int:
    """The smallest short side of the matrices an edit changes: the largest k rank-k accepts."""
    p = plan_edit("rank-k", base, tuned, k=1)
    return min(min(p.shape(n)) for n in p.matrices)
