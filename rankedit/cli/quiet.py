"""``--quiet``, declared once for every command: stdout holds only the result's path (or nothing), stderr only
warnings and errors. No progress bar (rankedit's or a library's), no table, no stage message."""

from __future__ import annotations

import click

QUIET_HELP = ("Print only the output's path on stdout and only warnings and errors on stderr: no progress bars, "
              "tables or stage messages.")


def _enter(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:  # for as long as the command runs: its context closes the resource when it is done
        from rankedit.core.messages import no_progress_bars

        ctx.with_resource(no_progress_bars())
    return value


def quiet_option(help: str = QUIET_HELP):
    """The ``--quiet`` flag (a decorator, as ``click.option``)."""
    return click.option("--quiet", is_flag=True, help=help, callback=_enter)


def say(quiet: bool, *lines: str, err: bool = False) -> None:
    """What a command tells the user besides its result: nothing with --quiet."""
    if not quiet:
        for text in lines:
            click.echo(text, err=err)


def result(quiet: bool, path, text: str | None = None) -> None:
    """The command's result: its path alone with --quiet, else ``text`` (or the path)."""
    click.echo(str(path) if quiet or text is None else text)
