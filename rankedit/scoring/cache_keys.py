"""The score cache's key: what defines a model, its tasks and the settings that change generations.

A run is stored under ``cache_root()/scores/<key>/`` (lm-eval's results JSON
plus one samples JSONL per task, ``rankedit.scoring.raw_files``). The key hashes
the model files (weights, config, tokenizer), the task configs (every file of
the suite's YAML folders, and lm-eval's version for its built-in tasks) and the
settings that change generations (limit, batch size, backend, dtype, device
type, max_gen_toks, chat template, few-shot count).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from rankedit.files.checkpoint import Checkpoint, file_sha256
from rankedit.scoring.results import Settings
from rankedit.scoring.suites import Suite
from rankedit.core.names import EDIT_ANALYSIS
from rankedit.files.hashes import files_sha256

CACHE_FORMAT = 1  # bump when the cached layout or its meaning changes


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# written into an edit's folder by `rankedit run` for `rankedit push`; not part of the model
REPORT_FILES = frozenset({"rankedit_scores.json", EDIT_ANALYSIS})


def model_fingerprint(ckpt: Checkpoint) -> dict[str, str]:
    """sha256 of every file that defines the model: weights, config, tokenizer, chat template.

    Hashes are memoised by (path, size, mtime) in the shared cache
    (``rankedit.files.hashes``), so a rerun does not reread gigabytes of safetensors.
    """
    return files_sha256(f for f in sorted(ckpt.path.iterdir())
                        if f.is_file() and f.suffix not in (".md", ".lock") and not f.name.startswith(".")
                        and f.name not in REPORT_FILES)


def task_config_hash(suite: Suite, builtin: bool) -> str:
    """Hash of every file under the suite's task folders (YAMLs, data, utils) and
    lm-eval's version when its built-in tasks are in play."""
    import lm_eval

    h = hashlib.sha256()
    h.update(json.dumps(sorted(suite.tasks)).encode())
    for root in suite.include_paths:
        for f in sorted(Path(root).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(root)).encode())
                h.update(file_sha256(f).encode())
    h.update(f"lm_eval={lm_eval.__version__} builtin={builtin}".encode())
    return h.hexdigest()


def cache_key(model_sha: Mapping[str, str], config_hash: str, settings: Settings) -> str:
    return _hash_json({"format": CACHE_FORMAT, "model": dict(model_sha), "tasks": config_hash,
                       "settings": settings.cache_dict()})


def kl_cache_key(model_sha: Mapping[str, str], base_sha: Mapping[str, str], prompts: list[str],
                 settings: Mapping[str, Any]) -> str:
    """The KL cache's key (``rankedit.scoring.kl.sampler``): both models' files, the prompts and the sampling settings."""
    # estimator 2: per-token rb is the unbiased control-variate form (rankedit.scoring.kl.estimate); results cached
    # under the old (1/|y|) Σ KL_t are not read back as it
    return _hash_json({"format": CACHE_FORMAT, "kind": "kl", "estimator": 2, "model": dict(model_sha), "base": dict(base_sha),
                       "prompts": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
                       "settings": dict(settings)})
