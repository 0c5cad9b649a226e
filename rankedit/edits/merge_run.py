"""One mergekit merge into a temporary folder: what `rankedit edit` (``rankedit.edits.build``) and
`rankedit edit --config` with a plain mergekit YAML (``rankedit.edits.config_file``) share.

The caller owns the atomic output folder and the facts collected from the merge
(``rankedit.edits.mergekit_methods.collect_facts``); this validates the config
with rankedit's methods registered, runs ``run_merge`` quietly, and keeps the
recipe as mergekit_config.yml (mergekit's own model card would name the
temporary folder, so ``merge_options`` turns it off).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

from rankedit.core.threads import hot_path_threads
from rankedit.edits.mergekit_methods import register_all
from rankedit.core.names import MERGEKIT_RECIPE

RECIPE = MERGEKIT_RECIPE


def merge_config(data: dict):
    """mergekit's MergeConfiguration of ``data``, which may name rankedit's methods (pydantic errors pass through)."""
    from mergekit.config import MergeConfiguration

    register_all()
    return MergeConfiguration.model_validate(data)


def merge_into(tmp: Path, config, options, recipe: str, short_side: Optional[int] = None) -> None:
    """Run the merge into ``tmp`` and write ``recipe`` beside it; ``short_side`` (the largest
    matrix's) sizes the threads of a rankedit edit (``rankedit.core.threads.hot_path_threads``)."""
    from mergekit.merge import run_merge

    logging.getLogger("mergekit").setLevel(logging.WARNING)
    threads = hot_path_threads("edit", short_side) if short_side is not None else contextlib.nullcontext()
    with threads:
        run_merge(config, str(tmp), options=options)
    (tmp / RECIPE).write_text(recipe)
