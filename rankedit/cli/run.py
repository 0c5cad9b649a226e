"""`rankedit run [PLAN.yaml] -o OUT`: edits, analysis, scores and a retention report in one command."""

from __future__ import annotations
from rankedit.core.names import REPORT_MD

import click

from rankedit.core.figure_list import with_figures
from rankedit.cli.quiet import quiet_option, result
from rankedit.core.names import OVERWRITE_HELP


@click.command("run")
@click.argument("plan", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--out", default="out/run", show_default=True, type=click.Path(file_okay=False),
              help="Output directory; rerunning into it does only the missing work.")
@quiet_option()
@click.option("--overwrite", is_flag=True,
              help=OVERWRITE_HELP)
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Where edits and scorings run (default: the plan's 'executor', else local): "
                   "ray makes each a Ray task (pip install 'rankedit[ray]').")
@click.option("--address", default=None, metavar="ADDR",
              help="The Ray cluster: 'auto' (started with `ray start --head`) or ray://HOST:10001; "
                   "default: a Ray instance of this machine.")
def run(plan, out, quiet, overwrite, executor, address):
    """Build every edit of PLAN, analyse the updates, score everything and report gain retention.

    PLAN is a YAML file, or the name of one of rankedit's example plans
    (organism, organism-micro, organism-seeds, organism-behaviour, organism-frontier,
    organism-merge, organism-trajectory, deepscaler, qwen-math-grpo; the files are
    in examples/ and installed with the package); without it, organism runs:
    the embedded model organism (built once, then reused), every edit family
    with its control, scored on the organism suite (organism-micro when
    RANKEDIT_ORGANISM_SIZE=micro). A plan with several runs (organism seeds, or
    `runs:`) writes each to OUT/runs/NAME and the across-run report to OUT.

    \b
    OUT/edits/NAME/      each edited checkpoint (with rankedit_edit.json)
    OUT/analysis/RUN/    metrics.jsonl, summary.json and heatmaps of each update
    OUT/scores/          lm-eval results and per-problem samples of every model
    OUT/report.md        three findings with their intervals, then tables: edit, what it keeps,
                         scores, retention [95% CI], forgetting (points lost on the control task)
    OUT/report.html      the same as one page for a browser: figures embedded and
                         captioned, tables sorted by a click on a column
    OUT/report.json      scores (model -> task -> value, stderr, n) and rows (edit, task,
                         score, retention, ci_low, ci_high, forgetting)

    \b
    Figures (each captioned in docs/figures.md; RUN: tuned, sft, sft-matched, ...):
    {figures}

    Every step is cached (edits by manifest, analysis by input hashes, scores by
    model and task hashes): an interrupted run resumes, a finished one reruns in
    seconds. With --executor ray, edits and scorings run as Ray tasks on workers
    that must see the same paths (OUT, checkpoints, the rankedit cache).
    """
    from pathlib import Path

    from rankedit.pipeline.run import run as run_pipeline

    report = run_pipeline(plan, out, quiet=quiet, overwrite=overwrite, executor=executor, address=address,
                          on_stage=None if quiet else (lambda s: click.echo(f"== {s}", err=True)))
    if not quiet:
        click.echo((Path(out) / REPORT_MD).read_text())
    n = len(report["edits"])
    result(quiet, out, f"{n} edits scored on {', '.join(report['tasks'])}; report in {Path(out) / 'report.md'} "
                       f"and {Path(out) / 'report.json'}")


run.help = with_figures(run.help, "run")
