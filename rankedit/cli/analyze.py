"""rankedit analyze BASE TUNED -o OUT"""

from __future__ import annotations

import click

from rankedit.cli.quiet import quiet_option, result, say
from rankedit.core.names import OVERWRITE_HELP

from rankedit.analysis.geometry import DEFAULT_ALPHA, DEFAULT_ATOL, DEFAULT_K, DEFAULT_Q
from rankedit.core.names import ANALYSIS_SUMMARY


@click.command("analyze")
@click.argument("base")
@click.argument("tuned")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--other-tuned", default=None, help="A second tuned run of the same base: adds `jaccard` of the two update masks.")
@click.option("--k", default=DEFAULT_K, show_default=True, help="Size of the top-k principal subspaces (capped at min(m,n)/4).")
@click.option("--alpha", default=DEFAULT_ALPHA, show_default=True, help="Fraction of entries in the principal / low-magnitude masks.")
@click.option("--atol", default=DEFAULT_ATOL, show_default=True, help="Absolute tolerance for `sparsity_atol`.")
@click.option("--q", default=DEFAULT_Q, show_default=True, help="Top-q fraction of |dW| for the precision-free overlap control.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda: where the SVDs run.")
@click.option("--modules", default=None, metavar="REGEX", help="Only analyse tensors whose name matches REGEX (e.g. 'mlp|o_proj').")
@click.option("--routing-prompts", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="MoE: a text file, one prompt a line; adds the routing flip rate of base vs tuned (loads both models).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG figures.")
@quiet_option()
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def analyze(base, tuned, out, other_tuned, k, alpha, atol, q, device, modules, routing_prompts, no_plots, quiet,
            overwrite):
    """Measure the geometry of the update BASE -> TUNED, matrix by matrix.

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
    OUT/*.png heatmaps.
    """
    from rankedit.analysis.analyze import analyze as run_analyze
    from rankedit.core.messages import line
    from rankedit.report.terminal import print_summary

    import json
    from pathlib import Path

    rows = run_analyze(base, tuned, out, other_tuned=other_tuned, k=k, alpha=alpha, atol=atol, q=q, device=device,
                       modules=modules, plots=not no_plots, overwrite=overwrite,
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
    written = "metrics.jsonl, summary.json" + ("" if no_plots else ", *.png")
    if rows and all(r.get("rel_update_norm") == 0 for r in rows):
        line(f"warning: the update is zero: {tuned} is identical to the base {base} in all {len(rows)} "
             "matrices analysed (a copy of the base given as TUNED?)")
    result(quiet, out, f"{len(rows)} matrices analysed; results in {out}/ ({written})")
