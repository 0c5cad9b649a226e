"""Tiny local copies of the reasoning suite's datasets, each in its own Hub layout and format.

What a user copies to an offline cluster (``hf download OWNER/NAME --repo-type dataset
--local-dir DIR/OWNER/NAME``), cut to a few problems: GSM8K as parquet shards under its
``main`` config folder, MATH-500 and AIME 2025 as ``test.jsonl``, the seven MATH subjects
(Minerva math) as parquet shards per config folder, AIME 2024 as its one parquet file
(the ``train`` split). Field names are the datasets' own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


def _parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_reasoning_data(root: Path, n: int = 3) -> Path:
    """DIR for ``--data-dir``: n problems per dataset (sums a + b, answers known)."""
    sums = [(i + 2, 3 * i + 1) for i in range(n)]
    gsm = [{"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
            "answer": f"He has {a} + {b} = {a + b} apples.\n#### {a + b}"} for a, b in sums]
    for split in ("train", "test"):
        _parquet(root / "openai" / "gsm8k" / "main" / f"{split}-00000-of-00001.parquet", gsm)
    _jsonl(root / "HuggingFaceH4" / "MATH-500" / "test.jsonl",
           [{"problem": f"What is ${a}+{b}$?", "solution": f"${a}+{b}=\\boxed{{{a + b}}}$.", "answer": str(a + b),
             "subject": "Algebra", "level": 1, "unique_id": f"test/algebra/{i}.json"} for i, (a, b) in enumerate(sums)])
    for subject in MATH_SUBJECTS:
        rows = [{"problem": f"Compute ${a}+{b}$.", "level": "Level 1", "type": subject,
                 "solution": f"We add: ${a}+{b}=\\boxed{{{a + b}}}$."} for a, b in sums]
        for split in ("train", "test"):
            _parquet(root / "EleutherAI" / "hendrycks_math" / subject / f"{split}-00000-of-00001.parquet", rows)
    _parquet(root / "Maxwell-Jia" / "AIME_2024" / "aime_2024_problems.parquet",
             [{"ID": f"2024-I-{i}", "Problem": f"Find {a}+{b}.", "Solution": f"{a}+{b}={a + b}", "Answer": a + b}
              for i, (a, b) in enumerate(sums)])
    _jsonl(root / "math-ai" / "aime25" / "test.jsonl",
           [{"problem": f"Find {a}+{b}.", "answer": str(a + b), "id": str(i)} for i, (a, b) in enumerate(sums)])
    return root
