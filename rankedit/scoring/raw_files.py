"""lm-eval's output on disk, in lm-eval's own layout: results.json plus samples_<task>.jsonl.

The score cache's entries and each model's folder of `rankedit score -o OUT` hold it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from rankedit.core.errors import RankeditError
from rankedit.core.names import LM_EVAL_RESULTS


def save_raw(results: Mapping, folder: Path) -> None:
    """Write lm-eval's results as results.json plus samples_<task>.jsonl (lm-eval's own layout)."""
    from lm_eval.utils import handle_non_serializable

    folder.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in results.items() if k != "samples"}
    (folder / LM_EVAL_RESULTS).write_text(json.dumps(body, indent=2, default=handle_non_serializable))
    for task, samples in (results.get("samples") or {}).items():
        with open(folder / f"samples_{task}.jsonl", "w") as fh:
            for s in samples:
                fh.write(json.dumps(s, default=handle_non_serializable) + "\n")


def load_raw(folder: Path) -> dict:
    """Inverse of save_raw: lm-eval's results dict with its "samples"."""
    try:
        results = json.loads((folder / LM_EVAL_RESULTS).read_text())
        samples = {}
        for f in sorted(folder.glob("samples_*.jsonl")):
            with open(f) as fh:
                samples[f.stem[len("samples_"):]] = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError) as e:
        raise RankeditError(f"{folder}: unreadable lm-eval results ({e})") from None
    results["samples"] = samples
    return results
