"""One matrix's edit: the one road every writer of an edit takes.

``edit_matrix`` prepares one matrix's inputs (float32, float64 for a float64 source; nn.Linear's
``(out, in)`` layout; the per-matrix seed; its place: kind, layer, expert; the plan-wide choice
``across`` made for it; the decomposition done ahead of it, ``rankedit.edits.ahead``), runs the
edit's pure function and checks its result. mergekit's adapter (``rankedit.edits.mergekit_methods``),
the streamed writer (``rankedit.edits.streamed``), the LoRA export (``rankedit.edits.lora``) and
the artifact writer (``rankedit.edits.artifact``) all call it, so a merged checkpoint, its LoRA
adapter and its artifact come from the same call, bit for bit. ``edit_tensor`` runs it on a
stored tensor: one matrix, or each expert of a fused ``[E, out, in]`` stack.

``Road`` is what a plan knows beyond one matrix (which matrices it edits, the ``across`` choice,
the config that places tensors); mergekit's adapter reads the one of the build under way
(``riding``), since mergekit hands it one tensor at a time.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch

from rankedit.core.errors import RankeditError
from rankedit.core.modules import ModuleInfo, as_linear, expert_of, from_linear, matrix_key
from rankedit.edits.ahead import take
from rankedit.edits.manifest import matrix_facts
from rankedit.edits.realized import stored_matrix
from rankedit.edits.registry import Edit, EditParams, EditResult, MatrixInputs, MatrixPlace, matrix_seed
from rankedit.edits.storage import MatrixSize
from rankedit.files.checkpoint import all_finite


def compute_dtype(stored) -> torch.dtype:
    """The precision an edit runs in: float64 for a float64 source, else float32 (``stored``: a dtype or its name)."""
    return torch.float64 if stored in (torch.float64, "float64") else torch.float32


@dataclass(frozen=True)
class Road:
    """What a plan knows beyond one matrix: the matrices it edits (None: every matrix ``classify``
    finds), the edit's ``across`` choice per matrix, and the config that places tensors."""

    matrices: Optional[frozenset] = None
    across: Mapping[str, Any] = field(default_factory=dict)
    config: Optional[Mapping] = None


@dataclass(frozen=True)
class MatrixEdit:
    key: str  # the matrix: a tensor's name, with [e] for expert e of a fused stack
    info: ModuleInfo
    x: MatrixInputs
    result: EditResult
    stored: torch.dtype  # the dtype the checkpoint stores it in

    @property
    def linear(self) -> torch.Tensor:
        """The edited matrix in (out, in) layout and compute precision."""
        return self.result.weight if self.result.weight is not None else self.x.w0 + self.result.delta

    @cached_property
    def _written(self) -> tuple[torch.Tensor, dict]:
        """The edited matrix rounded to its stored dtype ((out, in) layout), and the norms of the edit as
        written, E' = round(W0 + E) - W0 (``rankedit.edits.realized``)."""
        return stored_matrix(self.x.w0, self.result.delta, self.stored, self.result.weight)

    @property
    def weight(self) -> torch.Tensor:
        """The edited matrix as the checkpoint stores it (layout and dtype): what every writer writes."""
        return from_linear(self._written[0], self.info)

    def facts(self, edit: Edit, params: EditParams, itemsize: Optional[int] = None, written: bool = True) -> dict:
        """The manifest's facts of this matrix, its storage counted at ``itemsize`` bytes (default: stored);
        ``written``: with the figures of the edit as written in the stored dtype (a checkpoint's writers)."""
        size = MatrixSize(tuple(self.x.w0.shape), itemsize or torch.empty((), dtype=self.stored).element_size(),
                          self.result.density, self.result.stored_rank)
        return matrix_facts(self.key, self.x.dw, self.result, edit.storage(params, size),
                            self._written[1] if written else None)


def place_of(key: str, info: ModuleInfo) -> MatrixPlace:
    return MatrixPlace(info.kind, info.layer, expert_of(key, info))


def edit_matrix(edit: Edit, params: EditParams, key: str, info: ModuleInfo, w0: torch.Tensor,
                tuned: Sequence[torch.Tensor], other: Optional[torch.Tensor] = None, *, device=None,
                across: Any = None) -> MatrixEdit:
    """Run ``edit`` on one matrix (tensors in their stored layout and dtype); the only place an edit runs."""
    dtype = compute_dtype(w0.dtype)
    lin = lambda t: as_linear(t.to(device=device or t.device, dtype=dtype), info)  # noqa: E731
    x = MatrixInputs(w0=lin(w0), tuned=tuple(lin(t) for t in tuned), stored=tuple(t.dtype for t in tuned),
                     steps=getattr(params, "steps", None),
                     other=lin(other) if other is not None else None, seed=matrix_seed(params.seed, key),
                     place=place_of(key, info), across=across, merge=edit.inputs == "runs")
    if edit.ahead is not None:  # its decomposition, when it was done beside the merge (rankedit.edits.ahead)
        x = replace(x, ahead=take(key, x))
    res = edit.run(x, params)
    if res.delta.shape != x.w0.shape:
        raise RuntimeError(f"internal: {edit.name} returned a {tuple(res.delta.shape)} update for {key} "
                           f"{tuple(x.w0.shape)}")
    m = MatrixEdit(key, info, x, res, w0.dtype)
    if not (math.isfinite(float(res.delta.norm())) and all_finite(m.weight)):  # the inputs were checked finite
        raise RankeditError(overflow_message(edit.name, params, key, w0.dtype))
    return m


def overflow_message(method: str, p, name: str, dtype) -> str:
    """Finite inputs, a finite result out of range: a parameter too large for the dtype, said so."""
    what = f"--factor {p.factor:g}" if hasattr(p, "factor") else f"the {method} edit"
    dt = str(dtype).removeprefix("torch.")
    return (f"{what} overflows {dt}: the edited {name} (or its update's norm) goes beyond {dt}'s largest "
            f"finite value {torch.finfo(dtype).max:.3g}; choose a smaller value (nothing was written)")


def edit_tensor(edit: Edit, params: EditParams, road: Road, name: str, info: ModuleInfo, base: torch.Tensor,
                tuned: Sequence[torch.Tensor], other: Optional[torch.Tensor] = None,
                device=None) -> tuple[torch.Tensor, list[MatrixEdit]]:
    """One stored tensor edited: a 2-D matrix, or each expert of a fused stack (stacked back)."""
    if base.ndim == 2:
        keys = [(name, None)]
    else:
        keys = [(matrix_key(name, e), e) for e in range(base.shape[0])]
    done = []
    for key, e in keys:
        if road.matrices is not None and key not in road.matrices:
            done.append(None)
            continue
        pick = (lambda t: t) if e is None else (lambda t: t[e])  # noqa: E731
        done.append(edit_matrix(edit, params, key, info, pick(base), [pick(t) for t in tuned],
                                pick(other) if other is not None else None, device=device,
                                across=road.across.get(key)))
    edits = [d for d in done if d is not None]
    if base.ndim == 2:
        return (edits[0].weight if edits else base), edits
    slices = [d.weight.to(base.device) if d is not None else base[e] for e, d in enumerate(done)]
    return torch.stack(slices), edits


_road: Optional[Road] = None
_lock = threading.Lock()


@contextlib.contextmanager
def riding(road: Road) -> Iterator[Road]:
    """Make ``road`` the one mergekit's adapter reads while the block (a merge) runs."""
    global _road
    with _lock:
        if _road is not None:
            raise RuntimeError("riding() is not re-entrant")
        _road = road
    try:
        yield road
    finally:
        with _lock:
            _road = None


def current_road() -> Road:
    """The road of the build under way, or the default one (a plain mergekit YAML run)."""
    return _road if _road is not None else Road()
