"""What `rankedit run` tells the user as it goes: one line per step on stderr, nothing with --quiet."""

from __future__ import annotations
import click


def say(msg: str, quiet: bool) -> None:
    if not quiet:
        click.echo(msg, err=True)
