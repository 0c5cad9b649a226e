"""Shared fixtures: tiny random-init checkpoints built locally (no downloads)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from rankedit.testing import synthetic


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Organisms, scores and hashes go to a per-session cache, never the user's ~/.cache/rankedit."""
    if not os.environ.get("RANKEDIT_CACHE"):
        os.environ["RANKEDIT_CACHE"] = str(tmp_path_factory.mktemp("rankedit-cache"))
    yield


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """A tiny Llama base and a perturbed tuned twin: (base_dir, tuned_dir)."""
    root = tmp_path_factory.mktemp("tiny_pair")
    base = synthetic.build_random(root / "base", "llama", seed=0)
    tuned = synthetic.perturb(base, root / "tuned", scale=1e-2, seed=1)
    return base, tuned


@pytest.fixture(scope="session")
def tiny_family_pairs(tmp_path_factory):
    """family -> (base_dir, tuned_dir) for several architectures."""
    root = tmp_path_factory.mktemp("families")
    pairs = {}
    for fam in ("llama", "qwen2", "qwen3", "gemma", "gpt2"):
        base = synthetic.build_random(root / fam / "base", fam, seed=0)
        pairs[fam] = (base, synthetic.perturb(base, root / fam / "tuned", scale=1e-2, seed=1))
    return pairs


@pytest.fixture(scope="session")
def micro_organism(tmp_path_factory):
    """The micro model organism (base, rl, rl-seed2, sft + checkpoints), built once per session.

    Set RANKEDIT_TEST_ORGANISM to a directory to build there and reuse it across sessions.
    """
    from pathlib import Path

    from rankedit.organism import build

    # default: the session cache's own organism dir, which `organism: {size: micro}` plans reuse
    out = os.environ.get("RANKEDIT_TEST_ORGANISM")
    return build(size="micro", seed=0, out=Path(out) if out else None, progress=False)
