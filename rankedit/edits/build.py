"""Build an edited checkpoint: the I/O edge around the pure edits.

``build_edit`` validates the inputs (``rankedit.files.checkpoint``), writes a mergekit
configuration naming the rankedit merge method, runs ``mergekit.merge.run_merge``
into an atomic temporary directory, and adds ``rankedit_edit.json``. Per-matrix
facts come from the merge itself through ``collect_facts`` (no second pass);
the sha256 of the input weight files is computed in a background thread while
the merge runs, and remembered across runs (``rankedit.files.hashes``).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

from rankedit.files.adapter import tuned_on_disk
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import Checkpoint, check_compatible
from rankedit.edits.manifest import MANIFEST, build_manifest, write_manifest
from rankedit.edits.edit_plan import (EditPlan, check_update, computed_ahead, plan_coverage, state_coverage, input_paths, inputs_record, largest_short_side, plan_inputs, record_params,
                                      start_hashing)
from rankedit.edits.merge_run import merge_config, merge_into
from rankedit.edits.mergekit_methods import ROLE_MASK_FROM, ROLE_TUNED, collect_facts, method_name
from rankedit.edits.merge_options import checkpoint_bytes, merge_options
from rankedit.edits.methods.rank_k import extraction_params
from rankedit.edits.registry import get_edit, parse_params
from rankedit.core.svd import warn_unidentifiable
from rankedit.edits.realized import OUT_DTYPES, warn_written
from rankedit.core.device import check_device
from rankedit.core.errors import RankeditError
from rankedit.core.coverage import matrices_of
from rankedit.core.modules import OTHER, ROUTER, SHARED_EXPERT, classify, split_key
from rankedit.edits.matrix_edit import Road, riding
from rankedit.edits.mergekit_fit import STREAMED, writer as choose_writer
from rankedit.files.outdir import check_out
from rankedit.files.validate import check_config, check_inputs, check_output
from rankedit.core.names import TOKENIZER_CONFIG
from rankedit.edits.edit_plan import matrix_inputs
from rankedit.edits.lora import export_lora
from rankedit.edits.streamed import write_streamed
from rankedit.files.hashes import checkpoint_sha256

PathLike = str | os.PathLike
# Besides weights and config, what an ordinary HF checkpoint directory carries.
EXTRA_FILES = ("generation_config.json", TOKENIZER_CONFIG, "special_tokens_map.json", "tokenizer.json",
               "tokenizer.model", "added_tokens.json", "merges.txt", "vocab.json", "chat_template.jinja",
               "chat_template.json")




def plan_edit(method: str, base: PathLike, tuned: PathLike | Sequence[PathLike], **params: Any) -> EditPlan:
    """Validate everything before any work: parameters and headers first, then the
    inputs' weights (whole and finite, ``rankedit.files.validate``; remembered per file)."""
    edit = get_edit(method)
    params = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in params.items()}
    tuned_refs = [tuned] if isinstance(tuned, (str, os.PathLike)) else list(tuned)
    if not tuned_refs:
        raise RankeditError(f"{method} needs a tuned checkpoint")
    if edit.inputs == "pair" and len(tuned_refs) != 1:
        raise RankeditError(f"{method} takes one tuned checkpoint, got {len(tuned_refs)}")
    if edit.inputs == "runs" and len(tuned_refs) < 2:
        raise RankeditError(f"{method} merges at least two tuned runs of the base, got {len(tuned_refs)}")
    if edit.inputs == "run":
        steps = params.get("steps")
        if steps is None:
            raise RankeditError(f"{method} needs the step of every checkpoint (--steps)")
        if not isinstance(steps, (list, tuple)):
            raise RankeditError(f"{method}: steps must be a list of integers, got {steps!r}")
        steps = tuple(steps)  # the params model checks each is an integer (not a bool or a string)
        params["steps"] = steps
        if len(tuned_refs) < 2:
            raise RankeditError(f"{method} needs at least two checkpoints of the run, got {len(tuned_refs)}")
        if len(steps) != len(tuned_refs):
            raise RankeditError(f"{method}: {len(tuned_refs)} checkpoints but {len(steps)} steps")
    p = parse_params(edit, params)
    weights = getattr(p, "weights", None)
    if edit.inputs == "runs" and weights is not None and len(weights) != len(tuned_refs):
        raise RankeditError(f"{method}: {len(weights)} weights for {len(tuned_refs)} runs; give one weight per run")

    base_ck = Checkpoint(base)
    # mergekit reads TUNED from disk: a LoRA adapter is merged into the cache once (one line says where)
    tuned_cks = [tuned_on_disk(t, base_ck) for t in tuned_refs]
    mask_from = getattr(p, "mask_from", None)
    source = getattr(p, "source", None)
    if source == "from" and not mask_from:
        raise RankeditError("mask --source from needs --from OTHER_TUNED (another run from the same base)")
    if mask_from and source != "from":
        raise RankeditError(f"--from is only used with --source from (source is {source})")
    if source in ("bf16", "from") and getattr(p, "density", None) is not None:
        raise RankeditError(f"--density does not apply to mask source {source} (its density is what the update did)")
    other_ck = tuned_on_disk(mask_from, base_ck) if mask_from else None

    all_cks = [base_ck, *tuned_cks] + ([other_ck] if other_ck else [])
    for ck in all_cks:
        check_config(ck)  # mergekit reads every input's config.json: one line, not 'Unrecognized model'
    many = "run" if edit.inputs == "runs" else "tuned"
    labels = ["base"] + ([f"{many}[{i}]" for i in range(len(tuned_cks))] if len(tuned_cks) > 1 else ["tuned"])
    labels += ["mask source"] if other_ck else []
    seen: dict[Path, str] = {}
    for ck, lab in zip(all_cks, labels):
        real = ck.path.resolve()
        if real in seen:
            raise RankeditError(f"{lab} and {seen[real]} are the same checkpoint: {ck.path}")
        seen[real] = lab
    check_compatible(all_cks, labels)

    model_type, config = base_ck.model_type, base_ck.config
    infos = {n: classify(n, base_ck.info(n).shape, model_type, config) for n in base_ck.names}
    every = edited_matrices(base_ck, infos)
    if not every:
        raise RankeditError(f"{base_ck.path}: no 2-D attention, MLP, expert or mixer matrices recognised "
                            f"(model_type {model_type!r}; {_unplaced(infos)})")
    if edit.needs is not None and not any(infos[split_key(key)[0]].kind == edit.needs for key in every):
        raise RankeditError(f"{method} needs a mixture-of-experts checkpoint: no {edit.needs} matrix recognised in "
                            f"{base_ck.path} (model_type {model_type!r})")
    left = left_below_k(base_ck, every, infos, edit.svd_rank(p))
    matrices = [key for key in every if key not in left]
    check_rank(edit, p, base_ck, matrices)
    check_inputs(all_cks)
    plan = EditPlan(edit, p, base_ck, tuned_cks, other_ck, matrices, left=left)
    across = across_choice(plan) if edit.across is not None else {}
    plan.road = Road(matrices=frozenset(matrices), across=across, config=config)
    return plan


def _unplaced(infos: dict) -> str:
    other = [n for n, i in infos.items() if i.kind == OTHER]
    return f"{len(other)} tensors not placed, e.g. {other[0]}" if other else "no tensor left unplaced"


def across_choice(plan: EditPlan) -> dict:
    """The edit's choice across matrices (``Edit.across``), from every edited matrix's place and ‖ΔW‖²."""
    import torch

    table = {}
    for key in plan.matrices:
        x = matrix_inputs(plan, key)
        table[key] = (x.place, float(torch.linalg.vector_norm(x.dw.double()) ** 2))
    return dict(plan.edit.across(plan.params, table))


def mergekit_config(plan: EditPlan, dtype: str = "source") -> dict:
    """The plain mergekit YAML (as a dict) that executes this edit (``dtype`` float32: read and write every
    tensor in float32, so the edit is added to W0 and written without a bf16 rounding)."""
    edit, p = plan.edit, plan.params
    shared = p.model_dump(mode="json", exclude={"steps", "mask_from", "accuracies", "weights"}, exclude_none=True)
    shared["model_type"] = plan.base.model_type
    models = []
    steps = getattr(p, "steps", None)
    accuracies = getattr(p, "accuracies", None)  # one per checkpoint: passed per input, as the steps are
    for i, ck in enumerate(plan.tuned):
        mp: dict[str, Any] = {"role": ROLE_TUNED}
        if edit.inputs == "run":
            mp["step"] = steps[i]
            if accuracies is not None:
                mp["accuracy"] = accuracies[i]
        if getattr(p, "weights", None) is not None:  # per input: a list in a mergekit config is a gradient
            mp["weight"] = p.weights[i]
        models.append({"model": str(ck.path.resolve()), "parameters": mp})
    if plan.other is not None:
        models.append({"model": str(plan.other.path.resolve()), "parameters": {"role": ROLE_MASK_FROM}})
    out = {"merge_method": method_name(edit.name), "base_model": str(plan.base.path.resolve()), "models": models,
           "parameters": shared}
    if dtype != "source":
        out.update(dtype=dtype, out_dtype=dtype)
    return out


def _has_tokenizer(path: Path) -> bool:
    return (path / TOKENIZER_CONFIG).is_file() and any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model"))


def is_built(plan: EditPlan, out: PathLike, dtype: str = "source") -> bool:
    """True when OUT holds a finished merged edit of this very recipe and these very inputs.

    The manifest written last by ``run_plan`` records both, so a rerun can skip the merge."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return False
    try:
        man = json.loads(path.read_text())
    except ValueError:
        return False
    hashes = {ck.path: checkpoint_sha256(ck) for ck in plan_inputs(plan)}
    return (man.get("method") == plan.edit.name and man.get("params") == with_dtype(record_params(plan, False), dtype)
            and man.get("inputs") == inputs_record(plan, hashes))


def edited_matrices(base_ck: Checkpoint, infos: Optional[dict] = None) -> list[str]:
    """Every matrix of ``base_ck`` an edit may work on (from the headers): attention, MLP, expert (each of a fused
    stack, ``name[e]``), router, shared-expert and mixer matrices (``rankedit.core.modules``)."""
    shapes = {n: tuple(base_ck.info(n).shape) for n in base_ck.names}
    infos = infos or {n: classify(n, shapes[n], base_ck.model_type, base_ck.config) for n in base_ck.names}
    return matrices_of(shapes, infos)


def _short(base_ck: Checkpoint, key: str) -> int:
    return min(base_ck.info(split_key(key)[0]).shape[-2:])


def left_below_k(base_ck: Checkpoint, keys: list[str], infos: dict, k: Optional[int]) -> dict[str, str]:
    """A router or a shared expert's gate has a row per expert (or one): below k it is left to --rest, and said."""
    if k is None:
        return {}
    return {key: f"short side {_short(base_ck, key)} < k={k}" for key in keys if _short(base_ck, key) < k
            and infos[split_key(key)[0]].kind in (ROUTER, SHARED_EXPERT)}


def check_rank(edit, p, base_ck: Checkpoint, matrices: Optional[list[str]] = None) -> None:
    """The edit's k is at most the rank of every matrix it decomposes (headers only: before any work)."""
    k = edit.svd_rank(p)  # singular directions of each matrix the edit computes
    if matrices is None:
        every = edited_matrices(base_ck)
        infos = {n: classify(n, base_ck.info(n).shape, base_ck.model_type, base_ck.config) for n in base_ck.names}
        left = left_below_k(base_ck, every, infos, k)
        matrices = [key for key in every if key not in left]
    if k is None or not matrices:
        return
    limit = min(_short(base_ck, key) for key in matrices)
    if k > limit:
        small = next(key for key in matrices if _short(base_ck, key) == limit)
        raise RankeditError(f"k={k} is above the rank of {small} (at most {limit}); choose k <= {limit}")


def edit_kind(plan: EditPlan, as_lora: bool = False) -> str:
    """The output kind of an edit (``rankedit.files.outdir``): replacing one method's output by
    another's, or a checkpoint by an adapter, takes ``--overwrite``."""
    return ("merge:" if plan.edit.inputs == "runs" else "edit:") + plan.edit.name + (":lora" if as_lora else "")


def build_edit(method: str, base: PathLike, tuned: PathLike | Sequence[PathLike], out: PathLike, *,
               device: str = "cpu", as_lora: bool = False, overwrite: bool = False, progress: bool = False,
               lora_dtype: str = "source", max_shard_bytes: Optional[int] = None, dtype: str = "source",
               **params: Any) -> Path:
    """Write the edited checkpoint ``out`` (or, with ``as_lora``, a PEFT adapter) and return its path.

    ``params`` are the edit's parameters (see ``rankedit.edits.EDITS[method].params``),
    e.g. ``k=1, scale="norm"`` for rank-k, ``source="from", mask_from=PATH`` for mask,
    ``mode="linear", steps=[...], target_step=T`` for extrapolate. ``lora_dtype``
    (with ``as_lora``): "source" (the base matrices' dtype), "float32", "bfloat16" or "float16".
    An existing ``out`` is replaced only when it is an earlier edit holding
    nothing else (``rankedit.files.outdir``), or with ``overwrite``. ``max_shard_bytes`` caps the
    output shards (default 1 GB, ``rankedit.edits.merge_options``): mergekit holds one in memory.
    ``dtype``: "source" writes every tensor in its own dtype (a bf16 model: the edit rounded to bf16, as the
    manifest's ``stored_delta_error`` says), "float32" writes the checkpoint in float32 (twice a bf16 model's bytes).
    """
    check_device(device)
    check_dtype(dtype)
    if as_lora:  # an extraction: the truncated SVD unless a scale is asked for
        params = extraction_params(get_edit(method), params)
    plan = plan_edit(method, base, tuned, **params)
    check_out(out, edit_kind(plan, as_lora), input_paths(plan), overwrite)  # before the work, not after it
    if as_lora:
        if dtype != "source":
            raise RankeditError("--dtype applies to a merged checkpoint; an adapter's factors take --lora-dtype")
        return export_lora(plan, out, device=device, overwrite=overwrite, progress=progress, lora_dtype=lora_dtype)
    return run_plan(plan, out, device=device, overwrite=overwrite, progress=progress, max_shard_bytes=max_shard_bytes,
                    dtype=dtype)


def check_dtype(dtype: str) -> None:
    if dtype not in OUT_DTYPES:
        raise RankeditError(f"--dtype must be one of {', '.join(OUT_DTYPES)}, got {dtype!r}")


def with_dtype(params: dict, dtype: str) -> dict:
    """The manifest's params, with the written dtype where it is not the source's (so a manifest of the
    default stays as it was)."""
    return params if dtype == "source" else {**params, "dtype": dtype}


def run_plan(plan: EditPlan, out: PathLike, *, device: str = "cpu", overwrite: bool = False, progress: bool = False,
             max_shard_bytes: Optional[int] = None, dtype: str = "source") -> Path:
    """Write the merged edit into ``out``: through mergekit where its definition of the architecture names
    exactly the checkpoint's tensors (``rankedit.edits.mergekit_fit``), else tensor by tensor
    (``rankedit.edits.streamed``); output shards hold at most ``max_shard_bytes`` (``merge_options``);
    ``dtype`` float32 writes every floating tensor in float32 (the edit exact)."""
    check_dtype(dtype)
    out = Path(out)
    # the edit's decompositions two at a time beside the merge, which runs one tensor at a time
    with computed_ahead(plan, device), ThreadPoolExecutor(max_workers=1) as pool:
        hashing = start_hashing(pool, plan)
        # chosen once the decompositions run: it imports mergekit (1-2 s of one core)
        plan.writer = plan.writer or choose_writer(plan.base)
        streamed = plan.writer["route"] == STREAMED
        with atomic_dir(out, kind=edit_kind(plan), inputs=input_paths(plan), overwrite=overwrite) as tmp, \
                collect_facts() as facts, riding(plan.road):
            if streamed:
                write_streamed(plan, tmp, device=device, progress=progress, max_shard_bytes=max_shard_bytes,
                               dtype=dtype)
            else:
                config = merge_config(mergekit_config(plan, dtype))
                # the recipe is kept as mergekit_config.yml, taken before run_merge (which normalises the config in place)
                options = merge_options(device, progress, _has_tokenizer(plan.base.path),
                                        checkpoint_bytes(plan.base.path), max_shard_bytes)
                merge_into(tmp, config, options, config.to_yaml() + "\n", short_side=largest_short_side(plan))
            for f in EXTRA_FILES:
                if (plan.base.path / f).is_file() and not (tmp / f).exists():
                    shutil.copyfile(plan.base.path / f, tmp / f)  # the umask's mode, not the source's
            warn_unidentifiable(plan.edit.name, [facts[n] for n in plan.matrices if n in facts])
            missing = [n for n in plan.matrices if n not in facts]
            if missing:
                raise RankeditError(f"internal: the writer did not run the edit on {len(missing)} matrices, e.g. {missing[0]}")
            check_update(plan, [facts[n] for n in plan.matrices])
            check_output(tmp, out, like=plan.base)  # never rename a non-finite or incomplete model into place
            hashes = {p: f.result() for p, f in hashing.items()}
            numels = {n: plan.numel(n) for n in plan.matrices}
            manifest = build_manifest(plan.edit.name, None if streamed else method_name(plan.edit.name),
                                      with_dtype(record_params(plan, False), dtype), inputs_record(plan, hashes),
                                      [facts[n] for n in plan.matrices], numels)
            manifest["summary"]["checkpoint_bytes"] = weight_bytes(tmp)  # what the written dtype costs on disk
            manifest["coverage"] = plan_coverage(plan, plan.params.rest)
            manifest["writer"] = plan.writer
            state_coverage(manifest["coverage"], what=plan.edit.name)
            warn_written(plan.edit.name, manifest["summary"], energy_note(plan))
            write_manifest(tmp, manifest)
    return out


def weight_bytes(folder: Path) -> int:
    """Bytes of the weight files (``*.safetensors``) in ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))


def energy_note(plan: EditPlan) -> Optional[str]:
    """Where an energy kept above ``ENERGY_WARN`` is worth a line, what the edit did to get it (None: no line)."""
    if plan.edit.name == "extrapolate" and str(getattr(plan.params, "mode", "")).startswith("alpharl"):
        return (" of the last checkpoint (alpharl adds the whole predicted rank-1 component a*·v1ᵀ to the last "
                "checkpoint, which already holds the update so far; alpharl-increment adds only a* - a(t_n))")
    return None
