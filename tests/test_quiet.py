"""--quiet on every command: stdout holds only the result's path (or nothing), stderr only warnings and errors.

The commands are found by walking the CLI's click group, every `edit` method among them, so a new command
is covered as soon as it is registered: it fails here until it declares the shared --quiet and is given a
run below. Each runs for real (mergekit, lm-eval, transformers) on the micro organism or a tiny MoE pair.
"""

from pathlib import Path

import click
import pytest
import yaml

from rankedit.cli import quiet as quiet_module
from rankedit.cli.edit import EXAMPLES
from rankedit.cli.main import cli
from rankedit.edits import EDITS
from rankedit.testing import families
from rankedit.testing.planted import TASK, build_pair
from tests.clirun import run_cli


def commands() -> dict[tuple[str, ...], click.Command]:
    """Every command a user can run, by its words: the leaves of the group, and a group that runs on its own."""
    ctx = click.Context(cli)
    out = {}

    def walk(group: click.Group, path: tuple[str, ...]):
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if isinstance(cmd, click.Group):
                if cmd.invoke_without_command:  # `rankedit edit --config FILE`
                    out[path + (name,)] = cmd
                walk(cmd, path + (name,))
            else:
                out[path + (name,)] = cmd
    walk(cli, ())
    return out


def test_every_command_takes_the_one_shared_quiet():
    found = commands()
    assert ("organism", "build") in found and ("edit", "rank-k") in found and ("score",) in found
    for words, cmd in found.items():
        opts = [p for p in cmd.params if "--quiet" in getattr(p, "opts", ())]
        assert len(opts) == 1, f"rankedit {' '.join(words)} has no --quiet"
        assert opts[0].callback is quiet_module._enter, f"rankedit {' '.join(words)} declares its own --quiet"


@pytest.fixture(scope="module")
def moe_pair(tmp_path_factory):
    """A tiny Qwen3-MoE base, a tuned twin and three checkpoints of a run: every edit method applies."""
    root = tmp_path_factory.mktemp("quiet_moe")
    base = families.build(root / "base", "qwen3_moe")
    tuned = families.plant(base, root / "tuned", seed=1)
    run = [families.plant(base, root / f"step-{s}", seed=s) for s in (1, 2, 3)]
    return base, tuned, run


def _edit_runs(moe, out: Path) -> dict:
    base, tuned, run = moe
    runs = {}
    for name, edit in EDITS.items():
        if edit.inputs == "runs":  # merges: `rankedit merge`'s
            continue
        if edit.inputs == "run":
            args = [base, *run, "--steps", "1,2,3", "--target-step", "6"]
        else:
            args = [base, tuned, *EXAMPLES.get(name, "").split()]
        runs[("edit", name)] = ["edit", name, *args, "-o", out / f"edit-{name}"]
    return runs


def _check(words, code, stdout, stderr):
    what = "rankedit " + " ".join(words)
    assert code == 0, f"{what} failed: {stderr}"
    lines = stdout.splitlines()
    assert len(lines) <= 1 and (not lines or Path(lines[0]).exists()), f"{what} printed {stdout!r}"
    noise = [s for s in stderr.replace("\r", "\n").splitlines() if s.strip() and not s.startswith("warning:")]
    assert not noise, f"{what} wrote to stderr: {noise}"


def test_every_command_is_quiet(micro_organism, moe_pair, tmp_path, capsys):
    org, t = micro_organism, tmp_path
    planted = build_pair(t / "planted")
    plan = t / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "quiet", "organism": {"size": "micro", "seed": 0},
        "edits": [{"name": "half", "method": "scale", "params": {"factor": 0.5}}],
        "score": {"suite": "organism", "limit": 3, "batch_size": 3, "n_boot": 100}, "analyze": {"enabled": False}}))
    recipe = t / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"method": "rank-k", "base": str(org / "base"), "tuned": str(org / "rl"),
                                      "out": str(t / "recipe-out"), "params": {"k": 1}}))
    steps = sorted(int(p.name.removeprefix("step-")) for p in (org / "rl" / "checkpoints").iterdir())[:3]
    # in the order they run: apply and push use what earlier commands wrote
    runs = {
        ("organism", "build"): ["organism", "build", "--size", "micro"],
        ("analyze",): ["analyze", org / "base", org / "rl", "--no-plots", "-o", t / "analysis"],
        ("trajectory",): ["trajectory", org / "base", *(org / "rl" / "checkpoints" / f"step-{s}" for s in steps),
                          "--steps", ",".join(map(str, steps)), "--null-draws", "2", "--no-plots", "-o", t / "traj"],
        ("patch",): ["patch", org / "base", org / "rl", "-o", t / "rl.patch"],
        ("edit",): ["edit", "--config", recipe],
        **_edit_runs(moe_pair, t),
        ("merge",): ["merge", moe_pair[0], moe_pair[1], moe_pair[2][0], "--method", "orthogonal", "-o", t / "merge"],
        ("apply",): ["apply", t / "rl.patch", org / "base", "-o", t / "rebuilt"],
        ("push",): ["push", t / "recipe-out", "--repo-id", "someone/rank1", "--dry-run"],
        ("score",): ["score", f"base={org / 'base'}", "--tasks", "organism_id", "--limit", "3", "--batch-size", "3",
                     "-o", t / "scores"],
        ("kl",): ["kl", org / "rl", org / "base", "--organism-task", "--num-prompts", "2", "--samples", "1",
                  "--max-tokens", "4", "-o", t / "kl"],
        # the micro organism's gain is too small to compress on a few problems: a planted pair's is not
        ("compress",): ["compress", *planted[:2], "--tasks", TASK, "--include-path", planted[2], "--family", "sign",
                        "--device", "cpu", "-o", t / "compress"],
        ("run",): ["run", plan, "-o", t / "run"],
    }
    missing = set(commands()) - set(runs)
    assert not missing, f"give these commands a quiet run here: {sorted(missing)}"
    capsys.readouterr()  # what building the inputs printed is not the commands'
    for words, args in runs.items():
        code, out, err = run_cli([*args, "--quiet"], capsys)
        _check(words, code, out, err)
        if words != ("push",):  # push's result is the card it wrote, the others' their output folder
            assert out.strip() in ("", str(args[args.index("-o") + 1]) if "-o" in args else out.strip())
