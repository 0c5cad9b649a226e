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

import os
import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from rankedit.edits.storage import MatrixSize, Storage, dense_cost
import importlib.util
import sys
from importlib import import_module
from importlib.metadata import entry_points
from rankedit.core.errors import RankeditError
from rankedit.core.svd import storage_noise


class EditParams(BaseModel):
    """Parameters every edit takes.

    Numbers are strict: a float must be finite (``factor: .nan`` is refused, not
    carried through every matrix) and an integer must be one (``k: true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rest: Literal["base", "tuned"] = Field(
        "base", description="non-matrix tensors (embeddings, lm_head, norms, biases): base or tuned values"
    )
    seed: StrictInt = Field(0, ge=0, description="seed of every random choice (randomized SVD, random controls)")
    multiplier: float = Field(1.0, description="α: multiply the edit's delta, on top of its own rescale (AlphaRL's α)")

    @classmethod
    def rest_default(cls, values: Mapping[str, Any]) -> str:
        """``rest`` where the parameters ``values`` leave it unset (an edit may start from another checkpoint)."""
        return "base"


@dataclass(frozen=True)
class MatrixPlace:
    """Where a matrix sits in the model (``rankedit.core.modules``): its kind (attention, mlp, expert,
    router, shared_expert, mixer), its layer and, for a routed expert, its index."""

    kind: str
    layer: Optional[int] = None
    expert: Optional[int] = None


class SvdParams(EditParams):
    """Parameters of the edits that take a top-k SVD of each matrix."""

    exact_svd: bool = Field(False, description="always the exact top-k SVD (bit for bit the guarded SVD's exact "
                                               "path), even where the data cannot fix the directions and a "
                                               "certified near-optimal one would do (svd_mode in the manifest)")


@dataclass(frozen=True)
class MatrixInputs:
    """Everything an edit may look at for one matrix, in (out, in) layout."""

    w0: torch.Tensor  # base
    tuned: tuple[torch.Tensor, ...]  # one tuned matrix, a run's checkpoints in step order, or several runs (a merge)
    steps: tuple[int, ...] | None = None  # training steps of ``tuned`` (extrapolate)
    other: torch.Tensor | None = None  # another run's tuned matrix (mask source "from")
    seed: int = 0  # per-matrix seed derived from the recipe seed and the tensor name
    ahead: Any = None  # the result of the edit's ``ahead`` work for this matrix, when it was done beside the merge
    place: Optional[MatrixPlace] = None  # kind, layer, expert (edits that choose by kind read it)
    # what the edit's ``across`` decided for this matrix from every matrix's place and update norm (expert-topn)
    across: Any = None
    merge: bool = False  # ``tuned`` holds several runs from this base, each its own update (a merge's inputs)
    stored: tuple[torch.dtype, ...] = ()  # the dtype each of ``tuned`` was read from (before the compute dtype)

    @property
    def w1(self) -> torch.Tensor:
        """The tuned matrix (the last checkpoint of a run)."""
        return self.tuned[-1]

    def tuned_noise(self, i: int = -1) -> float:
        """The storage noise of ``tuned[i]`` (``rankedit.core.svd.storage_noise``), from its stored dtype where known."""
        return storage_noise(self.tuned[i], self.stored[i] if self.stored else None)

    @cached_property
    def dw(self) -> torch.Tensor:
        """tuned - w0, computed once: the edit and the adapter's facts both read it (a 4.3M-entry
        subtraction and allocation each time it was a plain property: 9% of a rank-k build's compute).
        For a merge, the sum of the runs' updates (task arithmetic at weight 1): the reference of its facts."""
        if self.merge:
            return torch.stack(self.deltas).sum(dim=0)
        return self.tuned[-1] - self.w0

    @cached_property
    def deltas(self) -> tuple[torch.Tensor, ...]:
        """Each run's update, tuned_i - w0 (a merge)."""
        return tuple(t - self.w0 for t in self.tuned)


@dataclass(frozen=True)
class EditResult:
    delta: torch.Tensor  # edited matrix = w0 + delta
    density: Optional[float] = None  # fraction of entries of dW kept (mask edits)
    rank_kept: Optional[int] = None  # rank of the kept update (rank-k edits)
    svd_error: Optional[float] = None  # bound on the relative error of the top-k reconstruction (edits using SVDs)
    svd_identifiable: Optional[bool] = None  # False: s_k and s_k+1 nearly tied, the top-k subspace is ill-determined
    svd_mode: Optional[str] = None  # "exact" | "near-optimal" (rankedit.core.guarded_svd.Accuracy.mode)
    svd_residual_bound: Optional[float] = None  # near-optimal: ε of ‖dW - dW_k‖ <= (1 + ε) · optimal rank-k residual
    sign_ambiguous: Optional[int] = None  # checkpoints whose sign alignment rested on noise (extrapolate)
    # the factor c in delta = c · (the part of dW the edit keeps), e.g. rank-k's norm rescale; 1: none
    rescale: float = 1.0
    stored_rank: Optional[int] = None  # rank of the factors the artifact stores, where the edit chooses it per matrix
    # what the artifact stores of this matrix, before α (``rankedit.edits.artifact``): "B", "A" for a
    # low-rank edit (delta = B @ A), "kept" (bool) for a mask, "scales" (their shape) for signs
    parts: Optional[Mapping[str, torch.Tensor]] = None
    # the edited matrix itself, where w0 + delta would round it (a checkpoint kept as it is, bit for bit)
    weight: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class Cli:
    """How a parameter appears as a ``rankedit edit`` option where its name and type do not say it
    (put it in the field's ``Annotated[...]``): another flag name, a metavar, or required on the
    command line although the Python API has a default."""

    flag: Optional[str] = None
    metavar: Optional[str] = None
    required: bool = False


def cli_flag(name: str, field: Any) -> str:
    """The ``rankedit edit`` option of a parameter: its ``Cli(flag=...)``, else ``--field-name``."""
    cli = next((m for m in field.metadata if isinstance(m, Cli)), None)
    return (cli.flag if cli is not None and cli.flag else None) or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Control:
    """The edit that controls another: ``method`` run with the edit's parameters updated by ``params``."""

    method: str
    params: dict = field(default_factory=dict)


def k_of(p: EditParams) -> Optional[int]:
    """The default answer to "how many singular directions of each matrix does this edit compute?"."""
    return getattr(p, "k", None)


@dataclass(frozen=True)
class Edit:
    """Everything rankedit knows about one edit; the CLI, the plan, the report and the card read it."""

    name: str
    fn: Callable[[MatrixInputs, EditParams], EditResult]
    params: type[EditParams]  # its fields become the options of `rankedit edit NAME`
    help: str  # `rankedit edit NAME --help`; the first line is the summary in listings
    describe: Callable[[EditParams], str]  # what it keeps, with these parameters (report's "keeps", card)
    # run: several checkpoints of one run with their steps; runs: several runs from one base (a merge)
    inputs: Literal["pair", "run", "runs"] = "pair"
    card_text: Optional[str] = None  # the card's sentence; default: the summary
    # the edit that controls this one, or a function of the parameters giving it (None: it is a control)
    control: Union[Control, Callable[[EditParams], Optional[Control]], None] = None
    storage: Callable[[EditParams, MatrixSize], Storage] = dense_cost  # its artifact's size, per matrix
    options: Optional[type[BaseModel]] = None  # options of the build, not of the math (rank-k: --as-lora)
    svd_rank: Callable[[EditParams], Optional[int]] = k_of  # checked against each matrix's short side
    # per-matrix work (a decomposition) that may run beside the merge, handed to the edit as ``x.ahead``; a pure
    # function of the matrix's inputs computing on values, not addresses, or None (rankedit.edits.ahead)
    ahead: Optional[Callable[[EditParams], Optional[Callable[[MatrixInputs], Any]]]] = None
    # how its artifact stores a matrix (``rankedit.edits.artifact``): lora, sparse, sign or dense (the edited
    # matrix itself, always faithful), or a function of the parameters giving one
    artifact: Union[str, Callable[[EditParams], str]] = "dense"
    # a choice made across matrices before any is edited (expert-topn: which experts of each layer): given the
    # parameters and {matrix: (MatrixPlace, ‖ΔW‖²)} of every edited matrix, {matrix: value} handed to the
    # edit as ``x.across``; None: each matrix on its own
    across: Optional[Callable[[EditParams, Mapping[str, tuple[MatrixPlace, float]]], Mapping[str, Any]]] = None
    needs: Optional[str] = None  # a kind of matrix (rankedit.core.modules) the checkpoint must hold: "expert", "router"

    def artifact_for(self, params: EditParams) -> str:
        return self.artifact(params) if callable(self.artifact) else self.artifact

    @property
    def summary(self) -> str:
        return self.help.strip().splitlines()[0]

    @property
    def card(self) -> str:
        return self.card_text or self.summary[0].lower() + self.summary[1:].rstrip(".")

    def run(self, x: MatrixInputs, p: EditParams) -> EditResult:
        """The pure function, then the common multiplier α (only when it is not 1, so that every
        edit without one stays byte-identical)."""
        res = self.fn(x, p)
        if p.multiplier != 1:
            res = replace(res, delta=res.delta * p.multiplier, rescale=res.rescale * p.multiplier, weight=None)
        return res

    def control_for(self, params: EditParams) -> Optional[tuple[str, EditParams]]:
        """The control of this edit with these parameters, as (method, validated parameters)."""
        control = self.control(params) if callable(self.control) else self.control
        if control is None:
            return None
        target = get_edit(control.method)
        fields = target.params.model_fields
        values = {k: v for k, v in params.model_dump().items() if k in fields} | control.params
        return target.name, target.params.model_validate(values)


EDITS: dict[str, Edit] = {}


def register(name: str, params: type[EditParams], *, help: str, describe: Callable[[EditParams], str], **record):
    """Decorator: add a pure edit function to the registry under ``name`` (``record``: the other
    fields of ``Edit``)."""

    def deco(fn):
        if name in EDITS:
            raise ValueError(f"edit {name!r} registered twice")
        EDITS[name] = Edit(name=name, fn=fn, params=params, help=help, describe=describe, **record)
        return fn

    return deco


def get_edit(name: str) -> Edit:
    if name not in EDITS:
        raise RankeditError(f"unknown edit method {name!r}; choose one of: {', '.join(EDITS)}")
    return EDITS[name]


def parse_params(edit: Edit, params: dict[str, Any]) -> EditParams:
    """The edit's validated parameters; every problem in one line naming the field."""
    try:
        return edit.params(**params)
    except ValidationError as e:
        parts = []
        fields = edit.params.model_fields
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if loc in fields:  # the Python/YAML name and the command-line option
                loc = f"{loc} ({cli_flag(loc, fields[loc])})"
            parts.append(f"{loc}: {msg}" if loc else msg)
        raise RankeditError(f"invalid parameters for {edit.name}: " + "; ".join(parts)) from None


def describe(method: str, params: Mapping[str, Any]) -> str:
    """What an edit keeps, from a manifest's parameters (keys that are not the edit's, such as
    ``as_lora``, are ignored); an edit rankedit does not know is named as it is."""
    edit = EDITS.get(method)
    if edit is None:
        return method
    fields = edit.params.model_fields
    return edit.describe(parse_params(edit, {k: v for k, v in params.items() if k in fields}))


def matrix_seed(seed: int, name: str) -> int:
    """A per-matrix seed: stable across runs and machines (crc32, not Python's hash)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


# ---- edits from outside the package --------------------------------------------------------
PLUGINS_ENV = "RANKEDIT_PLUGINS"  # Python files or module names, separated by os.pathsep
ENTRY_POINTS = "rankedit.edits"  # entry-point group of installed packages: name = "module"
_loaded: set[str] = set()


def load_plugins() -> None:
    """Import the modules that register edits from outside rankedit (idempotent): those of the
    entry-point group ``rankedit.edits`` and those listed in $RANKEDIT_PLUGINS."""
    refs = [ep.value for ep in entry_points(group=ENTRY_POINTS)]
    refs += [r for r in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if r.strip()]
    for ref in refs:
        if ref in _loaded:
            continue
        _loaded.add(ref)
        try:
            if ref.endswith(".py"):
                _import_file(Path(ref))
            else:
                import_module(ref)
        except Exception as e:  # noqa: BLE001 - any failure of a user's module is one line naming it
            raise RankeditError(f"edit plugin {ref}: {type(e).__name__}: {e}") from None


def _import_file(path: Path) -> None:
    name = f"rankedit_plugin_{path.stem}_{zlib.crc32(str(path.resolve()).encode()):08x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"no Python file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
