"""The ``rankedit`` command line: a thin, lazily loaded layer over the Python API.

Each subcommand lives in ``rankedit/cli/<name>.py`` and is imported only
when used, so ``rankedit --help`` answers without importing torch. Adding a
command is one file plus one line in COMMANDS.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from rankedit.core.errors import RankeditError
from rankedit.core.messages import end_progress_lines, error, warnings_as_lines

# name -> (module path, attribute, one-line help shown by `rankedit --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "kl": ("rankedit.cli.kl", "kl", "KL travelled by a model from its base on a task's prompts, from its own samples (RL's Razor)."),
    "organism": ("rankedit.cli.organism", "organism", "Build the embedded model organism: a tiny base, its RLVR (GRPO) and SFT runs, with checkpoints."),
    "compress": ("rankedit.cli.compress", "compress", "Find the smallest edit (rank-k, mask, sign, ...) that keeps a share of the RL gain, and write it."),
    "merge": ("rankedit.cli.merge", "merge", "Merge several RL runs of one base (task-arithmetic, ties, dare-ties, rank-k-sum, orthogonal, ...)."),
    "edit": ("rankedit.cli.edit", "edit", "Build an edited checkpoint (rank-k, off-principal, mask, extrapolate, scale) through mergekit."),
    "analyze": ("rankedit.cli.analyze", "analyze", "Measure the geometry of the update BASE -> TUNED, matrix by matrix."),
    "apply": ("rankedit.cli.apply", "apply", "Rebuild an edited checkpoint from a compact artifact (LoRA adapter or rankedit delta) and its base."),
    "patch": ("rankedit.cli.patch", "patch", "Store a checkpoint, or a run of them, as an exact (lossless) patch of its base."),
    "push": ("rankedit.cli.push", "push", "Publish an edited checkpoint to the Hugging Face Hub with a generated model card."),
    "run": ("rankedit.cli.run", "run", "Run a plan: build edits, analyse, score with lm-eval, report gain retention (default: the organism)."),
    "score": ("rankedit.cli.score", "score", "Score checkpoints with lm-eval (suites, cache, per-problem samples)."),
    "trajectory": ("rankedit.cli.trajectory", "trajectory", "Follow one run's update over its checkpoints: rank-1 direction, a(t), linearity beside its nulls."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(mod), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="rankedit")
def cli():
    """rankedit: where does the RL gain live in the weights, and how little of the update do you need?

    Analyse a base checkpoint and its RL-tuned version, build edited checkpoints
    (rank-k, off-principal, masked, extrapolated), score them with lm-eval and
    publish them to the Hugging Face Hub. Every command runs offline on the
    embedded model organism (`rankedit organism build`).
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 1.

    As the process's own entry point (``argv`` None: the ``rankedit`` script, ``python -m
    rankedit``) it ends the process itself once the command is done (``exit_now``)."""
    if argv is None:
        signal.signal(signal.SIGTERM, _terminated)
    code = run_command(argv)
    if argv is None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the command is done: nothing left to remove
        exit_now(code)
    if code:
        sys.exit(code)


def run_command(argv: list[str] | None) -> int:
    """Run one command; its exit code (0: done)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        with warnings_as_lines():
            cli.main(args=argv, prog_name="rankedit", standalone_mode=False)
    except RankeditError as e:
        error(f"error: {e}")
        return 1
    except click.exceptions.Abort:
        error("aborted")
        return 130
    except click.exceptions.NoArgsIsHelpError as e:  # `rankedit edit` alone: its help
        e.show()
        return e.exit_code
    except click.UsageError as e:  # one line, as every other bad input; the command's help is named
        where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        error(f"error: {e.format_message().rstrip('.')}{where}")
        return e.exit_code
    except click.ClickException as e:
        end_progress_lines()
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except Terminated:
        error("terminated")
        return 143
    except click.exceptions.Exit as e:
        return e.exit_code
    except OSError as e:  # read-only folder, disk full, file-size limit, quota: the system said no
        error(f"error: {describe_os_error(e)}")
        return 1
    except SystemExit as e:  # click's own exit on a closed output pipe (`rankedit ... | head -1`)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    return 0


class Terminated(BaseException):
    """SIGTERM (``kill``, a job scheduler's time limit), raised where the process is, so that the
    outputs under way are removed as after Ctrl-C: no half-written folder, no temporary one beside it."""


def _terminated(signum, frame) -> None:
    raise Terminated()


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown of its modules.

    Why: after a command has imported torch, transformers, peft and mergekit, Python's
    own exit spends about 1.1 s freeing their modules one object at a time, a tenth of
    a whole ``rankedit edit`` on a 0.5B model (BENCHMARKS.md); nothing of it is needed
    by then. What an orderly exit does that matters still happens: the atexit handlers
    run (Ray's and multiprocessing's shutdown, logging's flush) and standard output and
    error are flushed. Every file rankedit writes is closed (and renamed into place)
    before the command returns. While another non-daemon thread still runs, the
    normal exit (which waits for it) is taken instead.
    """
    import atexit
    import threading

    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the shell closed it (`rankedit ... >&-`)
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (`rankedit ... | head`) or stream
            pass
    os._exit(code)


def describe_os_error(e: OSError) -> str:
    """One line: what failed, on which path, and the system's reason (no traceback)."""
    import errno
    from pathlib import Path

    from rankedit.files.tempfiles import TMP_NAME, WRITE_ERRNOS

    reason = e.strerror or str(e)
    if e.filename is None:
        return f"I/O error: {reason}"
    path, writing = Path(str(e.filename)), e.errno in WRITE_ERRNOS
    for part in path.parts:  # name the output, not the temporary sibling it was being written as
        m = TMP_NAME.match(part)
        if m:
            path, writing = Path(*path.parts[:path.parts.index(part)]) / m.group("name"), True
            break
    if e.errno in (errno.EEXIST, errno.ENOTDIR):  # the system's "File exists" when a folder's name is a file's
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"cannot write below {blocker}: it is a file, not a folder"
    return f"{'cannot write' if writing else 'cannot access'} {path}: {reason}"
