"""What a Hub user receives names no path of this machine.

The recipe files in an edit's folder (rankedit_edit.json, mergekit_config.yml,
rankedit_scores.json, ...) record where the inputs lay on the machine that
built it. Those paths mean nothing on the Hub and say more about the user's
disk than they meant to publish, so the uploaded copies name every input by
its Hub id when one is known (a Hub snapshot, or --base-model), else by its
directory's name. The files in the user's folder are left as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

TEXT_SUFFIXES = (".json", ".yml", ".yaml", ".md", ".txt")


def input_paths(manifest: dict) -> list[str]:
    """Every local path the manifest's ``inputs`` name (strings under a ``path`` key, at any depth)."""
    found: list[str] = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "path" and isinstance(v, str) and v:
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(manifest.get("inputs", {}))
    return found


def redactions(paths: Iterable[str], name_of: Callable[[str], str]) -> dict[str, str]:
    """path (as written, and resolved) -> its public name; longest first, so a path wins over its parent."""
    out: dict[str, str] = {}
    for p in paths:
        name = name_of(p)
        for form in {p.rstrip("/"), os.path.realpath(p), str(Path(p).absolute())}:
            if form and form not in ("/", "."):
                out.setdefault(form, name)
    return dict(sorted(out.items(), key=lambda kv: -len(kv[0])))


def redact(text: str, mapping: dict[str, str], json_file: bool = False) -> str:
    """``text`` with every mapped path replaced by its name (escaped for JSON strings in a .json file)."""
    for path, name in mapping.items():
        if json_file:
            path, name = json.dumps(path)[1:-1], json.dumps(name)[1:-1]
        text = text.replace(path, name)
    return text


def public_bytes(file: Path, mapping: dict[str, str]) -> bytes | None:
    """The bytes to upload for ``file`` when they differ from the local ones (a recipe naming a local path)."""
    if file.suffix not in TEXT_SUFFIXES or not mapping:
        return None
    try:
        text = file.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
    new = redact(text, mapping, json_file=file.suffix == ".json")
    return None if new == text else new.encode("utf-8")
