"""The prompts KL travelled is measured on: a user's file, or an lm-eval task's documents.

- a ``.jsonl`` file: one JSON value a line, a string or an object with a
  ``"prompt"`` (or ``"text"``) field (multi-line prompts need this form);
- any other file: one prompt a line, blank lines skipped;
- an lm-eval task (rankedit's task folders, ``include_paths``, then lm-eval's
  own): its evaluation documents through the task's ``doc_to_text``, zero-shot.

The embedded organism's RL-task prompts come from ``rankedit.pipeline.kl_stage``
(scoring may not import the organism).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from rankedit.core.errors import RankeditError
from rankedit.scoring.suites import custom_suite
from rankedit.scoring.lm_eval_tasks import quiet_lm_eval_notices, task_manager


def read_prompts(path: str | os.PathLike) -> list[str]:
    p = Path(path)
    if p.exists() and not p.is_file():  # a FIFO would block the read forever
        raise RankeditError(f"cannot read prompts from {p}: not a regular file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RankeditError(f"cannot read prompts from {p}: {getattr(e, 'strerror', None) or e}") from None
    if p.suffix != ".jsonl":
        prompts = [line for line in text.splitlines() if line.strip()]
    else:
        prompts = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                v = json.loads(line)
            except ValueError as e:
                raise RankeditError(f"{p}:{i}: not JSON ({e})") from None
            if isinstance(v, dict):
                v = v.get("prompt", v.get("text"))
            if not isinstance(v, str):
                raise RankeditError(f"{p}:{i}: expected a string or an object with a 'prompt' string")
            prompts.append(v)
    if not prompts:
        raise RankeditError(f"no prompts in {p}")
    return prompts


def task_prompts(task: str, include_paths: Sequence[str | os.PathLike] = (), limit: int | None = None) -> list[str]:
    """The first ``limit`` evaluation documents of an lm-eval task, as its zero-shot prompts."""
    tm = task_manager(custom_suite([task], include_paths))
    try:
        with quiet_lm_eval_notices():
            loaded = tm.load([task])["tasks"]
    except Exception as e:  # dataset offline, bad YAML: one line
        raise RankeditError(f"cannot load the documents of task {task!r}: {str(e).splitlines()[0] if str(e) else e}"
                            ) from None
    if task not in loaded:
        raise RankeditError(f"{task!r} is a group of tasks; name one task for the KL prompts")
    t = loaded[task]
    docs = t.eval_docs
    n = len(docs) if limit is None else min(limit, len(docs))
    prompts = [t.doc_to_text(docs[i]) for i in range(n)]
    if not prompts or not all(isinstance(x, str) for x in prompts):
        raise RankeditError(f"task {task!r} gives no text prompts")
    return prompts


def take(prompts: Sequence[str], limit: int | None) -> list[str]:
    if limit is not None and limit < 1:
        raise RankeditError(f"the number of prompts must be at least 1, got {limit}")
    prompts = list(prompts)[:limit]
    if not prompts:
        raise RankeditError("no prompts to estimate the KL on")
    if not all(isinstance(p, str) and p for p in prompts):
        raise RankeditError("every prompt must be a non-empty string")
    return prompts
