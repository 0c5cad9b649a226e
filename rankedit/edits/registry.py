"""The one registry of edits: name -> pure tensor function + parameter schema.

An edit maps the matrices of one 2-D attention/MLP weight (base ``w0``, the
tuned version(s), optionally another run's tuned matrix) to a new *delta*; the
edited matrix is ``w0 + delta``. Functions here never touch files, devices or
logs: tensors in, tensors out (plus a few facts about what was kept). The
mergekit adapter (``mergekit_methods.py``), the CLI and the Python API all find
edits by name in ``EDITS``.

All matrices arrive in nn.Linear's (out, in) layout (GPT-2 Conv1D weights are
transposed by the adapter) and in float32 (float64 if the inputs are).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt


class EditParams(BaseModel):
    """Parameters every edit takes.

    Numbers are strict: a float must be finite (``factor: .nan`` is refused, not
    carried through every matrix) and an integer must be one (``k: true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rest: Literal["base", "tuned"] = Field(
        "base", description="non-matrix tensors (embeddings, lm_head, norms, biases): base or tuned values"
    )
    seed: StrictInt = Field(0, ge=0, description="seed of every random choice (randomized SVD, random controls)")


@dataclass(frozen=True)
class MatrixInputs:
    """Everything an edit may look at for one matrix, in (out, in) layout."""

    w0: torch.Tensor  # base
    tuned: tuple[torch.Tensor, ...]  # one tuned matrix, or a run's checkpoints in step order
    steps: tuple[int, ...] | None = None  # training steps of ``tuned`` (extrapolate)
    other: torch.Tensor | None = None  # another run's tuned matrix (mask source "from")
    seed: int = 0  # per-matrix seed derived from the recipe seed and the tensor name

    @property
    def w1(self) -> torch.Tensor:
        """The tuned matrix (the last checkpoint of a run)."""
        return self.tuned[-1]

    @property
    def dw(self) -> torch.Tensor:
        return self.tuned[-1] - self.w0


@dataclass(frozen=True)
class EditResult:
    delta: torch.Tensor  # edited matrix = w0 + delta
    density: Optional[float] = None  # fraction of entries of dW kept (mask edits)
    rank_kept: Optional[int] = None  # rank of the kept update (rank-k edits)
    svd_error: Optional[float] = None  # bound on the relative error of the top-k reconstruction (edits using SVDs)
    svd_identifiable: Optional[bool] = None  # False: s_k and s_k+1 nearly tied, the top-k subspace is ill-determined


@dataclass(frozen=True)
class Edit:
    name: str
    fn: Callable[[MatrixInputs, EditParams], EditResult]
    params: type[EditParams]
    summary: str  # one line for --help listings
    inputs: Literal["pair", "run"] = "pair"  # run: several checkpoints of one run with their steps
    extra: dict = field(default_factory=dict)


EDITS: dict[str, Edit] = {}


def register(name: str, params: type[EditParams], summary: str, inputs: str = "pair"):
    """Decorator: add a pure edit function to the registry under ``name``."""

    def deco(fn):
        if name in EDITS:
            raise ValueError(f"edit {name!r} registered twice")
        EDITS[name] = Edit(name=name, fn=fn, params=params, summary=summary, inputs=inputs)
        return fn

    return deco


def get_edit(name: str) -> Edit:
    from rankedit.core.errors import RankeditError

    if name not in EDITS:
        raise RankeditError(f"unknown edit method {name!r}; choose one of: {', '.join(EDITS)}")
    return EDITS[name]


def matrix_seed(seed: int, name: str) -> int:
    """A per-matrix seed: stable across runs and machines (crc32, not Python's hash)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)
