"""rankedit analyze BASE TUNED -o OUT"""

from __future__ import annotations

import click

from rankedit.analysis.analyze_options import AnalyzeCommandOptions
from rankedit.cli.quiet import quiet_option, result, say
from rankedit.cli.spec_options import spec_option
from rankedit.core.figure_list import with_figures
from rankedit.core.names import OVERWRITE_HELP
from rankedit.core.names import ANALYSIS_SUMMARY


@click.command("analyze")
@click.argument("base")
@click.argument("tuned", nargs=-1, required=True)
@click.option("--names", default=None, metavar="A,B,...",
              help="Names of the tuned runs (several runs), comma-separated; default: their folders' names.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--other-tuned", default=None, help="A second tuned run of the same base: adds `jaccard` of the two update masks.")
@spec_option(AnalyzeCommandOptions, "k", "--k", show_default=True)
@spec_option(AnalyzeCommandOptions, "alpha", "--alpha", show_default=True)
@spec_option(AnalyzeCommandOptions, "atol", "--atol", show_default=True)
@spec_option(AnalyzeCommandOptions, "q", "--q", show_default=True)
@spec_option(AnalyzeCommandOptions, "device", "--device", show_default=True)
@click.option("--modules", default=None, metavar="REGEX", help="Only analyse tensors whose name matches REGEX (e.g. 'mlp|o_proj').")
@click.option("--routing-prompts", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="MoE: a text file, one prompt a line; adds the routing flip rate of base vs tuned (loads both models).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG figures.")
@quiet_option()
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def analyze(base, tuned, names, out, other_tuned, k, alpha, atol, q, device, modules, routing_prompts, no_plots, quiet,
            overwrite):
    """Measure the geometry of the update BASE -> TUNED, matrix by matrix; with several
    TUNED runs, also how their updates interfere, pair by pair.

    BASE and TUNED are Hugging Face checkpoint directories (safetensors) or Hub
    ids; TUNED (and --other-tuned) may be a PEFT LoRA adapter folder
    (adapter_config.json + adapter_model.safetensors), read on BASE with ΔW =
    scale·B·A exactly (nothing merged to disk). For every matrix (attention, MLP,
    each expert, router, shared expert, mixer: docs/families.md) it measures bf16 and atol update
    sparsity, rank, effective and stable rank, rank-1 energy, principal angles of
    the top-k subspaces, spectral shift, overlap with principal and
    low-magnitude weights, and the relative update norm. Every metric is
    defined in docs/science.md (in the repository, and installed with the
    package as rankedit/docs/science.md).

    Writes OUT/metrics.jsonl (one row per matrix), OUT/summary.json (means by
    kind, module and layer, whole-model bf16 sparsity) and, unless --no-plots,
    these figures (each captioned in docs/figures.md):

    \b
    {figures}

    Several tuned runs of one base (rankedit analyze BASE A B C ...): the first
    is measured as above, and every pair of runs gets, per matrix and pooled
    (overall, by kind, module and layer), the cosine of the updates, the overlap
    of their top-k singular subspaces, the Jaccard index of their bf16 update
    masks, the share of shared entries whose signs conflict and the overlap of
    their rank-1 directions, each beside the value a random pair of the same
    shapes and sparsity has (the null): `interference` in each row of
    metrics.jsonl and in summary.json, and the interference heatmaps above.
    """
    import json
    from pathlib import Path

    from rankedit.analysis.analyze import analyze as run_analyze
    from rankedit.core.messages import line
    from rankedit.report.terminal import print_interference, print_summary

    runs = tuned[0] if len(tuned) == 1 else list(tuned)
    rows = run_analyze(base, runs, out, names=None if names is None else names.split(","), other_tuned=other_tuned,
                       k=k, alpha=alpha, atol=atol, q=q, device=device, modules=modules, plots=not no_plots, overwrite=overwrite,
                       routing_prompts=routing_prompts)
    summary = json.loads((Path(out) / ANALYSIS_SUMMARY).read_text())
    if not quiet:
        print_summary(summary)
    from rankedit.core.coverage import line as coverage_line

    say(quiet, coverage_line(summary["coverage"], "analysed"))
    if "adapter" in summary:
        a = summary["adapter"]
        held = "within it" if a["bound_holds"] else f"above it on {len(a['over_bound'])} matrices"
        say(quiet, f"LoRA adapter: rank(ΔW) <= r (at most {a['r_max']}) by construction on "
                   f"{a['targeted_matrices']} targeted matrices; every measured rank is {held}")
    if "interference" in summary and not quiet:
        print_interference(summary["interference"])
    written = "metrics.jsonl, summary.json" + ("" if no_plots else ", *.png")
    if rows and all(r.get("rel_update_norm") == 0 for r in rows):
        line(f"warning: the update is zero: {tuned[0]} is identical to the base {base} in all {len(rows)} "
             "matrices analysed (a copy of the base given as TUNED?)")
    result(quiet, out, f"{len(rows)} matrices analysed; results in {out}/ ({written})")


analyze.help = with_figures(analyze.help, "analyze")
