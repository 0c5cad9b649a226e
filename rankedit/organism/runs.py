"""The names of an organism's runs, pure and torch-free: builds, plans and their checks share them.

Every build has ``base``, ``rl`` (GRPO on the id skill, the build's seed),
``rl-seed2`` (the same, seed + 1) and ``sft``. Runs to merge, on request: one
GRPO run per added skill, ``rl-SKILL`` (the build's seed), and more seeds of
the id skill, ``rl-seed3`` .. ``rl-seedN`` (seed + N - 1), all from the one base.
"""

from __future__ import annotations

import re

from rankedit.core.errors import RankeditError
from rankedit.organism.tasks import SKILLS

PHASES = ("base", "rl", "rl-seed2", "sft")  # every build's
_SEED_RUN = re.compile(r"rl-seed([2-9]|[1-9]\d+)")


def parse_skills(skills) -> tuple[str, ...]:
    """The skills a build trains with GRPO, as given ("id,sum" or a list): id first, each once."""
    given = [s.strip() for s in (skills.split(",") if isinstance(skills, str) else skills or ()) if s.strip()]
    unknown = [s for s in given if s not in SKILLS]
    if unknown:
        raise RankeditError(f"unknown organism skill {unknown[0]!r}; choose from: {', '.join(SKILLS)}")
    if len(set(given)) != len(given):
        raise RankeditError(f"organism skills must be distinct, got {','.join(given)}")
    if "id" not in given:
        raise RankeditError("organism skills must include id, the RL task every organism is built around")
    return ("id", *[s for s in given if s != "id"])


def phases_of(skills=("id",), rl_seeds: int = 2) -> tuple[str, ...]:
    """Every phase of a build, in build order: the four of every build, one GRPO run per added skill
    (``rl-SKILL``, part of the recipe), then the id skill's further seeds ``rl-seed3`` .. ``rl-seed<rl_seeds>``
    (from the same base: they change no other phase, so they are not part of the recipe)."""
    added = tuple(f"rl-{s}" for s in parse_skills(skills)[1:])
    return PHASES + added + tuple(f"rl-seed{k}" for k in range(3, rl_seeds + 1))


def tuned_runs(skills=("id",), rl_seeds: int = 2) -> tuple[str, ...]:
    """The tuned runs of a build (its folders beside base/), the names a plan gives them."""
    return phases_of(skills, rl_seeds)[1:]


def phase_skill(phase: str) -> str | None:
    """The skill a GRPO phase trains (id for rl and its seeds), None for base and sft."""
    if phase == "rl" or _SEED_RUN.fullmatch(phase):
        return "id"
    if phase.startswith("rl-") and phase[3:] in SKILLS and phase[3:] != "id":
        return phase[3:]
    return None


def phase_seed(phase: str, seed: int) -> int:
    """The seed a phase trains with: the build's, and seed + N - 1 for the id skill's N-th seed rl-seedN."""
    m = _SEED_RUN.fullmatch(phase)
    return seed + int(m.group(1)) - 1 if m else seed


def is_phase(name: str) -> bool:
    return name in PHASES or phase_skill(name) is not None
