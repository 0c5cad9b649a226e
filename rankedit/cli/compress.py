"""`rankedit compress BASE TUNED --keep 0.95 -o OUT`: the smallest edit that keeps the gain, and its artifact."""

from __future__ import annotations

import click

from rankedit.cli.quiet import quiet_option, result, say
from rankedit.cli.spec_options import spec_option
from rankedit.core.figure_list import with_figures
from rankedit.core.names import OVERWRITE_HELP
from rankedit.pipeline.compress.budgets import DEFAULT_FAMILIES, FAMILIES
from rankedit.pipeline.compress.compress_options import CompressOptions


@click.command("compress", context_settings={"show_default": True})
@click.argument("base", required=False)
@click.argument("tuned", required=False)
@spec_option(CompressOptions, "keep", "--keep")
@click.option("--family", "families", multiple=True, type=click.Choice(list(FAMILIES)),
              help=f"Edit family to search (repeatable)  [default: {', '.join(DEFAULT_FAMILIES)}]")
@spec_option(CompressOptions, "target", "--target")
@spec_option(CompressOptions, "organism", "--organism")
@spec_option(CompressOptions, "seed", "--seed")
@spec_option(CompressOptions, "suite", "--suite")
@click.option("--tasks", default=None, metavar="T1,T2", help="Comma-separated lm-eval tasks instead of a suite.")
@click.option("--include-path", "include_paths", multiple=True, type=click.Path(file_okay=False),
              help="Extra folder of lm-eval task YAMLs (repeatable).")
@spec_option(CompressOptions, "limit", "--limit")
@spec_option(CompressOptions, "batch_size", "--batch-size")
@spec_option(CompressOptions, "device", "--device")
@spec_option(CompressOptions, "build_device", "--build-device")
@spec_option(CompressOptions, "max_candidates", "--max-candidates")
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
    from rankedit.pipeline.compress.command import compress as run_compress
    from rankedit.pipeline.compress.writing import exact_line, winner_line

    task_list = [t for t in tasks.split(",") if t.strip()] if tasks is not None else None
    doc = run_compress(base, tuned, out, keep=keep, families=families or None, target=target, organism=organism,
                       seed=seed, suite=suite, tasks=task_list, include_paths=include_paths, limit=limit,
                       batch_size=batch_size, device=device, build_device=build_device, max_candidates=max_candidates,
                       quiet=quiet, overwrite=overwrite)
    n = len(doc["candidates"])
    fresh = sum(not c["cached"] for c in doc["candidates"])
    say(quiet, f"{n} candidates ({fresh} scored now, {n - fresh} from the cache); report in {out}/compress.md")
    result(quiet, out, winner_line(doc))
    exact = exact_line(doc)
    if exact:
        say(quiet, exact)


compress.help = with_figures(compress.help, "compress")
