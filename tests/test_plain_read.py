"""rankedit.files.plain_read: the same tensors as the memory-mapped reader, without the map."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from rankedit.core.errors import RankeditError
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.plain_read import read_tensor


def test_every_dtype_and_shape_reads_as_the_mapped_reader_does(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "a.weight": torch.randn(7, 5, generator=g).bfloat16(),
        "b.weight": torch.randn(3, 4, generator=g),
        "c.weight": torch.randn(2, 3, generator=g).half(),
        "d.weight": torch.randn(4, 4, generator=g).double(),
        "e": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "f": torch.tensor([True, False, True]),
        "g": torch.randn(0, 4, generator=g),
        "h": torch.tensor(3.5),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    ck = Checkpoint(tmp_path)
    for name in tensors:
        got = read_tensor(ck, name)
        assert got.dtype == tensors[name].dtype and got.shape == tensors[name].shape
        assert torch.equal(got, ck.get(name)) and torch.equal(got, tensors[name])


def test_a_file_cut_after_opening_is_one_error(tmp_path):
    save_file({"w": torch.randn(64, 64)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    ck = Checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(RankeditError, match="corrupt or truncated"):
        read_tensor(ck, "w")
