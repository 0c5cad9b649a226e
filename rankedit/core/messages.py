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

import contextlib
import logging
import os
import sys
from tqdm import std


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


@contextlib.contextmanager
def warnings_as_lines():
    """While a command runs, the ``rankedit`` logger's warnings are ``warning: ...`` lines through ``line``,
    and only those: not passed on to the root logger, where Python's last-resort handler (or the
    ``WARNING:rankedit:`` one mergekit's ``basicConfig`` installs) would write them again, wherever the
    cursor is."""
    log = logging.getLogger("rankedit")
    handler, propagate = _Lines(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _write(msg: str) -> None:
    stream = sys.stderr
    if stream is None:  # the shell closed it (`rankedit ... 2>&-`)
        return
    try:
        stream.write(msg + "\n")
        stream.flush()
    except (OSError, ValueError):  # a closed pipe or stream
        pass


@contextlib.contextmanager
def no_progress_bars():
    """No progress bar is drawn inside: rankedit's, nor those of the libraries it drives in this process
    (transformers' weight loading, lm-eval's requests, mergekit, huggingface_hub), nor in the processes
    it starts (tqdm and huggingface_hub read their switches from the environment)."""
    own = std.tqdm.__dict__["__init__"]  # tqdm's __init__ (a partialmethod holding its environment defaults)

    def init(self, *args, **kwargs):
        kwargs["disable"] = True
        own.__get__(self, type(self))(*args, **kwargs)

    env = {k: os.environ.get(k) for k in _QUIET_ENV}
    std.tqdm.__init__ = init
    os.environ.update(_QUIET_ENV)
    try:
        yield
    finally:
        std.tqdm.__init__ = own
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# what a child process (the organism's training workers) reads to draw no bars and print no notices
_QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_VERBOSITY": "error"}
