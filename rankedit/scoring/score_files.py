"""`rankedit score -o OUT`'s files: scores.json, scores.md and OUT/<label>/ (lm-eval's results and samples)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from rankedit.files.atomic import atomic_dir
from rankedit.scoring.raw_files import save_raw
from rankedit.scoring.results import ScoreResult
from rankedit.core.names import SCORES_JSON, SCORES_MD
import rankedit


def markdown_table(result: ScoreResult) -> str:
    lines = ["| model | task | metric | value | stderr | n |", "|---|---|---|---|---|---|"]
    for r in result.rows():
        se = "" if r["stderr"] is None else f"{r['stderr']:.4f}"
        lines.append(f"| {r['model']} | {r['task']} | {r['metric']} | {r['value']:.4f} | {se} | {r['n']} |")
    for lab, why in result.failures.items():
        lines.append(f"| {lab} | – | failed | {why} | | |")
    return "\n".join(lines) + "\n"


def write_outputs(result: ScoreResult, out: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (),
                  overwrite: bool = False) -> Path:
    """OUT/scores.json, OUT/scores.md and OUT/<label>/ (lm-eval results.json + samples_<task>.jsonl)."""
    import lm_eval

    out = Path(out)
    with atomic_dir(out, kind="score", inputs=inputs, overwrite=overwrite) as tmp:
        models = {}
        for label, m in result.models.items():
            folder = safe_dirname(label)
            save_raw({**m.raw, "samples": m.samples}, tmp / folder)
            models[label] = {"path": m.path, "sha256": m.sha256, "cache_key": m.key, "cached": m.cached,
                             "results": f"{folder}/results.json", "truncation": m.truncation,
                             **({"sampled": sampled_block(m.sampled)} if m.sampled else {})}
        doc = {
            "scores": result.rows(),
            "suite": result.suite.name,
            "tasks": list(result.suite.tasks),
            "control_tasks": list(result.suite.control_tasks),
            "primary_metrics": {t: result.primary_metric(t) for t in result.tasks},
            "settings": asdict(result.settings),
            "models": models,
            "failures": dict(result.failures),
            "rankedit_version": getattr(rankedit, "__version__", None),
            "lm_eval_version": lm_eval.__version__,
        }
        (tmp / SCORES_JSON).write_text(json.dumps(doc, indent=2))
        (tmp / SCORES_MD).write_text(markdown_table(result))
    return out.absolute()


def sampled_block(sampled: dict) -> dict:
    """task -> avg@n, pass@k and maj@k (k = 1..n); the per-problem avg@n stays in the samples."""
    return {t: {k: v for k, v in s.items() if k != "avg_at_n_per_problem"} for t, s in sampled.items()}


def safe_dirname(label: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", label).strip("._") or "model"
