"""Named evaluation suites: which lm-eval tasks to run, from where, with which settings.

A suite is a name for a list of lm-eval task (or group) names plus the folders
of task YAMLs they come from and the generation settings they need. Adding a
suite is one entry in SUITES. ``rankedit score --suite NAME`` and the pipeline
look suites up here; ``--tasks T1,T2`` bypasses them.

- ``organism``: the embedded organism's three tasks, read locally from
  ``eval_configs/organism`` (no network): ``organism_id`` (the trained
  distribution), ``organism_hard`` (harder problems of the same kind) and
  ``organism_control`` (a task the RL run never trained: forgetting).
- ``organism-merge``: the tasks of an organism built with a second skill
  (``rankedit organism build --skills id,sum``), whose runs a merge combines:
  ``organism_id`` (the rl run's skill), ``organism_sum`` (the rl-sum run's)
  and ``organism_control`` (neither run's: forgetting).
- ``reasoning``: GSM8K (zero-shot CoT, strict and flexible extraction),
  MATH-500 and Minerva math, lm-eval's own tasks overridden in
  ``eval_configs/reasoning`` with room for long RL reasoning, and AIME 2024
  and AIME 2025 (lm-eval's ``aime24``, ``aime25``), which are scored by
  default as RL papers report them: the sampled profile ``avg16``
  (DeepScaleR's avg@16: 16 samples per problem, temperature 0.6, top_p 0.95,
  seed 0), while the other tasks stay greedy; ``--profile`` sets one profile
  for every task. Needs the Hugging Face Hub for the datasets, or local
  copies (``--data-dir``, ``rankedit.scoring.data_dir``), and ``lm-eval[math]``
  (rankedit's ``math`` extra) for the math tasks.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.core.resources import shipped_dir
from rankedit.scoring.profiles import Sampling

# eval_configs/: in the package when installed from a wheel, beside it in a checkout
EVAL_CONFIGS = shipped_dir("eval_configs")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: tuple[str, ...]
    # folders of task YAMLs (and the data they read) this suite needs
    include_paths: tuple[Path, ...] = ()
    # True: some tasks are lm-eval built-ins (indexing them costs ~10 s);
    # None: look in include_paths first, in lm-eval's own tasks only if needed
    needs_builtin_tasks: bool | None = False
    # tasks the tuned run never trained: the report shows forgetting there
    control_tasks: tuple[str, ...] = ()
    # task -> the metric key ("metric,filter" as lm-eval writes it) used for
    # retention; tasks not listed use their first reported metric
    primary_metrics: dict[str, str] = field(default_factory=dict)
    # default for lm-eval's apply_chat_template (the CLI switch overrides it)
    apply_chat_template: bool = False
    # generation overrides passed to lm-eval for every task (None: the YAML's)
    max_gen_toks: int | None = None
    # named sampled scoring profiles (``--profile NAME``, ``score: {profile: NAME}``); greedy is the default
    profiles: dict[str, Sampling] = field(default_factory=dict)
    # task -> the named profile it is scored with when the run names none (the others: greedy)
    task_profiles: dict[str, str] = field(default_factory=dict)


SUITES: dict[str, Suite] = {
    "organism": Suite(
        name="organism",
        description="The model organism's tasks (local, offline): in-distribution, hard, and a control task.",
        tasks=("organism_id", "organism_hard", "organism_control"),
        include_paths=(EVAL_CONFIGS / "organism",),
        control_tasks=("organism_control",),
    ),
    "organism-merge": Suite(
        name="organism-merge",
        description="The two-skill organism's tasks (local, offline): each RL run's skill, and the control task.",
        tasks=("organism_id", "organism_sum", "organism_control"),
        include_paths=(EVAL_CONFIGS / "organism",),
        control_tasks=("organism_control",),
    ),
    "reasoning": Suite(
        name="reasoning",
        description="GSM8K zero-shot CoT, MATH-500, Minerva math (greedy) and AIME 2024/2025 (avg@16) "
                    "(lm-eval's tasks, 8192 new tokens; online, or local copies with --data-dir).",
        tasks=("rankedit_reasoning",),
        include_paths=(EVAL_CONFIGS / "reasoning",),
        needs_builtin_tasks=True,
        primary_metrics={
            "gsm8k_cot_zeroshot": "exact_match,flexible-extract",
            "minerva_math500": "math_verify,none",
            "minerva_math": "math_verify,none",
            "aime24": "exact_match,none",
            "aime25": "exact_match,none",
        },
        # how RL papers report (DeepScaleR: avg@16 on AIME at temperature 0.6, top_p 0.95)
        profiles={"avg16": Sampling(samples=16, temperature=0.6, top_p=0.95, seed=0)},
        # AIME has 30 problems a year: papers report avg@16 there, greedy elsewhere
        task_profiles={"aime24": "avg16", "aime25": "avg16"},
    ),
}


def get_suite(name: str) -> Suite:
    """The suite called ``name``, or one RankeditError naming the known ones."""
    try:
        return SUITES[name]
    except KeyError:
        hint = difflib.get_close_matches(name, SUITES, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise RankeditError(f"unknown suite {name!r}{did}; known suites: {', '.join(sorted(SUITES))}") from None


def custom_suite(tasks: list[str] | tuple[str, ...], include_paths: list | tuple = ()) -> Suite:
    """An ad-hoc suite for ``--tasks T1,T2``: task names looked up locally, then in lm-eval."""
    tasks = tuple(t.strip() for t in tasks if t and t.strip())
    if not tasks:
        raise RankeditError("no task names given (expected --tasks T1,T2 or --suite NAME)")
    paths = tuple(Path(p).expanduser().resolve() for p in include_paths)
    for p in paths:
        if not p.is_dir():
            raise RankeditError(f"task folder not found: {p}")
    local = tuple(sorted(d for d in EVAL_CONFIGS.iterdir() if d.is_dir())) if EVAL_CONFIGS.is_dir() else ()
    return Suite(name="custom", description="tasks given on the command line", tasks=tasks,
                 include_paths=paths + local, needs_builtin_tasks=None)
