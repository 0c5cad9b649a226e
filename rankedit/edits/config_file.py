"""``rankedit edit --config FILE``: one edit described in YAML.

Two forms are accepted:

1. rankedit's own recipe::

       method: rank-k
       base: path/or/hub-id
       tuned: path            # or a list (extrapolate: the run's checkpoints)
       out: edited/rank1      # optional when -o is given
       params: {k: 1, scale: norm}
       # device: cuda  as_lora: false

2. a plain mergekit YAML (has ``merge_method``), which may name rankedit's
   methods (``rankedit_rank_k`` ...); it is run through ``run_merge`` into an
   atomic OUT, with rankedit_edit.json recording the per-matrix facts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import yaml

from rankedit.errors import RankeditError

RECIPE_KEYS = {"method", "base", "tuned", "out", "params", "device", "as_lora"}


def load_yaml(path: str | os.PathLike) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RankeditError(f"{path}: cannot read YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RankeditError(f"{path}: expected a mapping at the top level")
    return data


def run_config(path: str | os.PathLike, out: Optional[str] = None, device: Optional[str] = None,
               progress: bool = False) -> Path:
    data = load_yaml(path)
    if "merge_method" in data:
        return run_mergekit_config(data, path, out, device=device or "cpu", progress=progress)
    from rankedit.edits.build import build_edit

    unknown = set(data) - RECIPE_KEYS
    if unknown:
        raise RankeditError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(RECIPE_KEYS))}")
    for key in ("method", "base", "tuned"):
        if key not in data:
            raise RankeditError(f"{path}: missing key {key!r}")
    out = out or data.get("out")
    if not out:
        raise RankeditError(f"{path}: no output directory (give 'out:' or -o)")
    params: dict[str, Any] = dict(data.get("params") or {})
    tuned = data["tuned"]
    tuned = [str(t) for t in tuned] if isinstance(tuned, list) else str(tuned)
    return build_edit(str(data["method"]), str(data["base"]), tuned, out, device=device or data.get("device", "cpu"),
                      as_lora=bool(data.get("as_lora", False)), progress=progress, **params)


def run_mergekit_config(data: dict, path, out: Optional[str], device: str = "cpu", progress: bool = False) -> Path:
    """Run a plain mergekit YAML (rankedit methods registered) atomically into OUT."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge

    from rankedit.atomic import atomic_dir
    from rankedit.edits.manifest import MANIFEST, matrix_record, summarize
    from rankedit.edits.merge_options import SHARD_CAP, checkpoint_bytes, merge_options
    from rankedit.edits.svd import warn_unidentifiable
    from rankedit.edits.mergekit_methods import collect_facts, register_all

    import json

    if not out:
        raise RankeditError("a mergekit YAML needs -o OUT")
    register_all()
    try:
        config = MergeConfiguration.model_validate(data)
    except Exception as e:
        raise RankeditError(f"{path}: not a valid mergekit configuration ({str(e).splitlines()[0]})") from None
    source = Path(path).read_text()
    donor = config.base_model or config.referenced_models()[0]
    donor_dir = Path(donor.model.path)
    has_tok = not donor_dir.is_dir() or (donor_dir / "tokenizer_config.json").is_file()
    with atomic_dir(out) as tmp, collect_facts() as facts:
        # No mergekit model card: it would name the temporary directory. The YAML is kept as is.
        size = checkpoint_bytes(donor_dir) if donor_dir.is_dir() else SHARD_CAP * 4  # a hub model: the cap
        run_merge(config, str(tmp), options=merge_options(device, progress, has_tok, size))
        (tmp / "mergekit_config.yml").write_text(source)
        if facts:
            from rankedit import __version__
            from rankedit.edits.manifest import _version

            matrices = list(facts.values())
            warn_unidentifiable(config.merge_method, matrices)
            (tmp / MANIFEST).write_text(json.dumps({
                "rankedit_version": __version__, "mergekit_version": _version("mergekit"),
                "method": config.merge_method, "mergekit_config": data,
                "matrices": [matrix_record(m) for m in matrices],
                "summary": {k: v for k, v in summarize(matrices, {m["name"]: 1 for m in matrices}).items()
                            if k != "density"},
            }, indent=2) + "\n")
    return Path(out)
