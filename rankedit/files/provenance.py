"""What `rankedit push` learns about an edit's inputs from the disk: their Hub ids and their licence.

A card names an input by its Hub id, never by a local path (it means nothing
on the Hub); the licence of the source checkpoint becomes the card's.
"""

from __future__ import annotations
from rankedit.core.names import ADAPTER_CONFIG, HF_CONFIG

import json
import re
from pathlib import Path

CARD = "README.md"

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._]|-(?!-))*"  # an owner or a name: no "--" inside
SNAPSHOT_RE = re.compile(rf"/models--({_PART}(?:--{_PART})?)/snapshots/[^/]+/?$")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _looks_like_hub_id(s: str | None) -> bool:
    return bool(s) and bool(HUB_ID_RE.match(s)) and ".." not in s and not Path(s).exists()


def hub_id_of(path: str) -> str | None:
    """The Hub id an input checkpoint goes by, or None when it has none we can trust.

    A snapshot directory of the Hugging Face cache names it in its path (that
    is where a Hub id given to `rankedit edit` was read from); another local
    directory may name its origin in ``config.json`` ``_name_or_path`` (or an
    adapter's ``base_model_name_or_path``); a path that does not exist locally
    and looks like OWNER/NAME is itself a Hub id.
    """
    p = Path(path)
    if p.is_dir():
        # a snapshot in the Hugging Face cache: .../models--OWNER--NAME/snapshots/REV (how Hub ids are recorded)
        m = SNAPSHOT_RE.search(p.as_posix())
        if m:
            return m.group(1).replace("--", "/")
        for fname, key in ((HF_CONFIG, "_name_or_path"), (ADAPTER_CONFIG, "base_model_name_or_path")):
            try:
                cand = json.loads((p / fname).read_text()).get(key)
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(cand, str) and _looks_like_hub_id(cand):
                return cand
        return None
    return path if _looks_like_hub_id(path) else None


def license_of(path: str, hub_id: str | None) -> str | None:
    """The licence in a source checkpoint's README front matter (local, or in the HF cache), if any."""
    from huggingface_hub import metadata_load, try_to_load_from_cache

    candidates = [Path(path) / CARD] if Path(path).is_dir() else []
    if hub_id:
        try:
            cached = try_to_load_from_cache(hub_id, CARD)
        except Exception:  # a malformed id or cache: no licence, not an error
            cached = None
        if isinstance(cached, str):
            candidates.append(Path(cached))
    for readme in candidates:
        try:
            meta = metadata_load(readme) if readme.is_file() else None
        except Exception:  # a broken README in someone else's checkpoint is not our error
            meta = None
        lic = (meta or {}).get("license")
        if isinstance(lic, str) and lic.strip():
            return lic.strip()
    return None
