"""Bounded output shards: mergekit buffers one shard in memory, so rankedit picks its size."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from rankedit.edits import build_edit
from rankedit.edits.merge_options import SHARD_CAP, SHARD_FLOOR, merge_options, shard_bytes


def test_shard_size_function():
    assert shard_bytes(100_000_000) == SHARD_FLOOR  # a small model: one shard at most the floor
    assert shard_bytes(2_000_000_000) == 500_000_000  # a quarter of the model
    assert shard_bytes(140_000_000_000) == SHARD_CAP  # 70B in bf16: capped, not 5 GB
    assert shard_bytes(10**9, cap=4096) == 4096  # a cap below the floor wins
    assert merge_options("cpu", False, True, 140_000_000_000).out_shard_size == SHARD_CAP
    with pytest.raises(ValueError):
        shard_bytes(10, cap=0)


def test_edit_larger_than_cap_writes_several_shards_equal_to_one(tiny_pair, tmp_path):
    base, tuned = tiny_pair
    one = build_edit("rank-k", base, tuned, tmp_path / "one", k=2)
    many = build_edit("rank-k", base, tuned, tmp_path / "many", k=2, max_shard_bytes=64 * 1024)
    assert len(list(one.glob("*.safetensors"))) == 1
    shards = list(many.glob("*.safetensors"))
    assert len(shards) > 3 and max(f.stat().st_size for f in shards) < 64 * 1024 + 16_384
    index = json.loads((many / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {f.name for f in shards}
    a = AutoModelForCausalLM.from_pretrained(one).state_dict()
    b = AutoModelForCausalLM.from_pretrained(many).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
