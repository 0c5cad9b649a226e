"""The organism's recipe per size: plain data, no torch (the build's own process reads it and
trains nothing, so importing torch and transformers there only cost CPU: about 10 s a build).

A recipe is plain data (a dict of numbers and strings): its hash names the
cache directory, and it is written verbatim into organism.json.
"""

from __future__ import annotations

import copy

from rankedit.core.errors import RankeditError
from rankedit.organism.runs import parse_skills
from rankedit.organism.vocab import VOCAB

# Llama shapes. `small` is the trial's 1.29M-parameter model; `micro` exists for tests.
ARCH = {
    "micro": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4),
    "small": dict(hidden_size=160, intermediate_size=448, num_hidden_layers=4, num_attention_heads=5),
}

# Learning rates: see the module docstring of rankedit/organism/builder.py for why these values.
RECIPES = {
    "micro": {
        # 70% of the bare answers restate the problem after the answer ("5=2+3", "-35=5-40", graded by their last
        # integer: wrong): the base answers greedily in that format while the bare answer keeps 30% of the
        # probability, a format GRPO's exact reward elicits even in a base too weak to learn new arithmetic
        # (BENCHMARKS.md, the micro organism's RL run). No 3-digit or worked problems: the 1-2 digit task is learnt
        # twice as well in the same CPU; 850 steps of 32 keep the whole build near a minute of CPU.
        "pretrain": dict(steps=850, batch=32, lr=3e-3, warmup=60, min_lr_ratio=0.05, p_worked=0.0, p_control=0.1, p_long=0.0,
                         p_restated=0.7, p_restated_add=0.7, threads=1),
        # micro is a plumbing twin for tests: a large rate makes every run move in bf16 and flips the format in 40 steps;
        # logprob_chunk: trl's LM-head buffer 64 wide (the vocabulary: 48), not 32768 (rl._logprob_chunk: -5 CPU s a run)
        "rl": dict(steps=40, prompts_per_step=8, generations=8, lr=3e-4, max_new_tokens=14, temperature=1.0, threads=1,
                   logprob_chunk=64),
        "sft": dict(steps=20, batch=32, lr=3e-4, threads=1),
        "eval_limit": 500,
    },
    "small": {
        # 30% of answers in the teacher's (always right) worked format, 80% of the other, bare answers careless
        # (carries and borrows dropped): the base's greedy answer is the careless one on carry problems while
        # the right one is there to sample, in every seed, so RL has it to elicit (rankedit/organism/builder.py)
        "pretrain": dict(steps=800, batch=64, lr=2e-3, warmup=100, min_lr_ratio=0.05, p_worked=0.3, p_careless=0.8,
                         p_control=0.1, p_long=0.2, threads=1),
        "rl": dict(steps=400, prompts_per_step=8, generations=8, lr=3e-5, max_new_tokens=14, temperature=1.0, threads=1),
        "sft": dict(steps=400, batch=64, lr=3e-5, threads=1),
        "eval_limit": None,
    },
}
SIZES = tuple(RECIPES)
# A second skill's share of the pretraining mixture (drawn before the rest: tasks.pretrain_example). Only a
# build that names the skill has the key, so the one-skill recipes, their hashes and their bytes stay as they were.
SKILL_PRETRAIN = {"sum": {"p_sum": 0.15}}


def recipe(size: str, seed: int, skills=("id",)) -> dict:
    if size not in RECIPES:
        raise RankeditError(f"unknown organism size {size!r}; choose one of: {', '.join(SIZES)}")
    skills = parse_skills(skills)
    r = copy.deepcopy(RECIPES[size])
    r.update(size=size, seed=int(seed), arch=dict(ARCH[size]), vocab_size=len(VOCAB))
    if skills != ("id",):  # a second skill changes the base: its recipe (and hash) says so
        r["skills"] = list(skills)
        for s in skills[1:]:
            r["pretrain"].update(SKILL_PRETRAIN[s])
    return r
