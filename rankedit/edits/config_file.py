"""``rankedit edit --config FILE``: one edit described in YAML.

Two forms are accepted:

1. rankedit's own recipe::

       method: rank-k
       base: path/or/hub-id
       tuned: path            # or a list (extrapolate: the run's checkpoints)
       out: edited/rank1      # optional when -o is given
       params: {k: 1, scale: norm}
       # device: cuda  as_lora: false  dtype: float32 (the checkpoint in float32: the edit exact)

2. a plain mergekit YAML (has ``merge_method``), which may name rankedit's
   methods (``rankedit_rank_k`` ...); it is run through ``run_merge`` into an
   atomic OUT, with rankedit_edit.json recording the per-matrix facts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional


from rankedit.core.errors import RankeditError
from rankedit.files import yaml_text
from rankedit.core.names import TOKENIZER_CONFIG
from rankedit.core.device import check_device
from rankedit.core.svd import warn_unidentifiable
from rankedit.edits.build import build_edit
from rankedit.edits.manifest import mergekit_yaml_manifest, write_manifest
from rankedit.edits.merge_options import SHARD_CAP, checkpoint_bytes, merge_options
from rankedit.edits.merge_run import merge_config, merge_into
from rankedit.edits.mergekit_fit import mismatch
from rankedit.edits.mergekit_methods import PREFIX, ROLE_MASK_FROM, ROLE_TUNED, collect_facts
from rankedit.edits.registry import EDITS, parse_params
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.outdir import check_inputs, check_out
from rankedit.files import validate
from rankedit.files.validate import check_output

RECIPE_KEYS = {"method", "base", "tuned", "out", "params", "device", "as_lora", "dtype"}


def load_yaml(path: str | os.PathLike) -> dict:
    data = yaml_text.load_yaml(path)  # UTF-8, no repeated key, YAML 1.2 booleans
    if not isinstance(data, dict):
        raise RankeditError(f"{path}: expected a mapping at the top level")
    return data


def run_config(path: str | os.PathLike, out: Optional[str] = None, device: Optional[str] = None,
               progress: bool = False, overwrite: bool = False) -> Path:
    data = load_yaml(path)
    if "merge_method" in data:
        return run_mergekit_config(data, path, out, device=device or "cpu", progress=progress, overwrite=overwrite)

    unknown = set(data) - RECIPE_KEYS
    if unknown:
        raise RankeditError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(RECIPE_KEYS))}")
    for key in ("method", "base", "tuned"):
        if key not in data:
            raise RankeditError(f"{path}: missing key {key!r}")
    out = out or data.get("out")
    if not out:
        raise RankeditError(f"{path}: no output directory (give 'out:' or -o)")
    raw = data.get("params") or {}
    if not isinstance(raw, dict):
        raise RankeditError(f"{path}: 'params' must be a mapping of parameter names to values, got {raw!r}")
    params: dict[str, Any] = dict(raw)
    tuned = data["tuned"]
    tuned = [str(t) for t in tuned] if isinstance(tuned, list) else str(tuned)

    check_inputs(out, [path])  # the recipe file itself is an input too
    return build_edit(str(data["method"]), str(data["base"]), tuned, out, device=device or data.get("device", "cpu"),
                      as_lora=bool(data.get("as_lora", False)), progress=progress, overwrite=overwrite,
                      dtype=str(data.get("dtype", "source")), **params)


def run_mergekit_config(data: dict, path, out: Optional[str], device: str = "cpu", progress: bool = False,
                        overwrite: bool = False) -> Path:
    """Run a plain mergekit YAML (rankedit methods registered) atomically into OUT."""
    if not out:
        raise RankeditError("a mergekit YAML needs -o OUT")
    check_device(device)
    try:
        config = merge_config(data)
    except Exception as e:
        raise RankeditError(f"{path}: not a valid mergekit configuration ({str(e).splitlines()[0]})") from None
    check_mergekit_config(config, path)
    source = Path(path).read_text()
    donor = config.base_model or config.referenced_models()[0]
    donor_dir = Path(donor.model.path)
    has_tok = not donor_dir.is_dir() or (donor_dir / TOKENIZER_CONFIG).is_file()
    inputs = [path] + [m.model.path for m in config.referenced_models()]
    kind = f"edit:{config.merge_method}"  # rankedit_rank_k or any mergekit method
    check_out(out, kind, inputs, overwrite)  # before the work, not after it
    with atomic_dir(out, kind=kind, inputs=inputs, overwrite=overwrite) as tmp, collect_facts() as facts:
        size = checkpoint_bytes(donor_dir) if donor_dir.is_dir() else SHARD_CAP * 4  # a hub model: the cap
        merge_into(tmp, config, merge_options(device, progress, has_tok, size), source)  # the YAML kept as it is
        check_output(tmp, out)  # whole and finite before it is renamed into place
        if facts:
            matrices = list(facts.values())
            warn_unidentifiable(config.merge_method, matrices)
            write_manifest(tmp, mergekit_yaml_manifest(config.merge_method, data, matrices))
    return Path(out)


def _values(v: Any):
    """The plain values of a mergekit parameter: itself, or those of a gradient list or a
    list of ``{filter, value}`` conditions."""
    if isinstance(v, list):
        for x in v:
            yield from _values(x)
    elif isinstance(v, dict) and "value" in v:
        yield from _values(v["value"])
    else:
        yield v


def check_mergekit_config(config, path) -> None:
    """Before any work: the merge method exists, a rankedit method's parameters are valid
    (the same pydantic model as ``rankedit edit``), and local input models are sound."""
    from mergekit import merge_methods as mk

    try:
        mk.get(config.merge_method)
    except Exception:  # noqa: BLE001 - mergekit raises RuntimeError("Unimplemented merge method")
        ours = ", ".join(PREFIX + e.replace("-", "_") for e in EDITS)
        raise RankeditError(f"{path}: unknown merge_method {config.merge_method!r} (rankedit's: {ours}; "
                            "or any method of mergekit)") from None
    edit = next((e for e in EDITS.values() if PREFIX + e.name.replace("-", "_") == config.merge_method), None)
    if edit is not None:
        shared = {k: v for k, v in (config.parameters or {}).items() if k != "model_type"}
        run = {"steps": (1, 2), "target_step": 3} if edit.inputs == "run" else {}
        for name, value in shared.items():
            for v in _values(value):
                try:
                    parse_params(edit, {**run, name: v})
                except RankeditError as e:
                    raise RankeditError(f"{path}: parameters: {e}") from None
        for m in config.models:
            mp = dict(m.parameters or {})
            role = mp.get("role", ROLE_TUNED)
            if role not in (ROLE_TUNED, ROLE_MASK_FROM):
                raise RankeditError(f"{path}: model {m.model.model.path}: role must be {ROLE_TUNED} or {ROLE_MASK_FROM}, "
                                    f"got {role!r}")
            step = mp.get("step")
            if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
                raise RankeditError(f"{path}: model {m.model.model.path}: step must be an integer, got {step!r}")
    local = [Checkpoint(ref.model.path) for ref in config.referenced_models() if Path(ref.model.path).is_dir()]
    validate.check_inputs(local)  # the models' own checks (outdir's check_inputs is the output's)

    for ck in local[:1]:  # the models share an architecture (mergekit refuses mixes without --allow-crimes)
        why = mismatch(ck)
        if why is not None:  # mergekit would fail on it or, worse, write a model missing or mixing tensors
            raise RankeditError(f"{path}: mergekit cannot merge {ck.path}: {why}; run `rankedit edit METHOD BASE TUNED "
                                "-o OUT` instead, which writes such a checkpoint tensor by tensor")
