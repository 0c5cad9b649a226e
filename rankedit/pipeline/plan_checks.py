"""A plan's checks that need no model: every error found, then reported in the plan's own order.

pydantic reports a plan's errors in the order of its model's fields, and each edit's
parameters are checked against that edit's own model after it: a bad ``k`` two lines
into the file was reported after ``score.n_boot`` at its end. Here every error of
both passes is collected with its path, and they are sorted by where the plan gives them
(``rankedit.files.yaml_text.positions``). Integers too large for any count are refused
at once, before any work (``k: 99999999999999999999999999`` once failed after the
models were built and checked).
"""

from __future__ import annotations

from pydantic import ValidationError

from rankedit.core.errors import RankeditError
from rankedit.files.yaml_text import position_of, positions
from rankedit.edits import get_edit

# extrapolate's modes that read per-checkpoint accuracies (``rankedit.edits.methods.extrapolate.ALPHARL_MODES``; named
# here without importing the edits, which load torch)
ALPHARL_MODES = ("alpharl", "alpharl-increment")

INT_MAX = 2 ** 63 - 1  # torch's and safetensors' largest count; any bound of a plan lies below it


def where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def huge_integers(data: object, loc: tuple = ()) -> list[tuple[tuple, str]]:
    """(path, message) of every integer beyond INT_MAX in absolute value."""
    found = []
    if isinstance(data, bool):
        return found
    if isinstance(data, int) and abs(data) > INT_MAX:
        found.append((loc, f"{where(loc)}: {data} is out of range (no count rankedit takes reaches 2^63)"))
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        found += huge_integers(v, (*loc, k))
    return found


def edit_errors(data: dict) -> list[tuple[tuple, str]]:
    """(path, message) of every edit or merge whose method is unknown, of the wrong section, or whose
    parameters its method refuses."""
    return _section_errors(data, "edits") + _section_errors(data, "merges")


def _section_errors(data: dict, section: str) -> list[tuple[tuple, str]]:
    edits = data.get(section)
    if not isinstance(edits, list):
        return []
    runs = data.get("runs")
    has_ckpts = bool(data.get("checkpoints")) or (
        isinstance(runs, list) and bool(runs) and all(isinstance(r, dict) and r.get("checkpoints") for r in runs))
    found = []
    for i, e in enumerate(edits):
        if not isinstance(e, dict) or not isinstance(e.get("method"), str):
            continue  # the plan's own model names what is wrong with it
        name = e.get("name")
        head = f"{section}.{i} ({name})"
        try:
            edit = get_edit(e["method"])
        except RankeditError as err:
            found.append(((section, i, "method"), f"{head}: {err}"))
            continue
        if (edit.inputs == "runs") != (section == "merges"):
            found.append(((section, i, "method"), f"{head}: {e['method']} " + (
                "merges several runs: put it in 'merges:' with 'runs:'" if section == "edits" else
                "edits one run: put it in 'edits:'")))
            continue
        params = dict(e["params"]) if isinstance(e.get("params"), dict) else {}
        if edit.inputs == "run":
            # filled in from the run's checkpoints later
            params.setdefault("steps", (1, 2))
            params.setdefault("target_step", 3)
            if params.get("mode") in ALPHARL_MODES:  # the pipeline fills both from its scores of the run's checkpoints
                if "accuracies" in params:
                    found.append(((section, i, "params", "accuracies"),
                                  f"{head}: alpharl's accuracies come from the pipeline's scores of the "
                                  "window's checkpoints; do not give params.accuracies"))
                    continue
                params.update(accuracies=(0.0, 1.0), target_accuracy=params.get("target_accuracy", 1.0))
            if data.get("organism") is None and e.get("of", "tuned") == "tuned" and not has_ckpts:
                found.append(((section, i, "method"),
                              f"{head}: {e['method']} needs the run's checkpoints; add 'checkpoints:' to the plan"))
                continue
        elif e.get("checkpoints") is not None:
            found.append(((section, i, "checkpoints"), f"{head}: 'checkpoints' only applies to extrapolate"))
            continue
        try:
            edit.params.model_validate(params)
        except ValidationError as err:
            for first in err.errors():
                found.append(((section, i, "params", *first["loc"]),
                               f"{head}: params.{where(first['loc'])}: {first['msg']}"))
    return found


def raise_in_order(data: dict, source: str, errors: list[tuple[tuple, str]]) -> None:
    """One line: the error the plan gives first, and how many more there are."""
    if not errors:
        return
    pos = positions(data)
    errors = sorted(errors, key=lambda e: position_of(pos, e[0]))  # stable: one place's errors keep their order
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise RankeditError(f"{source}: {errors[0][1]}{more}")


# the organism's rl and rl-seed2 are the plan's tuned and other_tuned: one label each in the report
RUN_ALIASES = {"rl": "tuned", "rl-seed2": "other_tuned"}
ROLES = ("tuned", "other_tuned", "sft")


def canonical_runs(runs):
    return None if runs is None else [RUN_ALIASES.get(r, r) for r in runs]


def merge_problem(name: str, runs, organism_runs: set, names: list, unnamed) -> str | None:
    """What is wrong with a merge's ``runs`` (None: nothing): two or more different runs, each a role of the plan
    (``unnamed(role)``: the plan does not name it) or one of the organism's runs, none named like an edit."""
    if not runs or len(runs) < 2 or len(set(runs)) != len(runs):
        return (f"merge {name!r} needs 'runs': two or more different runs of the plan "
                "(tuned, other_tuned, sft, or the organism's runs by name)")
    unknown = [r for r in runs if r not in ROLES and r not in organism_runs]
    if unknown:
        have = ", ".join((*ROLES, *sorted(organism_runs - set(RUN_ALIASES) - set(ROLES))))
        return (f"merge {name!r} merges {unknown[0]!r}, which is not a run of the plan (runs: {have}; "
                "an organism's rl-sum and rl-seed3.. need its skills / rl_seeds)")
    clash = [r for r in runs if r in names]
    if clash:
        return f"merge {name!r}: {clash[0]!r} names both a run and an edit or merge; rename the edit"
    missing = [r for r in runs if r in ROLES and unnamed(r)]
    if missing:
        return f"merge {name!r} merges {', '.join(missing)}, which the plan does not name"
    return None
