"""An edit, checked and ready to run: its EditPlan, and what both ways of writing it (a merged
checkpoint through mergekit, ``rankedit.edits.build``; a LoRA adapter, ``rankedit.edits.lora``)
record of it: the inputs with their hashes, the parameters, the size that sets the thread count.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from rankedit.core.coverage import coverage, line as coverage_line, trained_at_base, warning as coverage_warning
from rankedit.core.errors import RankeditError
from rankedit.core.kept import release as release_kept
from rankedit.core.modules import ModuleInfo, classify, split_key
from rankedit.edits.matrix_edit import Road
from rankedit.edits.registry import Edit, EditParams
from rankedit.files.checkpoint import Checkpoint
import logging
from tqdm.auto import tqdm
from rankedit.core.modules import as_linear
from rankedit.edits.ahead import beside
from rankedit.edits import matrix_edit
from rankedit.edits.matrix_edit import compute_dtype, place_of
from rankedit.edits.registry import MatrixInputs, matrix_seed
from rankedit.files.hashes import checkpoint_sha256
from rankedit.files.plain_read import read_tensor


@dataclass
class EditPlan:
    edit: Edit
    params: EditParams
    base: Checkpoint
    tuned: list[Checkpoint]
    other: Optional[Checkpoint]
    matrices: list[str]  # the matrices that get edited: tensor names, ``name[e]`` for expert e of a fused stack
    road: Road = field(default_factory=Road)  # what the matrix edits share (``rankedit.edits.matrix_edit``)
    left: dict = field(default_factory=dict)  # matrix -> why it is not edited (left to --rest)
    writer: Optional[dict] = None  # how a merged checkpoint is written: {"route": mergekit|streamed, "reason"}

    def tensor_info(self, name: str) -> ModuleInfo:
        return classify(name, self.base.info(name).shape, self.base.model_type, self.base.config)

    def shape(self, key: str) -> tuple[int, ...]:
        """A matrix's stored shape (one expert's slice of a fused stack)."""
        name, e = split_key(key)
        shape = tuple(self.base.info(name).shape)
        return shape[1:] if e is not None else shape

    def numel(self, key: str) -> int:
        a, b = self.shape(key)
        return a * b

    def stored_dtype(self, key: str) -> str:
        return self.base.info(split_key(key)[0]).dtype


def plan_inputs(plan: EditPlan) -> list[Checkpoint]:
    return [plan.base, *plan.tuned] + ([plan.other] if plan.other else [])


def input_paths(plan: EditPlan) -> list[Path]:
    """Every checkpoint an edit reads: an output may never be, hold or lie inside one."""
    return [ck.path for ck in plan_inputs(plan)]


def inputs_record(plan: EditPlan, hashes: dict[Path, dict]) -> dict:
    """The manifest's "inputs": each checkpoint's resolved path and file hashes (and step, for a run)."""
    def rec(ck: Checkpoint) -> dict:
        return {"path": str(ck.path.resolve()), "sha256": hashes[ck.path]}

    steps = getattr(plan.params, "steps", None)
    return {
        "base": rec(plan.base),
        "tuned": [dict(rec(ck), step=(steps[i] if steps else None)) for i, ck in enumerate(plan.tuned)],
        "other": rec(plan.other) if plan.other else None,
    }


def start_hashing(pool: ThreadPoolExecutor, plan: EditPlan):
    """path -> future of its checkpoint's sha256, computed in ``pool`` while the edit runs."""
    return {ck.path: pool.submit(checkpoint_sha256, ck) for ck in plan_inputs(plan)}


def record_params(plan: EditPlan, as_lora: bool) -> dict:
    out = plan.params.model_dump(mode="json")
    out["as_lora"] = as_lora
    return out


def largest_short_side(plan: EditPlan) -> int:
    """The short side of the biggest matrix the edit decomposes (what sizes its thread count)."""
    return max(min(plan.shape(n)) for n in plan.matrices)


def run_matrices(plan: EditPlan, device: str = "cpu", progress: bool = False, desc: str = "edit"):
    """Yield a ``MatrixEdit`` for every edited matrix: ``rankedit.edits.matrix_edit.edit_matrix``, the very
    call mergekit's adapter and the streamed writer make, one matrix in memory at a time, its ``ahead``
    work beside it as beside a merge."""
    with computed_ahead(plan, device):
        reader = _Reader(plan, device)
        for key in tqdm(plan.matrices, desc=desc, disable=not progress):
            name, _ = split_key(key)
            w0, tuned, other = reader.matrices(key)
            yield matrix_edit.edit_matrix(plan.edit, plan.params, key, plan.tensor_info(name), w0, tuned, other, device=device,
                              across=plan.road.across.get(key))


@contextlib.contextmanager
def computed_ahead(plan: EditPlan, device: str = "cpu") -> Iterator[int]:
    """The edit's ``ahead`` work beside the block (the merge) for the plan's matrices, read with plain
    file reads (``rankedit.edits.ahead.beside``); the context yields how many matrices were scheduled.
    On exit the block's thread drops the buffers it kept from matrix to matrix (``rankedit.core.kept``),
    each the size of the largest matrix; the background threads' go with the threads."""
    work = plan.edit.ahead(plan.params) if plan.edit.ahead is not None else None
    try:
        with beside(work, plan.matrices, lambda key: matrix_inputs(plan, key, device, plain=True),
                    lambda key: tuple(plan.shape(key)), device) as n:
            yield n
    finally:
        release_kept()


class _Reader:
    """One matrix's stored tensors from the plan's checkpoints; a fused stack is read once for its E experts."""

    def __init__(self, plan: EditPlan, device: str = "cpu", plain: bool = False):
        self.plan, self.device = plan, device
        self.get = (lambda ck, n: read_tensor(ck, n)) if plain else (lambda ck, n: ck.get(n))  # noqa: E731
        self._held: tuple[str, tuple] | None = None

    def tensors(self, name: str) -> tuple:
        if self._held is None or self._held[0] != name:
            p = self.plan
            self._held = (name, (self.get(p.base, name), tuple(self.get(ck, name) for ck in p.tuned),
                                 self.get(p.other, name) if p.other is not None else None))
        return self._held[1]

    def matrices(self, key: str) -> tuple:
        name, e = split_key(key)
        w0, tuned, other = self.tensors(name)
        if e is None:
            return w0, tuned, other
        return w0[e], tuple(t[e] for t in tuned), other[e] if other is not None else None


def matrix_inputs(plan: EditPlan, key: str, device: str = "cpu", plain: bool = False):
    """One matrix's ``MatrixInputs`` read from the plan's checkpoints, as ``edit_matrix`` makes them
    (``plain``: with plain file reads, ``rankedit.files.plain_read``, for a second reader beside mergekit)."""
    p = plan.params
    info = plan.tensor_info(split_key(key)[0])
    w0, tuned, other = _Reader(plan, device, plain).matrices(key)
    dtype = compute_dtype(w0.dtype)
    lin = lambda t: as_linear(t.to(device=device, dtype=dtype), info)  # noqa: E731
    return MatrixInputs(w0=lin(w0), tuned=tuple(lin(t) for t in tuned), stored=tuple(t.dtype for t in tuned),
                        steps=getattr(p, "steps", None),
                        other=lin(other) if other is not None else None, seed=matrix_seed(p.seed, key),
                        place=place_of(key, info), across=plan.road.across.get(key),
                        merge=plan.edit.inputs == "runs")


def plan_coverage(plan: EditPlan, copied_from: Optional[str]) -> dict:
    """The coverage record of an edit (``rankedit.core.coverage``): its matrices, what is copied and from which
    side, and the trained weights it holds at the base's values (read and compared here)."""
    import torch

    ck = plan.base
    shapes = {n: tuple(ck.info(n).shape) for n in ck.names}
    infos = {n: plan.tensor_info(n) for n in ck.names}
    edited = {split_key(k)[0] for k in plan.matrices}
    tuned = plan.tuned[-1]
    at_base = []
    if copied_from != "tuned":
        cands = [n for n in ck.names if n not in edited and len(shapes[n]) >= 2]
        at_base = trained_at_base(cands, lambda n: not torch.equal(ck.get(n), tuned.get(n)))
    return coverage(shapes, infos, plan.matrices, copied_from=copied_from, left=plan.left, trained_at_base=at_base)


def state_coverage(cov: dict, verb: str = "edited", what: Optional[str] = None) -> None:
    """Log the coverage line (info) and, on stderr, the warning for trained weights left at BASE (``what``:
    the edit's name, which the warning starts with)."""
    log = logging.getLogger("rankedit")
    log.info(coverage_line(cov, verb))
    msg = coverage_warning(cov, what)
    if msg:
        log.warning(msg)


def check_update(plan: EditPlan, facts: list[dict]) -> None:
    """An edit of a zero update would write the base back under the edit's name: refused, naming the inputs."""
    if facts and all(f["dw_norm"] == 0 for f in facts):
        tuned = ", ".join(str(t.path) for t in plan.tuned)
        raise RankeditError(f"the update is zero: {tuned} is identical to the base {plan.base.path} in all "
                            f"{len(facts)} matrices the edit touches, so there is nothing to edit "
                            "(a copy of the base given as TUNED?); nothing was written")
