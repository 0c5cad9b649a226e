"""``rankedit run``: from a base and its tuned run to a report of what each edit keeps.

The recipe, in order (each step is a tested component; each is skipped when its
result is already there, so an interrupted run resumes where it stopped):

1. resolve the models: the plan's paths, or the embedded organism (built or reused);
2. build every edit into OUT/edits/NAME (skipped when its manifest records the
   same method, parameters and input hashes);
3. analyse the updates (tuned, SFT, and SFT at RL's update size) into OUT/analysis/;
4. score base, tuned, SFT and every edit with lm-eval (cached per model);
5. write OUT/report.json, OUT/report.md and the figures, and copy each edit's
   scores and analysis next to it for ``rankedit push``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from rankedit.files.atomic import atomic_write_text
from rankedit.files.inventory import register
from rankedit.core import base_decomp
from rankedit.core.errors import RankeditError
from rankedit.core.executors import LocalExecutor, make_executor
from rankedit.pipeline.scoring_options import score_options
from rankedit.pipeline.plan import EditSpec, Plan, load_plan, split_runs, with_executor
from rankedit.pipeline.requirements import check_requirements
from rankedit.core.resources import shipped_dir
from rankedit.pipeline.models import Models, model_labels, resolve_models
from rankedit.pipeline.early_stop_stage import DEFAULT_EXTRAPOLATE_FRACTION, fill_accuracies, score_window_checkpoints, window
from rankedit.pipeline.trajectory_stage import run_trajectory
from rankedit.pipeline.progress import say
from rankedit.pipeline.run_outputs import write_html, write_report
from rankedit.pipeline.kl_stage import run_kl
from rankedit.pipeline.interference_stage import run_interference
from rankedit.core.names import ANALYSIS_SUMMARY, REPORT_JSON, REPORT_MD
from tqdm.auto import tqdm
from rankedit.analysis.analyze import analyze, update_size
from rankedit.core import machine
from rankedit.edits import get_edit, plan_edit, read_manifest
from rankedit.edits.build import build_edit, is_built
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.hashes import checkpoint_sha256
from rankedit.files.outdir import check_inputs, check_replace, claim_dir
from rankedit.report.run_figures import runs_plots
from rankedit.report.several_runs import across_report, markdown_runs
from rankedit.scoring.data_dir import with_data_dir
from rankedit.scoring.failures import ScoringFailed
from rankedit.scoring.profiles import resolve
from rankedit.scoring import score as scoring
from rankedit.scoring.suites import custom_suite, get_suite
from rankedit.scoring.lm_eval_tasks import task_manager

DEFAULT_PLAN = shipped_dir("examples") / "organism.yaml"
# RANKEDIT_ORGANISM_SIZE=micro makes every default use the seconds-scale organism (CI, the README's doc test)
SIZE_ENV = "RANKEDIT_ORGANISM_SIZE"
DEFAULT_PLANS = {"small": DEFAULT_PLAN, "micro": shipped_dir("examples") / "organism-micro.yaml"}


def default_plan() -> Path:
    """The plan ``rankedit run`` runs without PLAN: the organism's, at $RANKEDIT_ORGANISM_SIZE (small)."""
    size = os.environ.get(SIZE_ENV) or "small"
    if size not in DEFAULT_PLANS:
        raise RankeditError(f"{SIZE_ENV}={size!r}: choose one of {', '.join(DEFAULT_PLANS)}")
    return DEFAULT_PLANS[size]


# ---- 1. models: rankedit.pipeline.models ---------------------------------------------------
# ---- 2. edits -----------------------------------------------------------------------------
def edit_inputs(e: EditSpec, models: Models) -> tuple[str | list[str], dict]:
    """The tuned input(s) and full parameters of an edit, with the plan's defaults filled in."""
    params = dict(e.params)
    if e.runs is not None:  # a merge: the plan's runs it merges, in order
        return [models.role(r) for r in e.runs], params
    final, ckpts = models.run(e.of)
    if get_edit(e.method).inputs == "run":
        if "steps" in params:
            raise RankeditError(f"edit {e.name}: give 'checkpoints: FRACTION' in the plan, not params.steps")
        if len(ckpts) < 2:
            raise RankeditError(f"edit {e.name}: extrapolation needs at least two checkpoints of the {e.of} run")
        used = window(e, ckpts)
        if len(used) < 2:
            frac = e.checkpoints or DEFAULT_EXTRAPOLATE_FRACTION
            raise RankeditError(f"edit {e.name}: only {len(used)} checkpoint(s) up to {frac:.0%} of training "
                                f"(steps {[s for s, _ in ckpts]}); raise 'checkpoints'")
        params["steps"] = [s for s, _ in used]
        params.setdefault("target_step", ckpts[-1][0])
        if params.get("mode") == "alpharl":
            fill_accuracies(e, params, models)
        return [p for _, p in used], params
    if params.get("source") == "from" and "mask_from" not in params:
        if models.other_tuned is None:
            raise RankeditError(f"edit {e.name}: mask source 'from' needs 'other_tuned' in the plan")
        other = models.other_tuned if e.of == "tuned" else models.tuned
        params["mask_from"] = other
    return final, params


def plan_edits(plan: Plan, models: Models) -> dict[str, tuple]:
    """Validate every edit against the real checkpoints before building any."""
    plans = {}
    for e in plan.builds:
        tuned, params = edit_inputs(e, models)
        try:
            plans[e.name] = (plan_edit(e.method, models.base, tuned, **params), tuned, params)
        except RankeditError as err:
            raise RankeditError(f"edit {e.name}: {err}") from None
    return plans


def build_edits(plan: Plan, plans: dict[str, tuple], out: Path, quiet: bool = False, overwrite: bool = False,
                executor: LocalExecutor | None = None) -> dict[str, dict]:
    """Build (or reuse) every edit; returns name -> {path, params, manifest summary and matrices, built: bool}."""
    todo = [e for e in plan.builds if not is_built(plans[e.name][0], out / "edits" / e.name, e.dtype)]
    bar = tqdm(total=len(todo), desc="edits", unit="edit", disable=quiet or not todo)
    items = [(e.method, str(plans[e.name][0].base.path), plans[e.name][1], plans[e.name][2],
              str(out / "edits" / e.name), plan.device, overwrite, e.dtype) for e in todo]
    ex = plan.executor
    try:  # an edit that cannot be built stops the run, as it always has (the finished ones stay for a resume)
        (executor or LocalExecutor()).map(_build_one, items, num_cpus=ex.num_cpus_per_task,
                                          num_gpus=ex.num_gpus_per_edit, stop_on=(Exception,),
                                          on_done=lambda i, o: bar.update(1))
    finally:
        bar.close()
    built = {t.name for t in todo}
    done = {}
    for e in plan.builds:
        path = out / "edits" / e.name
        man = read_manifest(path)
        done[e.name] = {"path": str(path), "params": man["params"], "summary": man["summary"],
                         "matrices": man["matrices"], "built": e.name in built}
    return done


def _build_one(method: str, base: str, tuned, params: dict, path: str, device: str, overwrite: bool,
               dtype: str = "source") -> str:
    """One edit build (an executor task): plans again from the paths, so that it runs on any worker."""
    return str(build_edit(method, base, tuned, path, device=device, overwrite=overwrite, dtype=dtype, **params))


# ---- 3. analysis --------------------------------------------------------------------------
def _analysis_key(base: str, tuned: str, other: str | None, k: int) -> dict:
    sha = {role: checkpoint_sha256(Checkpoint(p)) for role, p in (("base", base), ("tuned", tuned), ("other", other)) if p}
    return {"k": k, "sha256": sha}


def _analyze_once(name: str, base: str, tuned: str, other: str | None, plan: Plan, out: Path, quiet: bool,
                  overwrite: bool = False, source=lambda p: p) -> dict:
    folder, key_file = out / "analysis" / name, out / "analysis" / f"{name}.key.json"
    key = _analysis_key(base, tuned, other, plan.analyze.k)
    if not ((folder / ANALYSIS_SUMMARY).is_file() and key_file.is_file() and json.loads(key_file.read_text()) == key):
        say(f"analyze: {name}", quiet)
        # a LoRA-trained run is analysed from its adapter (``source``): ΔW = scale·B·A exactly, rank <= r
        analyze(base, source(tuned), folder, other_tuned=source(other), k=plan.analyze.k, device=plan.analyze.device,
                progress=not quiet, overwrite=overwrite)
        atomic_write_text(key_file, json.dumps(key, indent=1) + "\n")
    return json.loads((folder / ANALYSIS_SUMMARY).read_text())


def run_analysis(plan: Plan, models: Models, out: Path, quiet: bool = False,
                 overwrite: bool = False) -> tuple[dict, dict]:
    """Summaries of the tuned update, the SFT update, and the SFT checkpoint matched to RL's update size."""
    if not plan.analyze.enabled:
        return {}, {}
    summaries, notes = {}, {}
    summaries["tuned"] = _analyze_once("tuned", models.base, models.tuned, models.other_tuned, plan, out, quiet,
                                       overwrite, models.source)
    if models.sft:
        summaries["sft"] = _analyze_once("sft", models.base, models.sft, None, plan, out, quiet, overwrite,
                                         models.source)
        if plan.analyze.matched_sft and models.sft_checkpoints:
            target = summaries["tuned"]["mean"]["rel_update_norm"]
            sizes = [(abs(update_size(models.base, p) - target), s, p) for s, p in models.sft_checkpoints]
            _, step, path = min(sizes)
            summaries["sft-matched"] = _analyze_once("sft-matched", models.base, path, None, plan, out, quiet,
                                                     overwrite, models.source)
            notes["sft-matched"] = f"step {step}"
    return summaries, notes


# ---- 4. scoring ---------------------------------------------------------------------------
def run_scoring(plan: Plan, models: Models, edits: dict[str, dict], out: Path, quiet: bool = False,
                overwrite: bool = False, executor: LocalExecutor | None = None):
    """Score every model; returns (ScoreResult, failures). One model's failure keeps the others."""
    labels = model_labels(plan, models, edits)
    bar = tqdm(total=len(labels), desc="score", unit="model", disable=quiet)

    def on_model(label, scores, error):
        bar.set_postfix_str(f"{label}: {'cached' if scores is not None and scores.cached else error or 'done'}"[:60])
        bar.update(1)

    try:
        result = scoring.score(labels, out=out / "scores", on_model=on_model, overwrite=overwrite, executor=executor,
                       **score_options(plan))
    except ScoringFailed as e:
        result = e.result
    finally:
        bar.close()
    return result, dict(result.failures)


# ---- 5. report: rankedit.pipeline.run_outputs (written by the driver alone, atomically) ----------------


def check_tasks(plan: Plan) -> None:
    """Unknown suite or task names fail before anything is built."""
    s = plan.score
    st = get_suite(s.suite) if s.suite is not None else custom_suite(s.tasks, s.include_paths)
    resolve(st.profiles, s.profile, samples=s.samples, temperature=s.temperature, top_p=s.top_p, seed=s.seed)
    task_manager(st)
    if s.data_dir:  # a missing local copy fails now, not after the edits

        with_data_dir(st, s.data_dir)


# ---- the whole run ------------------------------------------------------------------------
def run(plan: Plan | str | os.PathLike | None = None, out: str | os.PathLike = "out/run", *, quiet: bool = False,
        on_stage: Callable[[str], None] | None = None, overwrite: bool = False, executor: str | None = None,
        address: str | None = None) -> dict:
    """Run a plan (a Plan, a YAML path, or None for the organism's: ``default_plan()``); returns the report dict.

    A plan with several runs (organism ``seeds`` or ``runs``) runs each into
    OUT/runs/NAME/ (a complete report of its own) and writes the across-run
    report to OUT. Raises RankeditError on bad input before any heavy work, and
    at the end when some model could not be scored (the report of the others
    is written first). OUT is created only once every input checked out. An
    existing OUT is resumed when it is an earlier run's and holds nothing else
    (``rankedit.files.outdir``); a folder holding a user's files is never used, and
    ``overwrite`` only lets a run replace another rankedit output. ``executor`` ("local" or "ray") and ``address``
    (a Ray cluster) override the plan's ``executor``.
    """
    plan_file = None
    if plan is None:
        plan = default_plan()
    source = "plan"
    if not isinstance(plan, Plan):
        plan_file, source = plan, str(plan)
        plan = load_plan(plan)
    plan = with_executor(plan, executor, address)
    out = Path(out).absolute()
    parts = split_runs(plan)
    given = [plan_file, *plan.score.include_paths, *([plan.score.data_dir] if plan.score.data_dir else []),
             *([plan.kl.prompts_file] if plan.kl and plan.kl.prompts_file else []),
             *(p for _, sub in parts for p in (sub.base, sub.tuned, sub.other_tuned, sub.sft))]
    check_inputs(out, given)
    check_replace(out, "run", overwrite, resume=True)
    check_requirements(plan, source)  # backend installed, devices present: before anything is written
    check_tasks(plan)
    with make_executor(plan.executor) as ex:
        if len(parts) == 1:
            report, _, failures = run_one(parts[0][1], out, given, quiet=quiet, on_stage=on_stage,
                                          overwrite=overwrite, executor=ex)
        else:
            report, failures = run_several(plan, parts, out, given, quiet=quiet, on_stage=on_stage,
                                           overwrite=overwrite, executor=ex)
    if failures:
        msg = "; ".join(f"{k}: {v}" for k, v in failures.items())
        raise RankeditError(f"{len(failures)} model(s) could not be scored ({msg}); the report of the others is in {out}")
    return report


def run_one(plan: Plan, out: Path, given: list, *, quiet: bool = False,
            on_stage: Callable[[str], None] | None = None, overwrite: bool = False,
            executor: LocalExecutor | None = None):
    """One run of a plan into ``out``: (report dict, ScoreResult, failures)."""
    timings, t0 = {}, time.time()

    def stage(name, fn, *a):
        if on_stage:
            on_stage(name)
        t = time.time()
        r = fn(*a)
        timings[name] = round(time.time() - t, 1)
        return r

    models = stage("models", resolve_models, plan, quiet)
    check_inputs(out, models.paths())
    plans = plan_edits(plan, models)
    claim_dir(out, "run", given, overwrite)  # only now: bad input leaves no OUT behind
    if any(models.run(e.of)[0] not in models.accuracies for e in plan.builds if e.params.get("mode") == "alpharl"):
        stage("checkpoint scores", score_window_checkpoints, plan, models, quiet, executor)
        plans = plan_edits(plan, models)  # alpharl's accuracies are now the scores
    with base_decomp.one_run():  # the analysis decomposes each W0; later analyses and the edits take it
        summaries, notes = stage("analysis", run_analysis, plan, models, out, quiet, overwrite)
        edits = stage("edits", build_edits, plan, plans, out, quiet, overwrite, executor)
    interference = stage("interference", run_interference, plan, models, out, quiet, overwrite)
    trajectory = stage("trajectory", run_trajectory, plan, models, out, quiet, overwrite)
    result, failures = stage("scoring", run_scoring, plan, models, edits, out, quiet, overwrite, executor)
    kl = stage("kl", run_kl, plan, models, edits, quiet) if plan.kl is not None else None
    timings["total"] = round(time.time() - t0, 1)
    report = write_report(plan, models, edits, result, failures, summaries, notes, out, timings, kl, trajectory,
                          interference)
    return report, result, failures


def run_several(plan: Plan, parts: list[tuple[str, Plan]], out: Path, given: list, *, quiet: bool = False,
                on_stage: Callable[[str], None] | None = None, overwrite: bool = False,
                executor: LocalExecutor | None = None) -> tuple[dict, dict]:
    """Every run into OUT/runs/NAME, one after another, then the across-run report in OUT."""
    claim_dir(out, "run", given, overwrite)
    t0 = time.time()
    reports, results, failures = {}, {}, {}
    for name, sub in parts:
        say(f"run {name} ({len(reports) + 1}/{len(parts)})", quiet)
        reports[name], results[name], f = run_one(
            sub, out / "runs" / name, given, quiet=quiet, overwrite=overwrite, executor=executor,
            on_stage=(lambda s, n=name: on_stage(f"{n}: {s}")) if on_stage else None)
        failures.update({f"{name}/{k}": v for k, v in f.items()})
    report = across_report(plan, reports, results, n_boot=plan.score.n_boot)
    report["machine"] = machine.describe()
    report["date"] = time.strftime("%Y-%m-%d", time.gmtime())
    report["failures"] = failures
    report["timings_s"] = {"total": round(time.time() - t0, 1),
                           **{name: r["timings_s"] for name, r in reports.items()}}
    report["figures"] = runs_plots(report, out)
    register(*(out / f for f in report["figures"]))
    atomic_write_text(out / REPORT_JSON, json.dumps(report, indent=2, allow_nan=False) + "\n")
    md = markdown_runs(report)
    atomic_write_text(out / REPORT_MD, md)
    write_html(out, md, report["figures"], report["name"])
    return report, failures
