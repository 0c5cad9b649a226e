"""Errors and warnings never share a line with a progress bar (rankedit.core.messages), read as a terminal shows them."""

import logging

import click
import pytest
from tqdm.auto import tqdm

import rankedit.cli.main as cli_main
from rankedit.core.errors import RankeditError
from tests.clirun import run_cli


def screen(text: str) -> list[str]:
    """The lines a terminal shows for ``text``: a carriage return goes back to column 0 and overwrites, a
    newline goes down a line, ESC[A (tqdm's move back to a bar above) up one."""
    rows, row, col, i = [[]], 0, 0, 0
    while i < len(text):
        if text.startswith("\x1b[A", i):
            row, i = max(row - 1, 0), i + 3
            continue
        ch, i = text[i], i + 1
        if ch == "\n":
            row, col = row + 1, 0
            rows += [[] for _ in range(row + 1 - len(rows))]
        elif ch == "\r":
            col = 0
        else:
            buf = rows[row]
            buf += [" "] * (col + 1 - len(buf))
            buf[col], col = ch, col + 1
    return ["".join(r).rstrip() for r in rows]


@click.command("bars")
@click.option("--leave/--no-leave", default=True)
@click.option("--warn", is_flag=True)
def _bars(leave, warn):
    """A stage cut off by an error while its bars are drawn (an iterator's and a manual one)."""
    outer = tqdm(total=10, desc="apply", leave=leave)
    outer.update(3)
    for i in tqdm(range(5), desc="inner", leave=leave):
        if warn and i == 1:
            logging.getLogger("rankedit").warning("rounding moved the edit by 2% of its norm")
        if i == 2:
            raise RankeditError("cannot write out/x: Read-only file system")


@pytest.fixture
def with_bars(monkeypatch):
    monkeypatch.setitem(cli_main.COMMANDS, "bars", (__name__, "_bars", "a test command"))


@pytest.mark.parametrize("leave", ["--leave", "--no-leave"])
def test_an_error_during_a_progress_bar_starts_its_own_line(with_bars, capsys, leave):
    code, out, err = run_cli(["bars", leave], capsys)
    assert code == 1 and out == ""
    assert "apply:" in err and "inner:" in err  # the bars were drawn
    shown = screen(err)
    mine = [s for s in shown if "error:" in s]
    assert mine == ["error: cannot write out/x: Read-only file system"], shown
    # in the raw stream the error follows a newline or a carriage return: column 0, not the end of a bar
    at = err.index("error:")
    assert at == 0 or err[at - 1] in "\r\n"
    if leave == "--leave":  # a bar kept on screen keeps its last state on a line of its own
        assert any(s.startswith("apply:") and "3/10" in s for s in shown)


def test_a_warning_during_a_progress_bar_is_a_line_of_its_own(with_bars, capsys):
    code, out, err = run_cli(["bars", "--warn"], capsys)
    assert code == 1
    shown = screen(err)
    assert "warning: rounding moved the edit by 2% of its norm" in shown, shown
    assert [s for s in shown if "error:" in s] == ["error: cannot write out/x: Read-only file system"]
