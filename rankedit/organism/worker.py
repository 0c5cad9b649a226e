"""Subprocess entry: ``python -m rankedit.organism.worker PHASE ORGANISM_DIR TMP_DIR`` (recipe on stdin).

Progress goes to TMP_DIR/../.PHASE.progress as "step total" so the parent can draw bars.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rankedit.organism.phases import run_phase


def main() -> None:
    phase, organism_dir, tmp = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    r = json.loads(sys.stdin.read())
    prog = organism_dir / f".{phase}.progress"

    def on_step(step, total, _loss=None):
        prog.write_text(f"{step} {total}\n")

    run_phase(phase, organism_dir, tmp, r, on_step)


if __name__ == "__main__":
    main()
