"""An edit, checked and ready to run: its EditPlan, and what both ways of writing it (a merged
checkpoint through mergekit, ``rankedit.edits.build``; a LoRA adapter, ``rankedit.edits.lora``)
record of it: the inputs with their hashes, the parameters, the size that sets the thread count.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rankedit.core.errors import RankeditError
from rankedit.edits.registry import Edit, EditParams
from rankedit.files.checkpoint import Checkpoint


@dataclass
class EditPlan:
    edit: Edit
    params: EditParams
    base: Checkpoint
    tuned: list[Checkpoint]
    other: Optional[Checkpoint]
    matrices: list[str]  # names of the 2-D attention/MLP weights that get edited


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
    from rankedit.files.hashes import checkpoint_sha256

    return {ck.path: pool.submit(checkpoint_sha256, ck) for ck in plan_inputs(plan)}


def record_params(plan: EditPlan, as_lora: bool) -> dict:
    out = plan.params.model_dump(mode="json")
    out["as_lora"] = as_lora
    return out


def largest_short_side(plan: EditPlan) -> int:
    """The short side of the biggest matrix the edit decomposes (what sizes its thread count)."""
    return max(min(plan.base.info(n).shape) for n in plan.matrices)


def compute_dtype(stored: str):
    """The precision an edit runs in, as the mergekit adapter runs it: float64 for a float64 source, else float32."""
    import torch

    return torch.float64 if stored == "float64" else torch.float32


def run_matrices(plan: EditPlan, device: str = "cpu", progress: bool = False, desc: str = "edit"):
    """Yield ``(name, info, x, result)`` for every edited matrix: the edit run outside mergekit on the very
    inputs the mergekit adapter gives it (``rankedit.edits.mergekit_methods.apply_edit``), one matrix in
    memory at a time, its ``ahead`` work beside it as beside a merge; ``info`` says the stored layout
    (``rankedit.core.modules``)."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    from rankedit.core.modules import classify
    from rankedit.edits.ahead import take

    with computed_ahead(plan, device):
        for name in tqdm(plan.matrices, desc=desc, disable=not progress):
            info = classify(name, plan.base.info(name).shape, plan.base.model_type)
            x = matrix_inputs(plan, name, device)
            if plan.edit.ahead is not None:
                x = replace(x, ahead=take(name, x))
            yield name, info, x, plan.edit.run(x, plan.params)


def computed_ahead(plan: EditPlan, device: str = "cpu"):
    """The edit's ``ahead`` work beside the block (the merge) for the plan's matrices, read with plain
    file reads (``rankedit.edits.ahead.beside``); the context yields how many matrices were scheduled."""
    from rankedit.edits.ahead import beside

    work = plan.edit.ahead(plan.params) if plan.edit.ahead is not None else None
    return beside(work, plan.matrices, lambda name: matrix_inputs(plan, name, device, plain=True),
                  lambda name: min(plan.base.info(name).shape), device)


def matrix_inputs(plan: EditPlan, name: str, device: str = "cpu", plain: bool = False):
    """One matrix's ``MatrixInputs`` read from the plan's checkpoints, as the mergekit adapter makes them
    (``plain``: with plain file reads, ``rankedit.files.plain_read``, for a second reader beside mergekit)."""
    from rankedit.core.modules import as_linear, classify
    from rankedit.edits.registry import MatrixInputs, matrix_seed
    from rankedit.files.plain_read import read_tensor

    p = plan.params
    info = classify(name, plan.base.info(name).shape, plan.base.model_type)
    dtype = compute_dtype(plan.base.info(name).dtype)
    get = (lambda ck: read_tensor(ck, name)) if plain else (lambda ck: ck.get(name))  # noqa: E731
    lin = lambda t: as_linear(t.to(device=device, dtype=dtype), info)  # noqa: E731
    return MatrixInputs(w0=lin(get(plan.base)), tuned=tuple(lin(get(ck)) for ck in plan.tuned),
                        steps=getattr(p, "steps", None),
                        other=lin(get(plan.other)) if plan.other is not None else None,
                        seed=matrix_seed(p.seed, name))


def check_update(plan: EditPlan, facts: list[dict]) -> None:
    """An edit of a zero update would write the base back under the edit's name: refused, naming the inputs."""
    if facts and all(f["dw_norm"] == 0 for f in facts):
        tuned = ", ".join(str(t.path) for t in plan.tuned)
        raise RankeditError(f"the update is zero: {tuned} is identical to the base {plan.base.path} in all "
                            f"{len(facts)} matrices the edit touches, so there is nothing to edit "
                            "(a copy of the base given as TUNED?); nothing was written")
