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
``rankedit.core.modules.classify`` (attention, MLP, expert, router, shared-expert and mixer
matrices, those of the plan's ``Road`` where a build set one; everything else follows
``rest``) and hands each to ``rankedit.edits.matrix_edit.edit_tensor``, the one road of a
matrix's edit (inputs, dtype, layout, seed, work ahead). Per-matrix facts (energy kept, mask density, rank kept) are
recorded (with the edit's storage cost) through a side channel, ``collect_facts()``: a lock-protected dict that
the adapter fills while a build is collecting, so no second pass over the
weights is needed.
"""

from __future__ import annotations

import contextlib
import threading
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

from rankedit.edits.matrix_edit import current_road, edit_tensor, overflow_message  # noqa: F401 - its old home
from rankedit.edits.registry import EDITS, Edit
from rankedit.core.modules import classify, matrix_keys

PREFIX = "rankedit_"
# pydantic fields that mergekit passes per input instead (a list in a mergekit config is a gradient over layers)
STRUCTURAL = {"steps", "mask_from", "accuracies", "weights"}
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


def record_fact(name: str, item: dict) -> None:
    with _lock:
        if _facts is not None:
            _facts[name] = item


def apply_edit(edit: Edit, group: TensorGroup, shared: dict[str, Any], model_type: str,
               step: Any = None, role: Any = None, accuracy: Any = None, weight: Any = None) -> torch.Tensor:
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

    road = current_road()
    info = classify(name, tuple(base.shape), model_type, road.config)
    keys = matrix_keys(name, tuple(base.shape), info) if info.is_matrix else []
    if road.matrices is not None:  # a plan's: the matrices it edits (a router below k is left to rest)
        keys = [k for k in keys if k in road.matrices]
    if not keys:
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
    if edit.inputs == "runs" and weight is not None and any(weight[e.id] is not None for e in tuned):
        params["weights"] = tuple(weight[e.id] for e in tuned)
    p = edit.params(**params)
    out, done = edit_tensor(edit, p, road, name, info, base, [e.tensor for e in tuned],
                            others[0].tensor if others else None)
    for m in done:
        record_fact(m.key, m.facts(edit, p, base.element_size()))
    return out


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
    if "weights" in edit.params.model_fields:
        params.append(ParameterSpec("weight", Optional[float], ParameterScope.NON_BASE, default=None))
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

    def kernel(group: TensorGroup, /, model_type: str = "", role=None, step=None, accuracy=None, weight=None,
               **shared) -> torch.Tensor:
        return apply_edit(edit, group, shared, model_type, step=step, role=role, accuracy=accuracy, weight=weight)

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
