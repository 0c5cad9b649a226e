"""Placeholder of the artifact writer (replaced at merge by the real one, same interface).

``write_artifact`` writes the edit's merged checkpoint (``rankedit.edits.build``) and reports the
manifest's storage facts; the real writer writes the compact artifact instead.
"""

from __future__ import annotations

import os

from rankedit.edits.build import build_edit
from rankedit.edits.manifest import read_manifest


def write_artifact(base: str | os.PathLike, tuned: str | os.PathLike, method: str, params: dict,
                   out: str | os.PathLike, *, device: str = "cpu", progress: bool = True) -> dict:
    """Write ``method`` with ``params`` of the pair to ``out``; {"kind", "path", "stored_params", "stored_bytes"}."""
    path = build_edit(method, base, tuned, out, device=device, progress=progress, **params)
    s = read_manifest(path)["summary"]
    return {"kind": "checkpoint", "path": str(path), "stored_params": s.get("stored_params"),
            "stored_bytes": s.get("stored_bytes")}
