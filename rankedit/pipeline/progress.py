"""What `rankedit run` tells the user as it goes: one line per step on stderr, nothing with --quiet."""

from __future__ import annotations
import click

from rankedit.core.messages import line


def say(msg: str, quiet: bool) -> None:
    if not quiet:
        line(msg)  # on a line of its own, whatever progress bar is drawn
