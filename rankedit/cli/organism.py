"""`rankedit organism build`: the embedded model organism (a tiny base, its RLVR and SFT runs)."""

from __future__ import annotations
from rankedit.core.names import ORGANISM_SUMMARY

import click

from rankedit.cli.quiet import quiet_option, say


@click.group("organism")
def organism():
    """The embedded model organism: a real RL-tuned model built on the CPU in minutes.

    A small Llama-architecture model pre-trained on verifiable arithmetic, then
    tuned with RLVR (trl GRPOTrainer, 0/1 exact-answer reward) and, for
    contrast, with SFT (trl SFTTrainer) on a teacher's worked solutions, with
    bf16 checkpoints every 10% of training. Its test sets live in
    eval_configs/organism (lm-eval tasks organism_id, organism_hard,
    organism_control).
    """


@organism.command("build")
@click.option("--size", type=click.Choice(["micro", "small"]), default="small", show_default=True,
              envvar="RANKEDIT_ORGANISM_SIZE", show_envvar=True,
              help="small: the real organism (about 10 min on 2 CPU cores); micro: a seconds-scale twin for tests.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of data, init and training (rl-seed2 uses seed+1).")
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Output directory. Default: a cache directory under $RANKEDIT_CACHE (~/.cache/rankedit) "
                   "named by size, seed and recipe hash, reused when the same recipe was built before.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to train. cpu is deterministic per machine; cuda needs a GPU.")
@click.option("--skills", default="id", show_default=True, metavar="id[,sum]",
              help="Skills trained with GRPO. id,sum adds a second skill (digit sums): its base learns both, "
                   "so it is another organism, and DIR/rl-sum is the same GRPO recipe on sums.")
@click.option("--rl-seeds", type=click.IntRange(min=2), default=2, show_default=True,
              help="GRPO runs of the id skill from the one base (seed, seed+1, ...): 3 adds DIR/rl-seed3, and so on. "
                   "Added into an existing build; no other run changes.")
@quiet_option()
def build_cmd(size, seed, out, device, skills, rl_seeds, quiet):
    """Build the organism (or reuse a complete earlier build) and print its directory.

    Writes DIR/base, DIR/rl, DIR/rl-seed2, DIR/sft (bf16 HF checkpoints, each
    tuned run with checkpoints/step-N every 10%) and DIR/organism.json (recipe,
    versions, timings, GRPO rewards per step, greedy accuracies). An interrupted
    build is completed by running the same command again. Runs to merge:
    --skills id,sum adds DIR/rl-sum, --rl-seeds N adds DIR/rl-seed3 .. rl-seedN.

    \b
    Examples:
      ORG=$(rankedit organism build)                 # the small organism, cached
      rankedit organism build --size micro --quiet   # the seconds-scale twin
      rankedit organism build --size micro --skills id,sum --rl-seeds 3 --quiet
      rankedit analyze $ORG/base $ORG/rl -o out/rl
    """
    import json

    from rankedit.organism import build

    d = build(size=size, seed=seed, out=out, device=device, progress=not quiet, skills=skills, rl_seeds=rl_seeds)
    acc = json.loads((d / ORGANISM_SUMMARY).read_text())["accuracy"]
    say(quiet, *(f"{run:<9} " + "  ".join(f"{k}={v:.1f}%" for k, v in a.items()) for run, a in acc.items()), err=True)
    click.echo(str(d))
