"""Plain `mergekit-yaml` (no rankedit method registered) rebuilds an edit bit for bit from
``python -m rankedit.edits.replay``'s linear YAML over the base and the saved delta."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rankedit.core.errors import RankeditError
from rankedit.edits.build import build_edit
from rankedit.edits.replay import REPLAY, delta_tensor, write_replay
from rankedit.files.checkpoint import Checkpoint
from rankedit.testing import synthetic

MERGEKIT_YAML = Path(sys.executable).parent / "mergekit-yaml"


@pytest.fixture(scope="module")
def bf16_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay_bf16")
    base = synthetic.build_random(root / "base", "llama", seed=0, dtype=torch.bfloat16)
    return base, synthetic.perturb(base, root / "tuned", scale=1e-2, seed=1, dtype=torch.bfloat16)


@pytest.mark.parametrize("pair,method,params", [("tiny_pair", "rank-k", {"k": 1}), ("bf16_pair", "off-principal", {})])
def test_plain_mergekit_yaml_rebuilds_the_edit_bit_for_bit(request, tmp_path, pair, method, params):
    base, tuned = request.getfixturevalue(pair)
    edit = build_edit(method, base, tuned, tmp_path / "edit", **params)
    kit = write_replay(edit, base, tmp_path / "kit")
    cfg = yaml.safe_load((kit / REPLAY).read_text())
    assert cfg["merge_method"] == "linear" and "rankedit" not in (kit / REPLAY).read_text().split("\n", 1)[1]
    # a fresh interpreter running mergekit's own console script: nothing of rankedit is imported
    r = subprocess.run([str(MERGEKIT_YAML), str(kit / REPLAY), str(tmp_path / "rebuilt"), "--no-copy-tokenizer"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    want, got = Checkpoint(edit), Checkpoint(tmp_path / "rebuilt")
    assert set(got.names) == set(want.names)
    changed = 0
    for name in want.names:
        w = want.get(name)
        assert torch.equal(got.get(name), w), name
        changed += not torch.equal(w, Checkpoint(base).get(name))
    assert changed > 0  # the edit moved some tensors, and the replay moved them the same way


def test_a_delta_that_does_not_round_back_is_refused():
    base = torch.tensor([1.0], dtype=torch.float32)
    assert delta_tensor("w", torch.tensor([1.5]), base).dtype == torch.float64
    # 100 binades apart: the float64 difference rounds to -base, and base + delta is 0, not the edit
    with pytest.raises(RankeditError, match="not the edit in torch.float64"):
        delta_tensor("w", torch.tensor([2.0 ** -40]), torch.tensor([2.0 ** 60]))
    assert torch.equal(delta_tensor("w", base, base), torch.zeros(1, dtype=torch.float64))
