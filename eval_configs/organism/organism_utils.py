"""Load the organism test sets from the JSONL files next to this file (not the cwd), offline.

The JSONL files are written by rankedit.organism.tasks.write_eval_sets and are
checked byte-for-byte against a fresh regeneration by the test suite.
"""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _load(name: str) -> datasets.DatasetDict:
    rows = [json.loads(line) for line in (HERE / f"{name}.jsonl").read_text().splitlines() if line]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def load_organism_id(**_):
    return _load("organism_id")


def load_organism_hard(**_):
    return _load("organism_hard")


def load_organism_control(**_):
    return _load("organism_control")


def load_organism_sum(**_):
    return _load("organism_sum")
