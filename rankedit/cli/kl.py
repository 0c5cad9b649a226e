"""`rankedit kl`: the KL a model travelled from its base on a task's prompts (RL's Razor).

Its own command, not an option of `rankedit score`: score runs lm-eval over
any number of models on a suite, while KL needs a pair (a model and its base)
and a prompt set, samples the model itself and runs no lm-eval task.
"""

from __future__ import annotations

import click

from rankedit.cli.spec_options import spec_option
from rankedit.cli.quiet import quiet_option, result, say
from rankedit.core.names import OVERWRITE_HELP
from rankedit.scoring.score_options import KLOptions


@click.command("kl", context_settings={"show_default": True})
@click.argument("model")
@click.argument("base")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False), default=None,
              help="A file of prompts: .jsonl (a string or {\"prompt\": ...} a line) or text (one a line).")
@click.option("--task", default=None, help="An lm-eval task whose documents give the prompts (zero-shot).")
@click.option("--include-path", "include_paths", multiple=True, type=click.Path(file_okay=False),
              help="Extra folder of lm-eval task YAMLs for --task (repeatable).")
@click.option("--organism-task", is_flag=True, help="The embedded organism's RL-task prompts (its RL run's own).")
@click.option("--num-prompts", "limit", type=int, default=None,
              help="Use the first N prompts  [default: all of a file or task; 64 with --organism-task]")
@spec_option(KLOptions, "samples", "--samples")
@click.option("--max-tokens", type=int, default=256, help="Token limit of each completion.")
@spec_option(KLOptions, "seed", "--seed")
@spec_option(KLOptions, "batch_size", "--batch-size")
@click.option("--device", default="cpu", help="cpu, cuda or cuda:N.")
@spec_option(KLOptions, "dtype", "--dtype")
@click.option("--no-cache", is_flag=True, help="Sample again even when a cached result with the same key exists.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (kl.json).")
@quiet_option()
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def kl(model, base, prompts_file, task, include_paths, organism_task, limit, samples, max_tokens, seed, batch_size,
       device, dtype, no_cache, out, quiet, overwrite):
    """KL travelled by MODEL from BASE, from MODEL's own samples at temperature 1.

    Per token, E_x E_{y~π}[(1/|y|) Σ_t log π(y_t|x,y<t) − log π_base(y_t|x,y<t)], and the
    per-sequence sum: the Monte Carlo estimate and the Rao-Blackwellised one (exact KL
    over the vocabulary at each sampled prefix), each with a 95% bootstrap interval over
    prompts. Writes OUT/kl.json; cached by both models' hashes and the settings.

    \b
    Examples:
      ORG=$(rankedit organism build --quiet)
      rankedit kl $ORG/rl $ORG/base --organism-task --samples 8 --max-tokens 16 -o out/kl
      rankedit kl tuned base --prompts prompts.jsonl --samples 4 --max-tokens 1024 --device cuda -o out/kl
      rankedit kl tuned base --task gsm8k_cot_zeroshot --num-prompts 100 -o out/kl
    """
    from rankedit.core.errors import RankeditError
    from rankedit.scoring.kl.sampler import kl as run_kl

    given = [x for x in (prompts_file, task, organism_task or None) if x is not None]
    if len(given) != 1:
        raise RankeditError("give exactly one of --prompts FILE, --task NAME or --organism-task")
    prompts = prompts_file
    if organism_task:
        from rankedit.pipeline.kl_stage import organism_prompts

        prompts, limit = organism_prompts(limit or 64), None
    doc = run_kl(model, base, prompts, task=task, include_paths=include_paths, limit=limit, samples=samples,
                 max_tokens=max_tokens, seed=seed, batch_size=batch_size, device=device, dtype=dtype,
                 use_cache=not no_cache, out=out, overwrite=overwrite)
    lines = [f"KL {level.replace('_', ' ')} ({what}): {v['value']:.6f} [{v['ci_low']:.6f}, {v['ci_high']:.6f}]"
             for level in ("per_token", "per_sequence")
             for est, what in (("mc", "Monte Carlo"), ("rb", "Rao-Blackwellised")) for v in [doc[level][est]]]
    lines.append(f"{doc['prompts']} prompts × {samples} samples, mean {doc['mean_tokens']:.1f} tokens, "
                 f"truncated {doc['truncation_rate']:.1%}" + (" (cached)" if doc["cached"] else ""))
    say(quiet, *lines)
    result(quiet, out, f"wrote {out}/kl.json")
