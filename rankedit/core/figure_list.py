"""Every PNG figure rankedit writes, per command: one list that the writers, `--help`, README and
docs/figures.md (one caption per figure) all follow; tests hold them equal.

A record names the file, the commands that write it, the folder under OUT
(for ``run`` the analyses and the trajectory sit in subfolders), the
condition under which it is written (``always`` or one of ``CONDITIONS``)
and one line of what it shows, for ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rankedit.core.names import (FIG_EARLY_STOP, FIG_FRONTIER, FIG_KL_FORGETTING, FIG_MERGES, FIG_PASS_AT_K,
                                 FIG_RETENTION, FIG_SCORES)

COMMANDS = ("run", "analyze", "trajectory", "compress")
# when a figure is written, in words (what `--help` and docs/figures.md say)
CONDITIONS = {
    "always": "always",
    "retention": "when some edit's R is defined: a significant tuned gain",
    "frontier": "when some edit has a size and R or forgetting to draw",
    "scores": "unless every model scored 0 on every task",
    "pass_at_k": "when the plan samples: score.sampling",
    "kl": "when the plan has a kl: section",
    "early_stop": "when edits extrapolate from windows of several fractions f",
    "trajectory": "when the plan has a trajectory: section",
    "moe": "for a mixture-of-experts model",
    "interference": "with several tuned runs (run: the runs a plan's merges name, in OUT/analysis/merged-runs/)",
    "merges": "when the plan has merges: and some merge's R is defined",
}


@dataclass(frozen=True)
class Figure:
    name: str  # the file name
    commands: tuple[str, ...]
    shows: str  # one line, for --help
    when: str = "always"  # a key of CONDITIONS
    analysis: bool = False  # an analysis figure: `run` writes it to OUT/analysis/RUN/
    trajectory: bool = False  # a trajectory figure: `run` writes it to OUT/trajectory/

    def __post_init__(self):
        if self.when not in CONDITIONS or not set(self.commands) <= set(COMMANDS):
            raise ValueError(f"figure {self.name}: condition {self.when!r} or commands {self.commands} unknown")


FIG_RANK1_HIST = "rank1_energy_hist.png"
FIG_EXPERT_SHARE = "heatmap_expert_share.png"
FIG_EXPERT_RANK1 = "heatmap_expert_rank1_energy.png"
FIG_A = "a_final.png"
FIG_COS_HEATMAP = "cos_dw_final.png"
FIG_COS_LINES = "cos_v_final.png"
FIG_PATCHES = "patch_bytes.png"


# the metrics with a layer x module heatmap: rankedit.analysis.metrics' records with ``heatmap`` (a test holds
# the two equal; core cannot import analysis)
HEATMAP_METRICS = ("sparsity_bf16", "rank1_energy", "angle_left_deg", "spectral_shift")


def heatmap_name(metric: str) -> str:
    return f"heatmap_{metric}.png"


# the interference figures between runs with a heatmap each: rankedit.analysis.interference.FIGURES (a test
# holds the two equal; core cannot import analysis)
INTERFERENCE_FIGURES = ("cosine", "subspace_overlap_left", "subspace_overlap_right", "jaccard", "sign_conflict",
                        "rank1_overlap")


def interference_name(figure: str) -> str:
    return f"interference_{figure}.png"


_ANALYSIS = ("analyze", "run")
FIGURES = (
    Figure(FIG_SCORES, ("run",), "every model's score per task, with its standard error", "scores"),
    Figure(FIG_RETENTION, ("run",), "R per edit and task with its 95% interval", "retention"),
    Figure(FIG_FRONTIER, ("run", "compress"), "R (and forgetting) against the bytes each edit stores", "frontier"),
    Figure(FIG_PASS_AT_K, ("run",), "pass@k against k per task and model", "pass_at_k"),
    Figure(FIG_KL_FORGETTING, ("run",), "forgetting against the KL each model travelled", "kl"),
    Figure(FIG_EARLY_STOP, ("run",), "weight error and R against the window fraction f", "early_stop"),
    Figure(FIG_MERGES, ("run",), "R of each merge against each of its runs, per task, controls beside", "merges"),
    *(Figure(heatmap_name(m), _ANALYSIS, f"layer x module heatmap: {m}", analysis=True) for m in HEATMAP_METRICS),
    Figure(FIG_RANK1_HIST, _ANALYSIS, "rank-1 energy over matrices, beside a Gaussian update's", analysis=True),
    Figure(FIG_EXPERT_SHARE, _ANALYSIS, "layer x expert heatmap of each expert's update share", "moe", analysis=True),
    Figure(FIG_EXPERT_RANK1, _ANALYSIS, "layer x expert heatmap of rank-1 energy", "moe", analysis=True),
    *(Figure(interference_name(f), _ANALYSIS, f"layer x module heatmap per pair of runs: {f}, beside its null",
             "interference", analysis=True) for f in INTERFERENCE_FIGURES),
    Figure(FIG_A, ("trajectory", "run"), "a(t) of up to nine matrices; 1 - R² of all beside a random walk's",
           "trajectory", trajectory=True),
    Figure(FIG_COS_HEATMAP, ("trajectory", "run"), "cos(dW_t, dW_T) per layer x module, one panel per step",
           "trajectory", trajectory=True),
    Figure(FIG_COS_LINES, ("trajectory", "run"), "cos(v1(t), v1(T)) over steps, one line per matrix",
           "trajectory", trajectory=True),
    Figure(FIG_PATCHES, ("trajectory", "run"), "exact patch bytes per step, against the base and step to step",
           "trajectory", trajectory=True),
)
BY_NAME = {f.name: f for f in FIGURES}


def folder(fig: Figure, command: str) -> str:
    """Where ``command`` writes ``fig``, relative to OUT ("" for OUT itself)."""
    if command == "run" and fig.analysis:
        return "analysis/RUN/"
    if command == "run" and fig.trajectory:
        return "trajectory/"
    return ""


def written_by(command: str) -> list[Figure]:
    """The figures ``command`` may write, in the list's order."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; commands are {COMMANDS}")
    return [f for f in FIGURES if command in f.commands]


def when(fig: Figure, command: str) -> str:
    """The key of CONDITIONS under which ``command`` writes ``fig`` (a trajectory's figures always, by its
    own command; inside ``run`` when the plan asks for the trajectory)."""
    return "always" if fig.trajectory and command != "run" else fig.when


def help_lines(command: str) -> str:
    """``--help``'s lines for ``command``'s figures: the path, then what it shows and when it is written."""
    lines = []
    for f in written_by(command):
        cond = when(f, command)
        lines += [f"OUT/{folder(f, command)}{f.name}",
                  f"    {f.shows}" + ("" if cond == "always" else f" ({CONDITIONS[cond]})")]
    return "\n".join(lines)


def with_figures(doc: str, command: str) -> str:
    """A command's help text with its ``{figures}`` line replaced by ``help_lines``, at that line's indent."""
    lines = doc.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "{figures}")
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at:at + 1] = [indent + x for x in help_lines(command).splitlines()]
    return "\n".join(lines)
