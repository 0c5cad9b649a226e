"""The cache of W0's parts (rankedit.core.base_decomp): same numbers, less work, robust to bad entries."""

import pytest
import torch

from rankedit.core import base_decomp

from rankedit.analysis import geometry

from rankedit.testing import synthetic
from rankedit.analysis.analyze import analyze


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("RANKEDIT_CACHE", str(root))
    return root / base_decomp.FOLDER


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """One tiny base and two runs tuned from it."""
    root = tmp_path_factory.mktemp("two_runs")
    base = synthetic.build_random(root / "base", "llama", seed=0)
    return (base, synthetic.perturb(base, root / "rl", scale=1e-2, seed=1),
            synthetic.perturb(base, root / "sft", scale=3e-2, seed=2))


@pytest.fixture()
def decompositions(monkeypatch):
    """Counts the computations of W0's parts (``geometry.base_parts``, the real function, counted).

    W0's Gram eigendecomposition itself is made on every analysis: the propensity share
    needs all of its vectors. What a cache entry saves is the rest of the parts: the
    top-k triplets' other side, the norm and the two mask cut-offs."""
    calls = []
    real = geometry.base_parts

    def counted(w0, k=geometry.DEFAULT_K, alpha=geometry.DEFAULT_ALPHA, eig=None):
        calls.append(tuple(w0.shape))
        return real(w0, k, alpha, eig)

    monkeypatch.setattr(geometry, "base_parts", counted)
    return calls


def entries(cache):
    return sorted(cache.rglob("*.safetensors"))


def test_metrics_are_identical_with_and_without_the_cache(two_runs, cache):
    base, rl, _ = two_runs
    fresh = analyze(base, rl, progress=False, base_cache=False)
    assert entries(cache) == []
    cold = analyze(base, rl, progress=False)  # computes and stores
    warm = analyze(base, rl, progress=False)  # loads
    assert len(entries(cache)) == len(fresh) == 14
    assert cold == fresh
    assert warm == fresh


def test_a_second_run_from_the_same_base_skips_the_base_parts(two_runs, cache, decompositions):
    base, rl, sft = two_runs
    rows = analyze(base, rl, progress=False)
    assert len(decompositions) == len(rows)
    decompositions.clear()
    analyze(base, sft, progress=False)
    assert len(decompositions) == 0  # every base part from the cache
    assert len(entries(cache)) == len(rows)
    decompositions.clear()
    assert analyze(base, sft, progress=False, k=2) == analyze(base, sft, progress=False, k=2, base_cache=False)
    assert len(entries(cache)) == 2 * len(rows)  # another k is another entry


def test_a_corrupted_entry_is_ignored_and_rewritten(two_runs, cache, decompositions):
    base, rl, _ = two_runs
    fresh = analyze(base, rl, progress=False, base_cache=False)
    analyze(base, rl, progress=False)
    files = entries(cache)
    files[0].write_bytes(b"not a safetensors file")
    files[1].write_bytes(files[1].read_bytes()[:-7])  # truncated
    data = bytearray(files[2].read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the payload: still a valid file, wrong numbers
    files[2].write_bytes(bytes(data))
    decompositions.clear()
    assert analyze(base, rl, progress=False) == fresh
    assert len(decompositions) == 3  # three base parts computed again
    decompositions.clear()
    assert analyze(base, rl, progress=False) == fresh
    assert len(decompositions) == 0  # ... and stored again, whole


def test_the_key_follows_content_and_settings():
    w = torch.randn(8, 12)
    key = base_decomp.parts_key(w, 2, 0.5, "cpu")
    assert key == base_decomp.parts_key(w.clone(), 2, 0.5, "cpu")
    w2 = w.clone()
    w2[3, 4] += 1e-6
    assert base_decomp.parts_key(w2, 2, 0.5, "cpu") != key
    assert base_decomp.parts_key(w, 1, 0.5, "cpu") != key
    assert base_decomp.parts_key(w, 2, 0.25, "cpu") != key
    assert base_decomp.parts_key(w.bfloat16(), 2, 0.5, "cpu") != key
    assert base_decomp.parts_key(w.reshape(12, 8), 2, 0.5, "cpu") != key


def test_each_matrix_is_decomposed_once_per_analysis_cache_or_not(two_runs, cache, monkeypatch):
    """W0 and W1 one Gram eigendecomposition each, dW its values: no matrix twice (the
    propensity share and the base parts share W0's), with a cold cache as with a warm one."""
    base, rl, _ = two_runs
    eighs, other = [], []
    real_eigh = geometry.gram_eigh

    def counted(gram):
        eighs.append(tuple(gram.shape))
        return real_eigh(gram)

    monkeypatch.setattr(geometry, "gram_eigh", counted)
    monkeypatch.setattr(geometry, "gram_svd", lambda *a, **k: other.append(a) or pytest.fail("gram_svd called"))
    for cached in (False, True, True):  # uncached, cold cache, warm cache
        eighs.clear()
        rows = analyze(base, rl, progress=False, base_cache=cached)
        assert len(eighs) == 2 * len(rows) and other == []
