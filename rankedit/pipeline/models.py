"""Step 1 of `rankedit run`: the models a plan names, resolved and checked before any work.

The plan's own paths, or the embedded organism's folders (built once, then
reused); the tuned and SFT runs' checkpoints by step; every input whole,
finite, compatible with the base and, where it will be scored, with a tokenizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import Plan
from rankedit.pipeline.progress import say
from pydantic import ValidationError
from rankedit.edits import get_edit
from rankedit.edits.build import check_rank
from rankedit.files.adapter import AdapterCheckpoint, is_adapter, materialize
from rankedit.files.checkpoint import Checkpoint, check_compatible
from rankedit.files.validate import check_inputs, check_scorable
from rankedit.organism.builder import build as build_organism

_STEP_DIR = re.compile(r"^(?:step|checkpoint)-(\d+)$")


@dataclass
class Models:
    base: str
    tuned: str
    other_tuned: str | None = None
    sft: str | None = None
    checkpoints: list[tuple[int, str]] = field(default_factory=list)  # the tuned run's, by step
    sft_checkpoints: list[tuple[int, str]] = field(default_factory=list)
    organism: str | None = None  # the organism's folder, when the plan uses it
    # the organism's tuned runs by the names a plan gives them (rl, rl-seed2, sft, rl-sum, rl-seed3, ...)
    organism_runs: dict[str, str] = field(default_factory=dict)
    # mean accuracy on the suite's trained tasks of the tuned run's checkpoints (by step) and of the
    # tuned model itself: alpharl's inputs, filled from the pipeline's scores (``pipeline.early_stop``)
    accuracies: dict[int, float] = field(default_factory=dict)
    final_accuracy: float | None = None
    # merged checkpoint in the cache -> the LoRA adapter folder it was merged from (the plan gave the adapter)
    adapters: dict[str, str] = field(default_factory=dict)

    def source(self, path: str | None) -> str | None:
        """What the plan named for ``path``: the adapter folder of a merged adapter (analysis reads its ΔW exactly)."""
        return self.adapters.get(path, path) if path else path

    def paths(self) -> list[str]:
        """Everything the run reads: OUT may not be, hold or lie inside any of it."""
        steps = [p for _, p in self.checkpoints + self.sft_checkpoints]
        return [p for p in (self.base, self.tuned, self.other_tuned, self.sft, self.organism, *steps,
                            *self.adapters.values()) if p]

    def run(self, of: str) -> tuple[str, list[tuple[int, str]]]:
        return (self.tuned, self.checkpoints) if of == "tuned" else (self.sft, self.sft_checkpoints)

    def role(self, name: str) -> str:
        """The checkpoint a merge's run names: tuned, other_tuned, sft, or an organism's run by name (rl-sum)."""
        path = {"tuned": self.tuned, "other_tuned": self.other_tuned, "sft": self.sft}.get(name) \
            or self.organism_runs.get(name)
        if path is None:
            raise RankeditError(f"the plan has no {name} run")
        return path



def list_checkpoints(spec, default_dir: Path | None = None) -> list[tuple[int, str]]:
    """(step, path) of a run's checkpoints, sorted by step, from a plan's ``checkpoints`` entry or a folder."""
    if spec is not None and spec.paths is not None:
        pairs = list(zip(spec.steps, spec.paths))
    else:
        folder = Path(spec.dir) if spec is not None else default_dir
        if folder is None:
            return []
        if not folder.is_dir():
            raise RankeditError(f"checkpoint folder not found: {folder}")
        pairs = [(int(m.group(1)), str(p)) for p in folder.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
        if not pairs:
            raise RankeditError(f"no step-N or checkpoint-N directories in {folder}")
    pairs.sort()
    steps = [s for s, _ in pairs]
    if len(set(steps)) != len(steps):
        raise RankeditError(f"duplicate checkpoint steps: {steps}")
    return pairs


def resolve_models(plan: Plan, quiet: bool = False) -> Models:
    org = None
    if plan.organism is not None:
        extra = [f"skills {','.join(plan.organism.skills)}"] if len(plan.organism.skills) > 1 else []
        extra += [f"{plan.organism.rl_seeds} RL seeds"] if plan.organism.rl_seeds > 2 else []
        say(f"organism: {plan.organism.size}, seed {plan.organism.seed}{''.join(', ' + e for e in extra)} "
            "(built once, then reused)", quiet)
        org = Path(build_organism(plan.organism.size, plan.organism.seed, device=plan.organism.device,
                                  progress=not quiet, skills=plan.organism.skills, rl_seeds=plan.organism.rl_seeds))
    pick = lambda key, sub: getattr(plan, key) or (str(org / sub) if org else None)  # noqa: E731
    m = Models(base=pick("base", "base"), tuned=pick("tuned", "rl"), other_tuned=pick("other_tuned", "rl-seed2"),
               sft=pick("sft", "sft"), organism=str(org) if org else None)
    if org is not None:
        m.organism_runs = {name: str(org / name) for name in plan.organism.run_names()}
    m.checkpoints = list_checkpoints(plan.checkpoints, org / "rl" / "checkpoints" if org else None)
    m.sft_checkpoints = list_checkpoints(plan.sft_checkpoints, org / "sft" / "checkpoints" if org else None)

    merge_adapters(m, quiet)

    refs = {k: v for k, v in (("base", m.base), ("tuned", m.tuned), ("other_tuned", m.other_tuned),
                              ("sft", m.sft)) if v}
    cks = dict(zip(refs, (Checkpoint(v) for v in refs.values())))
    check_compatible(list(cks.values()), list(refs))
    check_ranks(plan, cks["base"])  # from the headers: before the weights are read

    check_inputs(cks.values())  # whole and finite, before anything is built from them
    if plan.analyze.enabled and plan.analyze.matched_sft:  # the analysis reads every SFT checkpoint
        check_inputs(Checkpoint(p) for _, p in m.sft_checkpoints)
    merged_runs = {r for e in plan.merges for r in e.runs or ()}
    scored = ("base", "tuned", "sft") + (("other_tuned",) if plan.score.score_other_tuned or "other_tuned" in merged_runs
                                        else ())
    for role in scored:
        if role in cks:
            check_scorable(cks[role])  # complete and with a tokenizer: found now, not after hours of work
    return m


def check_ranks(plan: Plan, base) -> None:
    """Every edit's k against the base's matrices, before any weight is read or any edit built."""
    for e in plan.builds:
        edit = get_edit(e.method)
        try:
            p = edit.params.model_validate(e.params)
        except ValidationError:
            continue  # parameters filled in later (a run's steps): planned with the rest
        try:
            check_rank(edit, p, base)
        except RankeditError as err:
            raise RankeditError(f"edit {e.name}: {err}") from None


def merge_adapters(m: Models, quiet: bool) -> None:
    """Every input given as a LoRA adapter folder becomes its merged checkpoint in rankedit's cache
    (mergekit edits it and lm-eval scores it from disk); ``m.adapters`` remembers where each came from."""
    if not m.base:
        return
    base = None

    def merged(ref: str | None) -> str | None:
        nonlocal base
        if not ref or not is_adapter(ref):
            return ref
        base = base or Checkpoint(m.base)
        path = str(materialize(AdapterCheckpoint(ref, base), say=lambda msg: say(msg, quiet)))
        m.adapters.setdefault(path, ref)  # the same adapter saved twice (final and last step): the first name
        return path

    m.tuned, m.other_tuned, m.sft = merged(m.tuned), merged(m.other_tuned), merged(m.sft)
    m.checkpoints = [(s, merged(p)) for s, p in m.checkpoints]
    m.sft_checkpoints = [(s, merged(p)) for s, p in m.sft_checkpoints]


def model_labels(plan: Plan, models: Models, edits: dict[str, dict]) -> dict[str, str]:
    """label -> path of every model a run measures: base, tuned, SFT, the second tuned run when the
    plan scores it, then each built edit (what scoring and the KL stage both go over)."""
    labels = {"base": models.base, "tuned": models.tuned}
    if models.sft:
        labels["sft"] = models.sft
    merged_runs = list(dict.fromkeys(r for m in plan.merges for r in m.runs or ()))  # each merge's runs are scored
    if (plan.score.score_other_tuned or "other_tuned" in merged_runs) and models.other_tuned:
        labels["other_tuned"] = models.other_tuned
    labels.update({r: models.role(r) for r in merged_runs if r not in ("tuned", "other_tuned", "sft")})
    labels.update({name: e["path"] for name, e in edits.items()})
    return labels
