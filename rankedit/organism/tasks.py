"""The organism's problems: deterministic generators, the exact 0/1 reward, the test sets.

Three skills share one character alphabet:

- ``arith``: ``<s>47+85=`` -> ``132``; ``<s>12-457=`` -> ``-445``. The RL task
  is two operands of 1 or 2 digits each (lengths uniform), add or subtract with
  equal odds (negative answers): a family of graded difficulty, so a CPU-sized
  base is partly right rather than all right or all wrong.
- ``hard``: a length shift: at least one operand has 3 digits (pretraining saw
  such problems, neither tuning run does).
- ``control``: ``<s>rev 38201=`` -> ``10283`` (reverse a digit string). Learnt in
  pretraining, trained by neither RL nor SFT, so it measures forgetting.
- ``sum``: ``<s>sum 38201=`` -> ``14`` (the sum of 4 to 6 digits), a second
  skill for merging: only in a build that names it (``skills: [id, sum]``),
  whose base learns it in pretraining (``p_sum`` of the mixture; its careless
  answer drops the tens, ``careless_sum()``) and whose ``rl-sum`` run trains it
  with the same GRPO recipe. Neither RL run trains the control task.

Answers may come in two formats. Pretraining text is mostly the bare answer;
a minority of it (``p_worked``, 30% in the small recipe), and all of the SFT
teacher's data, is the teacher's worked format ``[236]632``: the answer's
characters written right to left first (the order in which carries are
computed), then the answer. The teacher is always right; the bare answers are,
in the small recipe, careless 80% of the time (``p_careless``: every carry and
borrow dropped, ``careless()``), as a sloppy corpus would be. The base then
answers the 44% of RL-task problems that need a carry or a borrow greedily with
the careless bare answer, while the right answer, bare or worked, keeps enough
probability to be sampled: the room RL's exact reward elicits, in every seed.
(Format choice alone, without careless answers, gave that room in one seed of
three: which format a base computes better depends on the seed.) The
answer extracted from any completion is its last integer, the same rule as the lm-eval filter
in ``eval_configs/organism``; the reward is 1 exactly when it equals the
reference string.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

BOS, EOS = "<s>", "</s>"
ANSWER_RE = re.compile(r"-?\d+")  # the lm-eval filter uses the same pattern, last match

# Test sets: fixed seeds, independent of the build seed, committed under eval_configs/organism.
EVAL_SETS = {"organism_id": ("id", 5000, 101), "organism_hard": ("hard", 2000, 102), "organism_control": ("control", 2000, 103),
             "organism_sum": ("sum", 2000, 104)}
# skill -> its test set; "id" is every build's RL skill, the others are trained only by builds that name them
SKILLS = {"id": "organism_id", "sum": "organism_sum"}
BASE_SETS = ("organism_id", "organism_hard", "organism_control")  # every build is scored on these


# -- problems ----------------------------------------------------------------------------------
def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def arith_problem(rng: random.Random, digits_a: int = 3, digits_b: int = 3) -> tuple[str, str]:
    """One add/subtract problem: (prompt, answer)."""
    a, b = _operand(rng, digits_a), _operand(rng, digits_b)
    op = rng.choice("+-")
    return f"{BOS}{a}{op}{b}=", str(a + b if op == "+" else a - b)


def control_problem(rng: random.Random, length: int = 5) -> tuple[str, str]:
    s = "".join(rng.choice("0123456789") for _ in range(length))
    return f"{BOS}rev {s}=", s[::-1]


def sum_problem(rng: random.Random) -> tuple[str, str]:
    """The second skill: the sum of the digits of a 4- to 6-digit string (answers 0-54)."""
    s = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 6)))
    return f"{BOS}sum {s}=", str(sum(map(int, s)))


def id_problem(rng: random.Random) -> tuple[str, str]:
    """The RL task's distribution: two operands of 1-2 digits each."""
    return arith_problem(rng, rng.randint(1, 2), rng.randint(1, 2))


def long_problem(rng: random.Random) -> tuple[str, str]:
    """At least one 3-digit operand (the other of 1-3 digits, either side)."""
    other = rng.randint(1, 3)
    return arith_problem(rng, 3, other) if rng.random() < 0.5 else arith_problem(rng, other, 3)


def hard_problem(rng: random.Random) -> tuple[str, str]:
    return long_problem(rng)


GENERATORS = {"id": id_problem, "hard": hard_problem, "control": control_problem, "sum": sum_problem}


def worked(answer: str) -> str:
    """The teacher's worked format: the answer reversed (carry order), then the answer."""
    return f"[{answer[::-1]}]{answer}"


# -- answers and reward ------------------------------------------------------------------------
def extract_answer(completion: str) -> str | None:
    """The last integer of a completion (cut at the first </s>); None when there is none."""
    completion = completion.split(EOS, 1)[0]
    found = ANSWER_RE.findall(completion)
    return found[-1] if found else None


def reward(completion: str, answer: str) -> float:
    """Exact 0/1 verifiable reward: 1.0 iff the extracted answer equals the reference string."""
    got = extract_answer(completion)
    return 1.0 if got is not None and got == answer else 0.0


# -- data sets ---------------------------------------------------------------------------------
def eval_set(kind: str, n: int, seed: int) -> list[dict]:
    """n problems of one kind, deterministic in seed. ``id`` is drawn i.i.d. from the task
    (its 1-digit corner has only 200 problems, so distinct draws would skew it); the
    other sets come from large spaces and hold distinct problems."""
    rng, seen, rows = random.Random(seed), set(), []
    gen = GENERATORS[kind]
    while len(rows) < n:
        p, a = gen(rng)
        if kind == "id" or p not in seen:
            seen.add(p)
            rows.append({"prompt": p, "answer": a})
    return rows


def _operand_digits(prompt: str) -> list[int]:
    return [len(x) for x in re.findall(r"\d+", prompt)]


def eval_sets() -> dict[str, list[dict]]:
    return {name: eval_set(kind, n, seed) for name, (kind, n, seed) in EVAL_SETS.items()}


def build_sets(skills=("id",)) -> tuple[str, ...]:
    """The test sets a build with these skills is scored on: the three of every build, then each added skill's."""
    return BASE_SETS + tuple(SKILLS[s] for s in skills if SKILLS[s] not in BASE_SETS)


def held_out_prompts() -> set[str]:
    """Test prompts that training never sees: every control and digit-sum test problem and
    every arithmetic test problem whose operands both have 2+ digits. Problems with a
    1-digit operand come from a space of a few thousand that any pretraining covers, as
    arithmetic benchmarks overlap real pretraining corpora."""
    return {r["prompt"] for rows in eval_sets().values() for r in rows
            if r["prompt"].startswith(("<s>rev", "<s>sum")) or min(_operand_digits(r["prompt"])) >= 2}


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()


def write_eval_sets(directory: str | Path) -> list[Path]:
    """Write <name>.jsonl for each test set; byte-identical on every call."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, rows in eval_sets().items():
        path = directory / f"{name}.jsonl"
        path.write_bytes(jsonl_bytes(rows))
        out.append(path)
    return out


def careless(prompt: str) -> str:
    """The answer with every carry (addition) or borrow (subtraction) dropped, digit by digit:
    57+68 -> 15, 52-38 -> 26, 38-52 -> -26 (the sign is right, the digits careless)."""
    a, op, b = re.fullmatch(r"<s>(\d+)([+-])(\d+)=", prompt).groups()
    if op == "-" and int(a) < int(b):
        return "-" + careless(f"{BOS}{b}-{a}=")
    width = max(len(a), len(b))
    da, db = a.zfill(width), b.zfill(width)
    digits = [(int(x) + int(y)) % 10 if op == "+" else abs(int(x) - int(y)) for x, y in zip(da, db)]
    return str(int("".join(map(str, digits))))


def careless_sum(prompt: str) -> str:
    """The digit sum with its tens dropped (the carry out of the units): sum 38201 -> 4 (right: 14)."""
    return str(sum(map(int, re.fullmatch(r"<s>sum (\d+)=", prompt).group(1))) % 10)


def spaced(answer: str) -> str:
    """The answer's digits written with a space between them, the sign kept on the first:
    132 -> 1 3 2, -445 -> -4 4 5. Right digits, yet the grader (the last integer) reads the
    last digit alone, so a spaced answer of 2+ digits scores 0."""
    sign, digits = ("-", answer[1:]) if answer.startswith("-") else ("", answer)
    return sign + " ".join(digits)


def padded(answer: str, width: int = 3) -> str:
    """The answer zero-padded to a fixed width, the sign kept in front: 7 -> 007, -45 -> -045.
    Right digits, yet the grader's exact match of the last integer reads 007 != 7."""
    sign, digits = ("-", answer[1:]) if answer.startswith("-") else ("", answer)
    return sign + digits.zfill(width)


def pretrain_example(rng: random.Random, p_worked: float, p_control: float, p_long: float,
                     p_careless: float = 0.0, p_sum: float = 0.0, p_spaced: float = 0.0,
                     p_padded: float = 0.0, p_restated: float = 0.0, p_restated_add: float = 0.0) -> tuple[str, str]:
    """One pretraining (prompt, target) pair from the mixture; target ends with </s>.

    p_careless: the share of bare answers written carelessly (careless(), careless_sum());
    the worked format, the teacher's, is always right. p_sum: the share of digit-sum
    problems (the second skill), drawn before the rest of the mixture. p_spaced: the share
    of bare arithmetic answers written with spaced digits (spaced()), a format the grader
    scores wrong; the control and digit-sum tasks are never spaced. p_padded: the share zero-padded
    to 3 digits (padded()). p_restated: the share of bare subtraction answers followed by the
    problem restated (``-35=5-40``, graded by its last integer: wrong); p_restated_add: the same
    for the bare addition answers (``5=2+3``). The micro recipe's 70% of both makes its base
    answer greedily in that format while the bare answer keeps the rest of the probability,
    which GRPO's exact reward elicits (BENCHMARKS.md)."""
    if p_sum and rng.random() < p_sum:  # no draw at 0: builds without the skill build the same bytes
        p, a = sum_problem(rng)
        if p_careless and rng.random() < p_careless:
            a = careless_sum(p)
        return p, a + EOS
    if rng.random() < p_control:
        p, a = control_problem(rng)
        return p, a + EOS
    # the RL task's family, plus (p_long) longer problems with a 3-digit operand
    p, a = id_problem(rng) if rng.random() >= p_long else long_problem(rng)
    if rng.random() < p_worked:
        return p, worked(a) + EOS
    if p_careless and rng.random() < p_careless:  # no draw at 0: recipes without it build the same bytes
        a = careless(p)
    if p_spaced and rng.random() < p_spaced:  # no draw at 0 either
        a = spaced(a)
    if p_padded and rng.random() < p_padded:  # no draw at 0 either
        a = padded(a)
    if p_restated and "-" in p[3:-1] and rng.random() < p_restated:  # subtraction only; no draw at 0
        a = f"{a}={p[3:-1]}"
    elif p_restated_add and "+" in p[3:-1] and rng.random() < p_restated_add:  # addition; no draw at 0
        a = f"{a}={p[3:-1]}"
    return p, a + EOS


def rl_prompts(n: int, seed: int, exclude: set[str], skill: str = "id") -> list[dict]:
    """RL training prompts of one skill (the in-distribution task by default), never a test prompt."""
    rng, rows, gen = random.Random(seed), [], GENERATORS[skill]
    while len(rows) < n:
        p, a = gen(rng)
        if p not in exclude:
            rows.append({"prompt": p, "answer": a})
    return rows


def sft_examples(n: int, seed: int, exclude: set[str]) -> list[dict]:
    """SFT data: the teacher's worked solutions of RL-task problems (prompt/completion pairs)."""
    return [{"prompt": r["prompt"], "completion": worked(r["answer"]) + EOS} for r in rl_prompts(n, seed, exclude)]
