"""W0's decompositions for off-principal and its kin (rankedit.core.base_decomp): cached on disk, the same bits
as computed afresh, and shared by an edit and its control."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from rankedit.core import svd as core_svd
from rankedit.core.tensor_cache import entry_path
from rankedit.core import base_decomp as base_svd
from rankedit.edits import build_edit
from rankedit.testing import synthetic


def _decaying(m: int, n: int, seed: int, alpha: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, min(m, n), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, min(m, n), generator=g, dtype=torch.float64))
    s = torch.arange(1, min(m, n) + 1, dtype=torch.float64) ** -alpha
    return ((U * s) @ V.T).float()


def _entries(root: Path) -> list[Path]:
    return sorted((root / base_svd.FOLDER).rglob("*.safetensors"))


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RANKEDIT_CACHE", str(root))
    return root


def test_a_hit_equals_the_fresh_answer_bit_for_bit_and_skips_the_work(cache, monkeypatch):
    w0 = _decaying(300, 420, seed=0)
    exact = core_svd.edit_svd(w0, 8, 5)
    fresh, acc = base_svd.base_top_k(w0, 8, 5)
    for a, b in zip(fresh, exact[0]):
        assert torch.equal(a, b) and a.is_contiguous()
    assert acc == exact[1]
    assert len(_entries(cache)) == 1

    def no_work(*a, **k):
        raise AssertionError("decomposed again")

    monkeypatch.setattr(core_svd, "edit_svd", no_work)
    hit, acc2 = base_svd.base_top_k(w0.clone(), 8, 5)
    for a, b in zip(hit, fresh):
        assert torch.equal(a, b) and a.is_contiguous()
    assert acc2 == acc


def test_small_matrices_are_not_cached(cache):
    w0 = _decaying(200, 300, seed=1)  # at most 256 on the short side: LAPACK inline, cheaper than its hash
    r, _ = base_svd.base_top_k(w0, 4)
    assert torch.equal(r.S, core_svd.edit_svd(w0, 4)[0].S)
    assert _entries(cache) == []


def test_the_key_names_everything_the_answer_depends_on():
    w0 = _decaying(300, 400, seed=2)
    key = base_svd.cache_key(w0, 8, 0)
    assert base_svd.cache_key(w0.clone(), 8, 0) == key
    w1 = w0.clone()
    w1[0, 0] += 1e-3
    for other in (base_svd.cache_key(w1, 8, 0), base_svd.cache_key(w0, 9, 0), base_svd.cache_key(w0, 8, 1),
                  base_svd.cache_key(w0.double(), 8, 0), base_svd.cache_key(w0.T.contiguous(), 8, 0)):
        assert other != key


def test_the_key_names_the_thread_count():
    """A product split across another number of threads may round differently: such an entry is another one."""
    w0 = _decaying(300, 400, seed=2)
    key = base_svd.cache_key(w0, 8, 0)
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        assert base_svd.cache_key(w0, 8, 0) != key
    finally:
        torch.set_num_threads(before)


def test_a_cache_that_cannot_even_be_created_only_costs_time(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("a file where the cache's parent folder would be")
    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "afile" / "cache"))
    w0 = _decaying(300, 400, seed=6)
    r, acc = base_svd.base_top_k(w0, 5)
    assert torch.equal(r.S, core_svd.edit_svd(w0, 5)[0].S) and acc.identifiable


def test_a_damaged_entry_is_computed_again(cache):
    w0 = _decaying(300, 400, seed=3)
    first, acc = base_svd.base_top_k(w0, 6)
    (path,) = _entries(cache)
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    again, acc2 = base_svd.base_top_k(w0, 6)
    assert all(torch.equal(a, b) for a, b in zip(again, first)) and acc2 == acc
    entry = path.read_bytes()
    path.write_bytes(entry[:-8] + bytes(8))  # same size, altered payload: its sha256 no longer fits
    assert all(torch.equal(a, b) for a, b in zip(base_svd.base_top_k(w0, 6)[0], first))


@pytest.fixture(scope="module")
def wide_pair(tmp_path_factory):
    """A Llama whose q/o (288 x 288) and MLP (320 x 288) matrices are above the exact SVD's 256, with
    a decaying base spectrum, as trained weights have."""
    root = tmp_path_factory.mktemp("wide")
    base = synthetic.build_random(root / "base", "llama", seed=0, hidden_size=288, intermediate_size=320,
                                  num_hidden_layers=1, num_attention_heads=4)
    base = synthetic.decay_spectrum(base, 0.5, seed=0)
    return base, synthetic.perturb(base, root / "tuned", scale=1e-2, seed=1)


def _weights_sha(out: Path) -> str:
    return hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def test_an_edit_and_its_control_share_one_decomposition(wide_pair, tmp_path, cache, monkeypatch):
    base, tuned = wide_pair
    off = build_edit("off-principal", base, tuned, tmp_path / "off", k=16)
    big = [p for p in _entries(cache)]
    assert len(big) == 5  # every matrix above 256 on its short side: q, o (288 x 288), gate, up, down (320 x 288)
    made = []
    real = core_svd.edit_svd
    monkeypatch.setattr(core_svd, "edit_svd",
                        lambda A, k, seed=0, **kw: made.append(tuple(A.shape)) or real(A, k, seed, **kw))
    build_edit("principal-only", base, tuned, tmp_path / "pon", k=16)
    assert [s for s in made if min(s) > core_svd.EXACT_MAX_DIM] == []  # W0's were all found on disk
    assert _entries(cache) == big
    again = build_edit("off-principal", base, tuned, tmp_path / "off2", k=16)
    assert _weights_sha(again) == _weights_sha(off)


def test_an_unwritable_cache_still_builds_the_same_edit(wide_pair, tmp_path, monkeypatch):
    base, tuned = wide_pair
    root = tmp_path / "c"
    root.mkdir()
    (root / base_svd.FOLDER).write_text("a file where the cache's folder would go")  # unwritable, even for root
    monkeypatch.setenv("RANKEDIT_CACHE", str(root))
    out = build_edit("off-principal", base, tuned, tmp_path / "out", k=16)
    assert (root / base_svd.FOLDER).is_file()
    monkeypatch.setenv("RANKEDIT_CACHE", str(root / base_svd.FOLDER / "below-a-file"))  # not even a root
    assert _weights_sha(build_edit("off-principal", base, tuned, tmp_path / "out2", k=16)) == _weights_sha(out)
    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "c2"))
    assert _weights_sha(out) == _weights_sha(build_edit("off-principal", base, tuned, tmp_path / "ok", k=16))


def test_sub_rank_1_on_the_base_direction_uses_it_too(wide_pair, tmp_path, cache):
    base, tuned = wide_pair
    build_edit("sub-rank-1", base, tuned, tmp_path / "s", direction="base")
    assert len(_entries(cache)) == 5
    build_edit("sub-rank-1", base, tuned, tmp_path / "d", direction="delta")  # dW's pair: not W0's, not cached
    assert len(_entries(cache)) == 5
    assert all(entry_path(base_svd.FOLDER, p.stem) == p for p in _entries(cache))
