"""The pipeline plan: a YAML file validated by pydantic models (as mergekit validates its configs).

A plan names the models (a base and its tuned run, or the embedded organism),
the edits to build (method + parameters; controls say what they control) and
how to score them. ``load_plan(path)`` returns a validated ``Plan`` or raises
one RankeditError naming the file and the problem. Nothing here touches a
checkpoint: resolving paths and building the organism is the pipeline's job.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rankedit.errors import RankeditError
from rankedit.resources import shipped_dir

# roles a plan can name as the update an edit works on
RUNS = ("tuned", "sft")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganismSpec(_Strict):
    size: Literal["micro", "small"] = "small"
    seed: int = Field(0, ge=0)
    device: Literal["cpu", "cuda"] = "cpu"


class Checkpoints(_Strict):
    """The tuned run's saved checkpoints (extrapolation): a folder of step-N dirs, or explicit steps."""

    dir: Optional[str] = Field(None, description="folder holding step-N checkpoint directories")
    steps: Optional[list[int]] = None
    paths: Optional[list[str]] = None

    @model_validator(mode="after")
    def _one_form(self):
        if (self.dir is None) == (self.paths is None):
            raise ValueError("give either 'dir' (a folder of step-N checkpoints) or 'paths' with 'steps'")
        if self.paths is not None and (self.steps is None or len(self.steps) != len(self.paths)):
            raise ValueError("'paths' needs 'steps', one per path")
        return self


class EditSpec(_Strict):
    name: str = Field(description="label of the edit in the report and its folder name under OUT/edits")
    method: str
    params: dict = Field(default_factory=dict)
    of: Literal["tuned", "sft"] = Field("tuned", description="whose update the edit keeps part of")
    control_of: Optional[str] = Field(None, description="the edit this one is the control of")
    checkpoints: Optional[float] = Field(
        None, gt=0, le=1,
        description="extrapolate: use the run's checkpoints up to this fraction of training; target = last step",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v) or v in ("base", "tuned", "sft", "other_tuned"):
            raise ValueError(f"edit name {v!r} must be letters, digits, '.', '_' or '-' and not a model role")
        return v


class ScoreSpec(_Strict):
    suite: Optional[str] = "organism"
    tasks: Optional[list[str]] = None
    include_paths: list[str] = Field(default_factory=list)
    limit: Optional[int] = Field(None, ge=1)
    batch_size: Union[int, str] = 64
    backend: Literal["hf", "vllm"] = "hf"
    device: Optional[str] = None
    dtype: Optional[str] = None
    max_gen_toks: Optional[int] = Field(None, ge=1)
    apply_chat_template: Optional[bool] = None
    num_fewshot: Optional[int] = Field(None, ge=0)
    n_boot: int = Field(2000, ge=100)
    score_other_tuned: bool = Field(False, description="also score the second tuned run (seed variation)")

    @model_validator(mode="after")
    def _suite_or_tasks(self):
        if self.tasks is not None:
            self.suite = None
        if self.suite is None and not self.tasks:
            raise ValueError("give a 'suite' or a list of 'tasks'")
        return self


class AnalyzeSpec(_Strict):
    enabled: bool = True
    k: int = Field(16, ge=1)
    device: str = "cpu"
    matched_sft: bool = Field(True, description="also analyse the SFT checkpoint whose update size is closest to RL's")


class Plan(_Strict):
    name: str = "rankedit run"
    organism: Optional[OrganismSpec] = None
    base: Optional[str] = None
    tuned: Optional[str] = None
    other_tuned: Optional[str] = None
    sft: Optional[str] = None
    checkpoints: Optional[Checkpoints] = None
    sft_checkpoints: Optional[Checkpoints] = None
    edits: list[EditSpec] = Field(default_factory=list)
    score: ScoreSpec = Field(default_factory=ScoreSpec)
    analyze: AnalyzeSpec = Field(default_factory=AnalyzeSpec)
    device: str = Field("cpu", description="where edits run their SVDs")

    @model_validator(mode="after")
    def _models(self):
        if self.organism is None:
            missing = [k for k in ("base", "tuned") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"the plan needs {' and '.join(missing)} (checkpoint paths or Hub ids), "
                                 "or 'organism:' to use the embedded model organism")
        names = [e.name for e in self.edits]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"edit names must be unique; repeated: {', '.join(dup)}")
        for e in self.edits:
            if e.control_of is not None and e.control_of not in names:
                raise ValueError(f"edit {e.name!r} is the control of {e.control_of!r}, which is not in the plan")
            if e.of == "sft" and self.organism is None and self.sft is None:
                raise ValueError(f"edit {e.name!r} works on the SFT update, but the plan has no 'sft'")
        return self


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_plan(data: object, source: str = "plan") -> Plan:
    """Validate a plan dict; every error becomes one line naming the field."""
    if not isinstance(data, dict):
        raise RankeditError(f"{source}: expected a mapping at the top level")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise RankeditError(f"{source}: {_where(err['loc'])}: {msg}{more}") from None
    _check_edits(plan, source)
    return plan


def _check_edits(plan: Plan, source: str) -> None:
    """Unknown methods and bad parameters fail here, before any model is built or read."""
    from rankedit.edits import get_edit

    for i, e in enumerate(plan.edits):
        where = f"{source}: edits.{i} ({e.name})"
        try:
            edit = get_edit(e.method)
        except RankeditError as err:
            raise RankeditError(f"{where}: {err}") from None
        params = dict(e.params)
        if edit.inputs == "run":
            # filled in from the run's checkpoints later
            params.setdefault("steps", (1, 2))
            params.setdefault("target_step", 3)
            if plan.checkpoints is None and plan.organism is None and e.of == "tuned":
                raise RankeditError(f"{where}: {e.method} needs the run's checkpoints; add 'checkpoints:' to the plan")
        elif e.checkpoints is not None:
            raise RankeditError(f"{where}: 'checkpoints' only applies to extrapolate")
        try:
            edit.params.model_validate(params)
        except ValidationError as err:
            first = err.errors()[0]
            raise RankeditError(f"{where}: params.{_where(first['loc'])}: {first['msg']}") from None


def find_plan(path: str | os.PathLike) -> Path:
    """PATH when that file exists; otherwise rankedit's example plan of that name.

    ``organism-micro``, ``organism-micro.yaml`` and ``examples/organism-micro.yaml``
    all name the shipped example when no such file is in the current directory,
    so the README's commands work from anywhere, with rankedit installed from a wheel.
    """
    p = Path(path)
    if p.is_file():
        return p
    examples = shipped_dir("examples")
    if p.parent in (Path("."), Path("examples")):
        shipped = examples / (p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml")
        if shipped.is_file():
            return shipped
    known = ", ".join(sorted(f.stem for f in examples.glob("*.yaml") if not f.name.startswith("edit-")))
    raise RankeditError(f"plan not found: {p} (rankedit's example plans: {known})")


def load_plan(path: str | os.PathLike) -> Plan:
    import yaml

    p = find_plan(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RankeditError(f"{p}: cannot read YAML ({str(e).splitlines()[0]})") from None
    return parse_plan(data, str(p))
