"""Lines for the user on stderr that never share a line with a progress bar.

A tqdm bar redraws its line with a carriage return and leaves the cursor at its
end; a message written then lands on the bar's line (``apply: 0%|...error: cannot
write ...``). Every error and warning rankedit prints goes through here:

- ``error``: the process is about to stop, so every bar still open (a stage cut
  off by an exception never closes its own) is closed first, which ends its line
  (a ``leave`` bar keeps its last state on a line of its own, another is wiped);
- ``line`` (warnings, stage messages): the run goes on, so the bars are wiped,
  the message written, and the bars drawn again below it (tqdm's external write mode).

Only bars of tqdm, which every progress bar of rankedit and of the libraries it
drives (mergekit, huggingface_hub, lm-eval, transformers) is, are known here;
nothing is imported that the process has not imported already.
"""

from __future__ import annotations

import logging
import sys


def _bars() -> list:
    std = sys.modules.get("tqdm.std")
    return [] if std is None else list(getattr(std.tqdm, "_instances", ()))


def end_progress_lines() -> None:
    """Close every progress bar still open, so that the next write starts at column 0."""
    for bar in _bars():
        try:
            bar.close()
        except Exception:  # a bar whose stream is gone: nothing left to end
            pass


def error(msg: str) -> None:
    """The last words of a failed command, on a line of their own."""
    end_progress_lines()
    _write(msg)


def line(msg: str) -> None:
    """A warning or a stage message while bars may be drawn: on its own line, the bars redrawn below it."""
    if not _bars():
        _write(msg)
        return
    std = sys.modules["tqdm.std"]
    with std.tqdm.external_write_mode(file=sys.stderr):
        _write(msg)


class _Lines(logging.Handler):
    """rankedit's logged warnings, as ``warning: ...`` lines through ``line``."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        line(msg if msg.startswith(("warning:", "error:")) else f"{record.levelname.lower()}: {msg}")


def route_warnings() -> None:
    """Send the ``rankedit`` logger's warnings through ``line`` (once per process; the CLI's edge calls it).

    Without a handler Python's last-resort one writes them to stderr wherever the cursor is."""
    log = logging.getLogger("rankedit")
    if not any(isinstance(h, _Lines) for h in log.handlers):
        log.addHandler(_Lines(logging.WARNING))


def _write(msg: str) -> None:
    stream = sys.stderr
    if stream is None:  # the shell closed it (`rankedit ... 2>&-`)
        return
    try:
        stream.write(msg + "\n")
        stream.flush()
    except (OSError, ValueError):  # a closed pipe or stream
        pass
