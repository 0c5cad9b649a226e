"""Merges of several RL runs of one base: the edits registered with ``inputs="runs"``
(``rankedit.edits.methods``: mergekit's task-arithmetic, ties and dare-ties, and rankedit's geometry-driven
rank-k-sum, orthogonal, disjoint-mask with their controls), built as edits are.

A merge is an edit whose inputs are runs: the same plan, the same one road per matrix, the same writer,
manifest, coverage line and checks (``rankedit.edits.build``); its output kind is ``merge:METHOD``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from rankedit.core.errors import RankeditError
from rankedit.edits.build import build_edit
from rankedit.edits.registry import EDITS

PathLike = str | os.PathLike


def merge_methods() -> dict:
    """The merge methods, by name, in registry order."""
    return {name: e for name, e in EDITS.items() if e.inputs == "runs"}


def build_merge(method: str, base: PathLike, runs: Sequence[PathLike], out: PathLike, **kwargs: Any) -> Path:
    """Write the merge of ``runs`` (tuned checkpoints, or LoRA adapters, of ``base``) by ``method`` into ``out``.

    ``kwargs``: the method's parameters (``weights=[0.5, 0.5]``, ``density=0.2``, ``k=1``, ``seed``, ``rest``)
    and ``build_edit``'s options (``device``, ``overwrite``, ``progress``, ``dtype``, ``max_shard_bytes``)."""
    methods = merge_methods()
    if method not in methods:
        raise RankeditError(f"unknown merge method {method!r}; choose one of: {', '.join(methods)}")
    if isinstance(runs, (str, os.PathLike)) or len(runs) < 2:
        n = 1 if isinstance(runs, (str, os.PathLike)) else len(runs)
        raise RankeditError(f"a merge takes at least two tuned runs of the base, got {n}")
    return build_edit(method, base, list(runs), out, **kwargs)
