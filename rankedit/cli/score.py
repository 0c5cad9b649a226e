"""`rankedit score`: run lm-eval on checkpoints, cache the results, write scores.json and a table."""

from __future__ import annotations

import click

from rankedit.cli.spec_options import spec_option
from rankedit.cli.quiet import quiet_option, result
from rankedit.core.names import OVERWRITE_HELP
from rankedit.scoring.score_options import ScoreOptions

from rankedit.scoring.suites import SUITES


def _suite_help() -> str:
    return "; ".join(f"{s.name}: {s.description}" for s in SUITES.values())


@click.command("score", context_settings={"show_default": True})
@click.argument("models", nargs=-1, required=True)
@click.option("--suite", "suite", default=None, help=f"A named suite of tasks. {_suite_help()}")
@click.option("--tasks", "tasks", default=None, metavar="T1,T2",
              help="Comma-separated lm-eval task or group names instead of a suite (eval_configs/*, "
                   "--include-path folders, then lm-eval's own tasks).")
@click.option("--include-path", "include_paths", multiple=True, type=click.Path(file_okay=False),
              help="Extra folder of lm-eval task YAMLs (repeatable); a task there overrides lm-eval's task "
                   "of the same name, as in lm_eval --include_path.")
@click.option("--data-dir", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Offline: read every Hub dataset OWNER/NAME of the tasks from DIR/OWNER/NAME/ (the dataset's "
                   "own files, e.g. from 'hf download OWNER/NAME --repo-type dataset --local-dir DIR/OWNER/NAME'); "
                   "the tasks' prompts, filters and metrics stay lm-eval's. See docs/real-runs.md.")
@spec_option(ScoreOptions, "backend", "--backend")
@spec_option(ScoreOptions, "batch_size", "--batch-size")
@spec_option(ScoreOptions, "limit", "--limit")
@click.option("--device", default=None, help="cpu, cuda or cuda:N  [default: cuda when available, else cpu]")
@click.option("--dtype", default=None, help="torch dtype for the hf backend  [default: float32 on CPU, auto on GPU]")
@spec_option(ScoreOptions, "max_gen_toks", "--max-gen-toks")
@click.option("--chat-template/--no-chat-template", default=None,
              help="Wrap prompts in the tokenizer's chat template  [default: the suite's choice, off]")
@spec_option(ScoreOptions, "num_fewshot", "--num-fewshot")
@click.option("--profile", default=None,
              help="A named scoring profile of the suite for every task (reasoning: avg16 = 16 samples, "
                   "temperature 0.6, top_p 0.95, seed 0; greedy)  [default: greedy, except the tasks the suite "
                   "samples by default: reasoning's AIME with avg16]")
@spec_option(ScoreOptions, "samples", "--samples")
@spec_option(ScoreOptions, "temperature", "--temperature")
@spec_option(ScoreOptions, "top_p", "--top-p")
@spec_option(ScoreOptions, "seed", "--seed")
@click.option("--no-cache", is_flag=True, help="Rescore even when a cached result with the same key exists.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@quiet_option()
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def score(models, suite, tasks, include_paths, data_dir, backend, batch_size, limit, device, dtype, max_gen_toks,
          chat_template, num_fewshot, profile, samples, temperature, top_p, seed, no_cache, out, quiet, overwrite):
    """Score MODEL... (checkpoint dirs or Hub ids; LABEL=PATH names a row) with lm-eval.

    Writes OUT/scores.json (model, task, metric, value, stderr, n), OUT/scores.md,
    and lm-eval's own results.json and per-problem samples under OUT/<label>/.
    Results are cached by (model file hashes, task config hash, generation
    settings) under $RANKEDIT_CACHE/scores, so a rerun is instant. If one model
    fails, the others are still scored and written, and the command exits 1.

    \b
    Examples:
      rankedit score base tuned edit --suite organism -o out/scores
      rankedit score Qwen/Qwen2.5-0.5B --suite reasoning --backend vllm --chat-template -o out/q
      rankedit score base=ckpt/base --tasks gsm8k_cot_zeroshot --limit 50 -o out/g
      rankedit score base tuned --suite organism --samples 16 --temperature 0.6 --top-p 0.95 -o out/s
      rankedit score Qwen/Qwen2.5-0.5B --suite reasoning --profile avg16 --backend vllm -o out/q16
    """
    import logging

    from rich.console import Console

    from rankedit.scoring import score as scoring
    from rankedit.scoring.failures import ScoringFailed
    from rankedit.core.errors import RankeditError
    from rankedit.core.messages import line

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    console = Console(stderr=True)
    task_list = [t for t in tasks.split(",") if t.strip()] if tasks is not None else None

    def progress(label, ms, err):
        if err and quiet:  # an error still reaches the user, on a line of its own
            line(f"error: {label}: {err}")
        elif quiet:
            return
        elif err:
            console.print(f"[red]✗[/red] {label}: {err}")
        else:
            console.print(f"[green]✓[/green] {label}" + (" (cached)" if ms.cached else ""))

    try:
        scored = scoring.score(
            list(models), suite=suite, tasks=task_list, out=out, backend=backend, batch_size=batch_size, limit=limit,
            device=device, dtype=dtype, max_gen_toks=max_gen_toks, apply_chat_template=chat_template,
            num_fewshot=num_fewshot, profile=profile, samples=samples, temperature=temperature, top_p=top_p,
            seed=seed, include_paths=include_paths, data_dir=data_dir, use_cache=not no_cache, on_model=progress,
            overwrite=overwrite,
        )
    except ScoringFailed as e:
        if not quiet:
            print_table(e.result)
        raise
    except RankeditError:
        raise
    if not quiet:
        print_table(scored)
    result(quiet, scored.out, f"wrote {scored.out}/scores.json")


def print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"scores ({result.suite.name})")
    for col, justify in (("model", "left"), ("task", "left"), ("metric", "left"), ("value", "right"),
                         ("± stderr", "right"), ("n", "right")):
        table.add_column(col, justify=justify)
    for r in result.rows():
        se = "" if r["stderr"] is None else f"{r['stderr']:.4f}"
        table.add_row(r["model"], r["task"], r["metric"], f"{r['value']:.4f}", se, str(r["n"]))
    for label, why in result.failures.items():
        table.add_row(label, "–", "[red]failed[/red]", "", "", "")
    Console().print(table)
