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
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rankedit.core.errors import RankeditError
from rankedit.analysis.analyze_options import AnalyzeOptions
from rankedit.core.resources import shipped_dir
from rankedit.files.yaml_text import load_yaml
from rankedit.organism.runs import parse_skills, tuned_runs
from rankedit.pipeline.kl_spec import KLSpec
from rankedit.pipeline.plan_checks import canonical_runs, edit_errors, huge_integers, merge_problem, raise_in_order, where
from rankedit.pipeline.trajectory_spec import TrajectorySpec
from rankedit.scoring.score_options import ScoreOptions

# roles a plan can name as the update an edit works on
RUNS = ("tuned", "sft")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganismSpec(_Strict):
    size: Literal["micro", "small"] = "small"
    seed: int = Field(0, ge=0)
    seeds: Optional[list[Annotated[int, Field(ge=0)]]] = Field(
        None, min_length=1, description="several organism seeds: each is built and edited, and the report "
                                        "gives per-seed and across-seed intervals")
    device: Literal["cpu", "cuda"] = "cpu"
    skills: list[str] = Field(["id"], min_length=1, description="skills trained with GRPO: [id] or [id, sum] "
                                                                 "(a second skill's run is rl-sum, its base learns both)")
    rl_seeds: int = Field(2, ge=2, description="GRPO runs of the id skill from the one base: rl, rl-seed2, "
                                               "rl-seed3, ... (a seed soup's ingredients)")

    @model_validator(mode="after")
    def _seed_or_seeds(self):
        if self.seeds is not None:
            if "seed" in self.model_fields_set:
                raise ValueError("give 'seed' or 'seeds', not both")
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds must be distinct, got {self.seeds}")
        try:
            self.skills = list(parse_skills(self.skills))
        except RankeditError as e:
            raise ValueError(str(e)) from None
        return self

    def run_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [self.seed]

    def run_names(self) -> tuple[str, ...]:
        """The organism's tuned runs a plan can name: rl, rl-seed2, sft, then rl-SKILL and rl-seed3.. rl-seedN."""
        return tuned_runs(self.skills, self.rl_seeds)


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


def _check_name(v: str, what: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v) or v in ("base", "tuned", "sft", "other_tuned"):
        raise ValueError(f"{what} name {v!r} must be letters, digits, '.', '_' or '-' and not a model role")
    return v


class RunSpec(_Strict):
    """One of several tuned runs of the same base (seeds of a real RL recipe)."""

    name: str = Field(description="label of the run in the report and its folder under OUT/runs")
    tuned: str
    other_tuned: Optional[str] = None
    sft: Optional[str] = None
    checkpoints: Optional[Checkpoints] = None
    sft_checkpoints: Optional[Checkpoints] = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _check_name(v, "run")




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
    dtype: Literal["source", "float32"] = Field(
        "source", description="dtype of the written checkpoint: source (each tensor's own; bf16 rounds the edit) or "
                              "float32 (the edit exact, twice a bf16 model's bytes)")
    runs: Optional[list[str]] = Field(
        None, description="a merge (in 'merges:'): the plan's runs it merges, in order: tuned, other_tuned, sft, "
                          "or an organism's runs by name (rl, rl-seed2, rl-sum, rl-seed3, ...)")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _check_name(v, "edit")


class ScoreSpec(ScoreOptions, _Strict):
    """``score:``: lm-eval's settings (``rankedit.scoring.score_options.ScoreOptions``, as `rankedit score` takes them)
    and the plan's own."""

    suite: Optional[str] = "organism"
    tasks: Optional[list[str]] = None
    include_paths: list[str] = Field(default_factory=list)
    data_dir: Optional[str] = Field(None, description="read every Hub dataset of the tasks from local copies "
                                                      "(DIR/OWNER/NAME/, as rankedit score --data-dir)")
    device: Optional[str] = None
    dtype: Optional[str] = None
    apply_chat_template: Optional[bool] = None
    # sampled scoring (greedy when none is set): a suite's named profile and/or explicit values over it
    profile: Optional[str] = Field(None, description="a named sampled profile of the suite, e.g. reasoning's avg16")
    n_boot: int = Field(2000, ge=100)
    score_other_tuned: bool = Field(False, description="also score the second tuned run (seed variation)")

    @model_validator(mode="after")
    def _suite_or_tasks(self):
        if self.tasks is not None:
            self.suite = None
        if self.suite is None and not self.tasks:
            raise ValueError("give a 'suite' or a list of 'tasks'")
        return self


class AnalyzeSpec(AnalyzeOptions, _Strict):
    """``analyze:``: `rankedit analyze`'s k and device (``rankedit.analysis.analyze_options.AnalyzeOptions``), and the plan's own."""

    enabled: bool = True
    matched_sft: bool = Field(True, description="also analyse the SFT checkpoint whose update size is closest to RL's")


class ExecutorSpec(_Strict):
    """Where edits and scorings run: here, one after another (local), or as tasks on a Ray cluster."""

    kind: Literal["local", "ray"] = "local"
    address: Optional[str] = Field(None, description="ray: 'auto' (a cluster started with `ray start`), "
                                                     "ray://HOST:10001, or none for a Ray instance of this machine")
    num_gpus_per_score: float = Field(0, ge=0, description="ray: GPUs each model scoring asks for")
    num_gpus_per_edit: float = Field(0, ge=0, description="ray: GPUs each edit build asks for")
    num_cpus_per_task: float = Field(1, gt=0, description="ray: CPUs each task asks for")

    @model_validator(mode="after")
    def _ray_only(self):
        set_ray = [k for k in ("address", "num_gpus_per_score", "num_gpus_per_edit", "num_cpus_per_task")
                   if k in self.model_fields_set]
        if self.kind == "local" and set_ray:
            raise ValueError(f"{', '.join(set_ray)}: only for the ray executor (kind: ray)")
        return self


class Plan(_Strict):
    name: str = "rankedit run"
    organism: Optional[OrganismSpec] = None
    base: Optional[str] = None
    tuned: Optional[str] = None
    other_tuned: Optional[str] = None
    sft: Optional[str] = None
    checkpoints: Optional[Checkpoints] = None
    sft_checkpoints: Optional[Checkpoints] = None
    runs: Optional[list[RunSpec]] = Field(None, min_length=1, description="several tuned runs of one base")
    edits: list[EditSpec] = Field(default_factory=list)
    merges: list[EditSpec] = Field(default_factory=list, description="merges of the plan's runs (rankedit merge)")
    score: ScoreSpec = Field(default_factory=ScoreSpec)
    analyze: AnalyzeSpec = Field(default_factory=AnalyzeSpec)
    kl: Optional[KLSpec] = Field(None, description="KL travelled from the base: true, or {samples: ..., ...}")
    trajectory: Optional[TrajectorySpec] = Field(None, description="the run's trajectory over its checkpoints")
    device: str = Field("cpu", description="where edits run their SVDs")
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec,
                                   description="'local' (default), 'ray', or {kind: ray, address: ..., ...}")

    @property
    def builds(self) -> list[EditSpec]:
        """Every checkpoint the run builds: the edits, then the merges (built, scored and reported alike)."""
        return [*self.edits, *self.merges]

    @field_validator("kl", mode="before")
    @classmethod
    def _kl_shorthand(cls, v):
        return ({} if v else None) if isinstance(v, bool) else v

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_shorthand(cls, v):
        return {"kind": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _models(self):
        if self.runs is not None:
            clash = [k for k in ("organism", "tuned", "other_tuned", "sft", "checkpoints", "sft_checkpoints")
                     if getattr(self, k) is not None]
            if clash:
                raise ValueError(f"'runs' lists the tuned runs; give {', '.join(clash)} inside each run instead")
            if self.base is None:
                raise ValueError("'runs' needs 'base', the checkpoint every run was tuned from")
            names = [r.name for r in self.runs]
            if len(set(names)) != len(names):
                raise ValueError(f"run names must be unique, got {names}")
        elif self.organism is None:
            missing = [k for k in ("base", "tuned") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"the plan needs {' and '.join(missing)} (checkpoint paths or Hub ids), "
                                 "or 'organism:' to use the embedded model organism")
        if self.trajectory is not None and self.trajectory.enabled and self.organism is None:
            runs = self.runs or [self]
            key = "checkpoints" if self.trajectory.of == "tuned" else "sft_checkpoints"
            if not all(getattr(r, key) for r in runs):
                raise ValueError(f"'trajectory' follows the {self.trajectory.of} run's checkpoints; add '{key}:'")
        names = [e.name for e in self.builds]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"edit and merge names must be unique; repeated: {', '.join(dup)}")
        for e in self.edits:
            if e.runs is not None:
                raise ValueError(f"edit {e.name!r} names 'runs': a merge of several runs goes in 'merges:'")
        named = set(self.organism.run_names()) if self.organism is not None else set()
        for m in self.merges:
            m.runs = canonical_runs(m.runs)
            problem = merge_problem(m.name, m.runs, named, names, lambda r: self.organism is None and self.runs is None
                                    and getattr(self, r, None) is None)
            if problem:
                raise ValueError(problem)
        for e in self.builds:
            if e.control_of is not None and e.control_of not in names:
                raise ValueError(f"edit {e.name!r} is the control of {e.control_of!r}, which is not in the plan")
            if e.of == "sft" and self.organism is None and self.sft is None and not (
                    self.runs and all(r.sft for r in self.runs)):
                raise ValueError(f"edit {e.name!r} works on the SFT update, but the plan has no 'sft'")
        return self


def parse_plan(data: object, source: str = "plan") -> Plan:
    """Validate a plan dict; every error becomes one line naming the field, the plan's first error first."""
    if not isinstance(data, dict):
        raise RankeditError(f"{source}: expected a mapping at the top level")
    errors = huge_integers(data)
    raise_in_order(data, source, errors)  # before pydantic turns them into something else
    plan = None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        errors = [(err["loc"], f"{where(err['loc'])}: {err['msg'].removeprefix('Value error, ')}") for err in e.errors()]
    # an edit's parameters are checked even when the plan has other errors: all are reported in plan order
    errors += edit_errors(data)
    raise_in_order(data, source, errors)
    return plan


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
    p = find_plan(path)
    return parse_plan(load_yaml(p), str(p))  # UTF-8, no repeated key, YAML 1.2 booleans


def split_runs(plan: Plan) -> list[tuple[str | None, Plan]]:
    """The single-run plans a plan stands for: (run name, plan) per organism seed or listed run.

    A plan with one run gives ``[(None, plan)]``, so that single runs keep their
    layout; several runs are named ``seed<N>`` (organism) or by their ``name``.
    """
    if plan.runs is not None:
        return [(r.name, plan.model_copy(update={"runs": None, **{k: getattr(r, k) for k in (
            "tuned", "other_tuned", "sft", "checkpoints", "sft_checkpoints")}})) for r in plan.runs]
    if plan.organism is not None and plan.organism.seeds is not None and len(plan.organism.seeds) > 1:
        return [(f"seed{s}", plan.model_copy(update={"organism": plan.organism.model_copy(
            update={"seed": s, "seeds": None})})) for s in plan.organism.seeds]
    if plan.organism is not None and plan.organism.seeds is not None:
        return [(None, plan.model_copy(update={"organism": plan.organism.model_copy(
            update={"seed": plan.organism.seeds[0], "seeds": None})}))]
    return [(None, plan)]


def with_executor(plan: Plan, kind: str | None = None, address: str | None = None) -> Plan:
    """The plan with the command line's ``--executor``/``--address`` in place of its ``executor``."""
    if kind is None and address is None:
        return plan
    kind = kind or ("ray" if address else plan.executor.kind)
    if kind not in ("local", "ray"):
        raise RankeditError(f"unknown executor {kind!r}; choose local or ray")
    if address is not None and kind != "ray":
        raise RankeditError("--address names a Ray cluster; it needs --executor ray")
    if kind == "local":
        return plan.model_copy(update={"executor": ExecutorSpec()})
    spec = plan.executor.model_dump(exclude_unset=True) if plan.executor.kind == "ray" else {}
    spec.update({"kind": "ray", **({"address": address} if address is not None else {})})
    return plan.model_copy(update={"executor": ExecutorSpec(**spec)})
