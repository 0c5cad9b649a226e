"""Where rankedit caches things (organisms, scores): $RANKEDIT_CACHE or ~/.cache/rankedit."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = Path(os.environ.get("RANKEDIT_CACHE") or Path.home() / ".cache" / "rankedit")
    root.mkdir(parents=True, exist_ok=True)
    return root
