"""Subprocess entry: ``python -m rankedit.organism.worker ORGANISM_DIR PHASE [PHASE ...]`` (recipe on stdin).

Every phase of a build is trained here, never in the caller's process: the
pins of rankedit.organism.pinning must be in place before torch is loaded,
whatever the caller had imported or set. Phases run in the order given, each
trained into a temporary sibling and renamed into ORGANISM_DIR/PHASE when
complete (a later phase reads the earlier one, e.g. rl reads base).
Progress goes to ORGANISM_DIR/.PHASE.progress as "step total" so the parent can draw bars.
"""

from __future__ import annotations

import os
import sys

from rankedit.organism import pinning

pinning.apply_in_process()  # before torch loads; the parent's env already holds the same pins

import json  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from rankedit.files.atomic import atomic_dir  # noqa: E402
from rankedit.organism.phases import publish_mode, run_phase  # noqa: E402


def _exit_with_parent() -> None:
    """A worker whose build process died (killed, not interrupted) must not train on alone."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt  # unwinds atomic_dir, which removes the half-trained phase


def main() -> None:
    _exit_with_parent()
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    organism_dir, phases = Path(sys.argv[1]), sys.argv[2:]
    r = json.loads(sys.stdin.read())
    pins = pinning.effective()
    for phase in phases:
        prog = organism_dir / f".{phase}.progress"

        def on_step(step, total, _loss=None, prog=prog):
            prog.write_text(f"{step} {total}\n")

        with atomic_dir(organism_dir / phase) as tmp:
            run_phase(phase, organism_dir, tmp, r, on_step, pins)
        publish_mode(organism_dir / phase)
        prog.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
