"""One candidate of ``rankedit compress``: built, scored and remembered, so that no rerun does it again.

A candidate is an edit (method and parameters) of one base/tuned pair. It is built
into a temporary folder in the cache (``rankedit.edits.build``), scored with lm-eval
(``rankedit.scoring.score``, whose own cache is keyed by the model's files), and
what the search needs is kept as one small JSON record under
``cache_root()/compress/``: the manifest's size facts and the per-problem scores of
each task's primary metric. The checkpoint itself is then deleted (a search of a
large model would otherwise leave a checkpoint per candidate). The record's key
hashes the recipe (method and every parameter, defaults included), the tuned
checkpoint's files and the base's score key (the base's files, the task configs
and every setting that changes generations), so a rerun, or a run resumed after
Ctrl-C, builds and scores nothing it did before.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from rankedit.core.cache_dir import cache_root
from rankedit.files.tempfiles import clean_stale, replace_text, temp_prefix
from rankedit.edits.build import build_edit
from rankedit.edits.manifest import read_manifest
from rankedit.edits.registry import get_edit, parse_params

# bump when a record's layout or meaning changes (2: LoRA factors counted in float32; 3: the edit as written)
FORMAT = 3
# the size of the scored checkpoint's edit and the figures of the edit as written (what was scored): the bytes
# and R of a candidate belong to one object, the checkpoint built in its dtype
SIZE_KEYS = ("stored_params", "stored_bytes", "bf16_delta_bytes", "bytes_ratio", "energy_kept",
             "energy_before_rescale", "rescale", "density", "energy_kept_stored", "stored_delta_error",
             "stored_dtype")


@dataclass(frozen=True)
class Scorer:
    """How candidates are scored: ``score(label, path) -> ScoreResult`` and what keys the result."""

    score: Callable[[str, str], object]
    base_key: str  # the base model's score cache key: its files, the tasks, the settings
    tuned_sha: dict  # the tuned checkpoint's file hashes
    metrics: dict  # task -> the primary metric whose per-problem scores are kept


def store() -> Path:
    d = cache_root() / "compress"
    d.mkdir(parents=True, exist_ok=True)
    return d


def recipe_key(method: str, params: dict, scorer: Scorer) -> str:
    doc = {"format": FORMAT, "method": method, "params": params, "base_score_key": scorer.base_key,
           "tuned": scorer.tuned_sha, "metrics": scorer.metrics}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def full_params(method: str, params: dict) -> dict:
    """Every parameter of the edit, its defaults included: a changed default changes the key."""
    return parse_params(get_edit(method), params).model_dump(mode="json")


def candidate(method: str, params: dict, base: str, tuned: str, scorer: Scorer, label: str,
              device: str = "cpu") -> dict:
    """The candidate's record: {"method", "params", "size": {...}, "samples": {task: {doc_id: score}},
    "scores": {task: value}, "cached": bool}; built and scored only when no record has its key."""
    params = full_params(method, params)
    path = store() / f"{recipe_key(method, params, scorer)}.json"
    rec = _read(path)
    if rec is not None:
        return {**rec, "cached": True}
    clean_stale(store(), "candidate")  # builds of a killed run
    with tempfile.TemporaryDirectory(prefix=temp_prefix("candidate"), dir=store()) as tmp:
        model = Path(tmp) / "model"
        build_edit(method, base, tuned, model, device=device, **params)
        summary = read_manifest(model)["summary"]
        result = scorer.score(label, str(model))
    ms = result.models[label]
    samples = {t: {str(i): v for i, v in ms.scores[t][m].per_sample.items()}
               for t, m in scorer.metrics.items() if t in ms.scores and m in ms.scores[t]}
    rec = {"format": FORMAT, "method": method, "params": params,
           "size": {k: summary.get(k) for k in SIZE_KEYS},
           "scores": {t: ms.scores[t][m].value for t, m in scorer.metrics.items() if t in samples},
           "samples": samples}
    replace_text(path, json.dumps(rec) + "\n")  # written whole or not at all
    return {**rec, "cached": False}


def _read(path: Path) -> Optional[dict]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format") == FORMAT else None


def per_problem(rec: dict, task: str) -> Optional[dict[int, float]]:
    """doc_id -> score of the candidate on ``task`` (JSON keys back to integers)."""
    s = rec["samples"].get(task)
    return {int(k): v for k, v in s.items()} if s else None
