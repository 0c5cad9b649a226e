"""Every rankedit edit as a mergekit merge method, so edits run through
``mergekit.merge.run_merge`` (lazy loading, sharded safetensors output, config
and tokenizer copied, ``--cuda``) and can be named in a plain mergekit YAML.

Importing ``rankedit.edits`` registers them (mergekit 0.1.5 has no plugin entry
points): ``rankedit_rank_k``, ``rankedit_random_rank_k``,
``rankedit_off_principal``, ``rankedit_principal_only``, ``rankedit_mask``,
``rankedit_extrapolate``, ``rankedit_scale``. Each method's parameters are the
fields of the edit's pydantic model (shared across inputs) plus two per-input
parameters on the non-base models:

- ``step`` (int): the training step of a run's checkpoint (extrapolate);
- ``role``: ``tuned`` (default) or ``mask_from`` (the other run whose bf16
  update mask ``mask`` with ``source: from`` transplants).

and ``model_type`` (shared), used to recognise GPT-2's transposed Conv1D weights.

The adapter below is the only impure part: it picks the matrices to edit with
``rankedit.core.modules.classify`` (2-D attention/MLP weights; everything else follows
``rest``), converts to float32 and (out, in) layout, calls the pure edit and
converts back. Per-matrix facts (energy kept, mask density, rank kept) are
recorded (with the edit's storage cost) through a side channel, ``collect_facts()``: a lock-protected dict that
the adapter fills while a build is collecting, so no second pass over the
weights is needed.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import replace
from typing import Any, Iterator, Optional

import torch
from mergekit import merge_methods as mk
from mergekit.merge_methods.base import (
    BasePolicy,
    FunctionalGroupMergeMethod,
    InputContract,
    MergeMethodSpec,
    ParameterScope,
    ParameterSpec,
    TensorGroup,
)

from rankedit.edits.ahead import take
from rankedit.edits.manifest import matrix_facts
from rankedit.edits.realized import stored_matrix
from rankedit.edits.registry import EDITS, Edit, MatrixInputs, matrix_seed
from rankedit.edits.storage import MatrixSize
from rankedit.core.errors import RankeditError
from rankedit.core.modules import as_linear, classify, from_linear
from rankedit.files.checkpoint import all_finite

PREFIX = "rankedit_"
STRUCTURAL = {"steps", "mask_from", "accuracies"}  # pydantic fields that mergekit passes per input instead
ROLE_TUNED, ROLE_MASK_FROM = "tuned", "mask_from"

_facts: Optional[dict[str, dict]] = None
_lock = threading.Lock()


def method_name(edit: str) -> str:
    """mergekit name of a rankedit edit: ``rank-k`` -> ``rankedit_rank_k``."""
    return PREFIX + edit.replace("-", "_")


@contextlib.contextmanager
def collect_facts() -> Iterator[dict[str, dict]]:
    """Collect per-matrix facts of every edit executed inside the block."""
    global _facts
    with _lock:
        if _facts is not None:
            raise RuntimeError("collect_facts() is not re-entrant")
        _facts = {}
        facts = _facts
    try:
        yield facts
    finally:
        with _lock:
            _facts = None


def _record(name: str, item: dict) -> None:
    with _lock:
        if _facts is not None:
            _facts[name] = item


def apply_edit(edit: Edit, group: TensorGroup, shared: dict[str, Any], model_type: str,
               step: Any = None, role: Any = None, accuracy: Any = None) -> torch.Tensor:
    """Run one registered edit on one tensor group (base + tuned [+ other])."""
    name = group.metadata.name or ""
    base = group.base.tensor
    roles = {e.id: (role[e.id] if role is not None else ROLE_TUNED) for e in group.non_base}
    bad = sorted({r for r in roles.values()} - {ROLE_TUNED, ROLE_MASK_FROM})
    if bad:
        raise ValueError(f"unknown role {bad[0]!r} for {name}; use {ROLE_TUNED} or {ROLE_MASK_FROM}")
    tuned = [e for e in group.non_base if roles[e.id] == ROLE_TUNED]
    others = [e for e in group.non_base if roles[e.id] == ROLE_MASK_FROM]
    if not tuned:
        raise ValueError(f"{edit.name} needs at least one tuned model for {name}")
    if edit.inputs == "pair" and len(tuned) != 1:
        raise ValueError(f"{edit.name} takes exactly one tuned model, got {len(tuned)} for {name}")
    if len(others) > 1:
        raise ValueError(f"at most one model may have role {ROLE_MASK_FROM}")

    info = classify(name, tuple(base.shape), model_type)
    if not (info.is_matrix and base.ndim == 2):
        rest = shared.get("rest") or edit.params.rest_default(shared)  # unset in a plain YAML: the edit's default
        return base if rest == "base" else tuned[-1].tensor

    params = dict(shared)
    steps = None
    if edit.inputs == "run":
        steps = tuple(step[e.id] for e in tuned) if step is not None else None
        if steps is not None and any(s is None for s in steps):
            raise ValueError(f"{edit.name}: every checkpoint needs a 'step' parameter")
        params["steps"] = steps
        accs = tuple(accuracy[e.id] for e in tuned) if accuracy is not None else ()
        if any(a is not None for a in accs):
            params["accuracies"] = accs
    p = edit.params(**params)

    dtype = torch.float64 if base.dtype == torch.float64 else torch.float32
    lin = lambda t: as_linear(t.to(dtype), info)  # noqa: E731
    x = MatrixInputs(
        w0=lin(base), tuned=tuple(lin(e.tensor) for e in tuned), steps=steps,
        other=lin(others[0].tensor) if others else None, seed=matrix_seed(p.seed, name),
    )
    if edit.ahead is not None:  # its decomposition, when it was done beside the merge (rankedit.edits.ahead)
        x = replace(x, ahead=take(name, x))
    res = edit.run(x, p)
    # written in the loaded tensor's dtype (the stored one, or mergekit's ``dtype`` where a build asks for float32)
    stored, written = stored_matrix(x.w0, res.delta, base.dtype, res.weight)
    size = MatrixSize(tuple(x.w0.shape), base.element_size(), res.density, res.stored_rank)
    facts = matrix_facts(name, x.dw, res, edit.storage(p, size), written)
    out = from_linear(stored, info)
    if not (math.isfinite(facts["edit_norm"]) and all_finite(out)):  # the inputs were checked finite
        raise RankeditError(overflow_message(edit.name, p, name, base.dtype))
    _record(name, facts)
    return out


def overflow_message(method: str, p, name: str, dtype) -> str:
    """Finite inputs, a finite result out of range: a parameter too large for the dtype, said so."""
    what = f"--factor {p.factor:g}" if hasattr(p, "factor") else f"the {method} edit"
    dt = str(dtype).removeprefix("torch.")
    return (f"{what} overflows {dt}: the edited {name} (or its update's norm) goes beyond {dt}'s largest "
            f"finite value {torch.finfo(dtype).max:.3g}; choose a smaller value (nothing was written)")


def _spec_for(edit: Edit) -> MergeMethodSpec:
    params = [
        ParameterSpec(fname, f.annotation, ParameterScope.SHARED, default=f.default)
        for fname, f in edit.params.model_fields.items()
        if fname not in STRUCTURAL
    ]
    params.append(ParameterSpec("model_type", str, ParameterScope.SHARED, default=""))
    params.append(ParameterSpec("role", str, ParameterScope.NON_BASE, default=ROLE_TUNED))
    if edit.inputs == "run":
        params.append(ParameterSpec("step", Optional[int], ParameterScope.NON_BASE, default=None))
        params.append(ParameterSpec("accuracy", Optional[float], ParameterScope.NON_BASE, default=None))
    return MergeMethodSpec(
        name=method_name(edit.name),
        pretty_name=f"rankedit {edit.name}",
        reference_url="https://github.com/rankedit/rankedit",
        parameters=tuple(params),
        contract=InputContract(base=BasePolicy.REQUIRED, min_inputs=2, min_non_base=1),
    )


def make_method(edit: Edit) -> FunctionalGroupMergeMethod:
    """The mergekit method of one edit (what ``merge_method`` builds from a signature,
    built here from the edit's pydantic schema so the two can never disagree)."""

    def kernel(group: TensorGroup, /, model_type: str = "", role=None, step=None, accuracy=None,
               **shared) -> torch.Tensor:
        return apply_edit(edit, group, shared, model_type, step=step, role=role, accuracy=accuracy)

    return FunctionalGroupMergeMethod(_spec_for(edit), kernel)


def register_all() -> list[str]:
    """Register every edit with mergekit (idempotent). Returns the method names."""
    known = {m.spec.name for m in mk.registered_methods()}
    names = []
    for edit in EDITS.values():
        method = make_method(edit)
        if method.spec.name not in known:
            mk.register(method)
        names.append(method.spec.name)
    return names
