"""Subprocess entry: ``python -m rankedit.organism.worker PHASE ORGANISM_DIR TMP_DIR`` (recipe on stdin).

Progress goes to TMP_DIR/../.PHASE.progress as "step total" so the parent can draw bars.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from rankedit.organism.phases import run_phase


def _exit_with_parent() -> None:
    """A worker whose build process died (killed, not interrupted) must not train on alone."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    _exit_with_parent()
    phase, organism_dir, tmp = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    r = json.loads(sys.stdin.read())
    prog = organism_dir / f".{phase}.progress"

    def on_step(step, total, _loss=None):
        prog.write_text(f"{step} {total}\n")

    run_phase(phase, organism_dir, tmp, r, on_step)


if __name__ == "__main__":
    main()
