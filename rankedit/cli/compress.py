"""`rankedit compress BASE TUNED --keep 0.95 -o OUT`: the smallest edit that keeps the gain, and its artifact."""

from __future__ import annotations

import click

from rankedit.core.figures import with_figures
from rankedit.cli.quiet import quiet_option, result, say
from rankedit.core.names import OVERWRITE_HELP

from rankedit.pipeline.compress.budgets import DEFAULT_FAMILIES, FAMILIES


@click.command("compress", context_settings={"show_default": True})
@click.argument("base", required=False)
@click.argument("tuned", required=False)
@click.option("--keep", type=float, default=0.95, help="Share of the tuned gain to keep: retention R must reach it.")
@click.option("--family", "families", multiple=True, type=click.Choice(list(FAMILIES)),
              help=f"Edit family to search (repeatable)  [default: {', '.join(DEFAULT_FAMILIES)}]")
@click.option("--target", type=click.Choice(["point", "lower"]), default="point",
              help="Judge R's point estimate, or the lower bound of its 95% interval (the gain kept with confidence).")
@click.option("--organism", type=click.Choice(["micro", "small"]), default=None,
              help="Use the embedded model organism's base and RL run instead of BASE and TUNED.")
@click.option("--seed", type=int, default=0, help="The organism's seed (with --organism).")
@click.option("--suite", default=None, help="Named suite of tasks  [default with --organism: organism]")
@click.option("--tasks", default=None, metavar="T1,T2", help="Comma-separated lm-eval tasks instead of a suite.")
@click.option("--include-path", "include_paths", multiple=True, type=click.Path(file_okay=False),
              help="Extra folder of lm-eval task YAMLs (repeatable).")
@click.option("--limit", type=int, default=None, help="Score only the first N problems of each task.")
@click.option("--batch-size", default="64", help="lm-eval batch size (an integer, or 'auto').")
@click.option("--device", default=None, help="Scoring device: cpu, cuda or cuda:N  [default: cuda when available]")
@click.option("--build-device", default="cpu", help="Where the edits compute their SVDs.")
@click.option("--max-candidates", type=int, default=8, help="At most this many candidates scored per family.")
@click.option("-o", "--out", default="out/compress", type=click.Path(file_okay=False),
              help="Output directory; rerunning into it rescores nothing.")
@quiet_option()
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def compress(base, tuned, keep, families, target, organism, seed, suite, tasks, include_paths, limit, batch_size,
             device, build_device, max_candidates, out, quiet, overwrite):
    """Find, per edit family, the smallest budget whose gain retention R reaches --keep; write the winner.

    R = (s_edit − s_base) / (s_tuned − s_base) on every trained task where the
    tuned gain is significant (the worst task decides), with a 95% paired-bootstrap
    interval. Each family's budget is bisected, galloping up from the smallest:
    rank-k over k, rank-auto over its energy threshold, mask (largest |ΔW|) and
    dare over the kept fraction of ΔW's entries; sign and sub-rank-1 have one size
    (one candidate each). The search assumes R grows with the budget. Candidates
    take their edit's defaults (rank-k keeps its norm rescale). Every candidate
    is built and scored once, ever: a rerun, or a run resumed after Ctrl-C,
    rescores nothing. The winner is the smallest meeting candidate in bytes;
    beside it, the exact patch (`rankedit patch`), the lossless point: R = 1 by
    construction (its rebuild is the tuned model bit for bit, so the tuned
    model's scores are its own, not scored again) at the patch's bytes.

    \b
    OUT/compress.json   every candidate: family, budget, bytes, ratio to the bf16 delta,
                        R with its interval, meets; the winner; the exact patch
    OUT/compress.md     the same, short
    {figures}
    OUT/artifact/       the winner's artifact
    (figure captions: docs/figures.md)

    \b
    Examples:
      rankedit compress --organism small --keep 0.9 -o out/compress
      rankedit compress base/ tuned/ --suite reasoning --keep 0.95 --target lower -o out/c
      rankedit compress base/ tuned/ --tasks gsm8k --limit 200 --family rank-k --family sign -o out/c
    """
    from rankedit.cli.score import int_option
    from rankedit.pipeline.compress.command import compress as run_compress
    from rankedit.pipeline.compress.writing import exact_line, winner_line

    bs = batch_size if batch_size == "auto" else int_option(batch_size, "--batch-size")
    task_list = [t for t in tasks.split(",") if t.strip()] if tasks is not None else None
    doc = run_compress(base, tuned, out, keep=keep, families=families or None, target=target, organism=organism,
                       seed=seed, suite=suite, tasks=task_list, include_paths=include_paths, limit=limit,
                       batch_size=bs, device=device, build_device=build_device, max_candidates=max_candidates,
                       quiet=quiet, overwrite=overwrite)
    n = len(doc["candidates"])
    fresh = sum(not c["cached"] for c in doc["candidates"])
    say(quiet, f"{n} candidates ({fresh} scored now, {n - fresh} from the cache); report in {out}/compress.md")
    result(quiet, out, winner_line(doc))
    exact = exact_line(doc)
    if exact:
        say(quiet, exact)


compress.help = with_figures(compress.help, "compress")
