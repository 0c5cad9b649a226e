"""Edits computed ahead of mergekit on a second core (rankedit.edits.ahead): the worker's contract, and
every edit's output is the same bytes with and without it, with the worker's results actually used."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import torch

from rankedit.edits import EDITS
from rankedit.edits import ahead as ahead_mod
from rankedit.edits import build as build_mod
from rankedit.edits.ahead import Ahead
from rankedit.edits.manifest import read_manifest
from rankedit.testing import synthetic


def test_the_worker_runs_ahead_in_order_within_its_window():
    done, lock = [], threading.Lock()

    def compute(name):
        with lock:
            done.append(name)
        return name.upper()

    a = Ahead(["a", "b", "c", "d", "e"], compute, key=None, window=2).start()
    time.sleep(0.2)
    assert done == ["a", "b"]  # two results held: the worker waits for room before "c"
    got = []
    for n in "abcde":
        got.append(a.take(n))
        time.sleep(0.02)  # the graph's own work on the matrix (load, write) while the worker goes on
    assert got == ["A", "B", "C", "D", "E"] and done == list("abcde")
    a.close()


def test_a_matrix_the_worker_has_not_claimed_is_computed_by_the_caller_and_skipped_by_the_worker():
    calls = []
    gate = threading.Event()

    def compute(name):
        gate.wait(5)
        calls.append(name)
        return name

    a = Ahead(["a", "b", "c"], compute, key=None, window=1).start()
    time.sleep(0.05)  # the worker holds "a"
    assert a.take("c") is None  # not claimed yet: the caller computes it, the worker must skip it
    gate.set()
    assert a.take("a") == "a"
    time.sleep(0.05)
    assert a.take("b") == "b"
    a.close()
    assert calls == ["a", "b"]


def test_a_failure_in_the_worker_hands_the_matrix_back_to_the_caller():
    def compute(name):
        if name == "b":
            raise OSError("read failed")
        return name

    a = Ahead(["a", "b", "c"], compute, key=None, window=3).start()
    time.sleep(0.1)
    assert (a.take("a"), a.take("b"), a.take("c")) == ("a", None, "c")
    a.close()


def test_a_caller_in_another_order_neither_deadlocks_nor_computes_twice():
    calls = []

    def compute(name):
        calls.append(name)
        return name

    for _ in range(20):
        calls.clear()
        a = Ahead(["a", "b", "c", "d"], compute, key=None, window=1).start()
        got = [a.take(n) for n in ("b", "d", "a", "c")]  # the held result ("a") is not the one asked for first
        a.close()
        inline = [n for n, g in zip("bdac", got) if g is None]
        assert all(g in (None, n) for n, g in zip("bdac", got))
        assert sorted(calls + inline) == ["a", "b", "c", "d"]  # each computed once, by one of the two


def test_the_caller_takes_over_a_matrix_the_worker_has_not_begun():
    gate = threading.Event()
    calls = []

    def compute(name):
        gate.wait(5)
        calls.append(name)
        return name

    a = Ahead(["a", "b", "c"], compute, key=None, window=1).start()
    time.sleep(0.05)  # the worker is on "a"
    assert a.take("b") is None  # not begun: the caller computes it
    gate.set()
    assert a.take("a") == "a"
    time.sleep(0.05)
    a.close()
    assert "b" not in calls


def test_close_stops_a_worker_waiting_for_room():
    a = Ahead([str(i) for i in range(100)], lambda n: n, key=None, window=1).start()
    time.sleep(0.05)
    a.close()
    assert not a._thread.is_alive()


@pytest.fixture(scope="module")
def run_family(tmp_path_factory):
    """A tiny bf16 base, its tuned twin, another run from the same base, and three checkpoints of a run."""
    root = tmp_path_factory.mktemp("ahead")
    base = synthetic.build_random(root / "base", "llama", seed=0, dtype=torch.bfloat16)
    cks = [synthetic.perturb(base, root / f"ck{i}", scale=1e-2 * i, seed=i) for i in (1, 2, 3)]
    other = synthetic.perturb(base, root / "other", scale=1e-2, seed=9)
    return base, cks, other


def _params(method, cks, other):
    if method == "extrapolate":
        return cks, {"mode": "linear", "steps": [10, 20, 30], "target_step": 60}
    if method in ("rank-auto", "random-rank-auto"):
        return cks[-1], {"energy": 0.9}
    if method == "mask":
        return cks[-1], {"source": "from", "mask_from": other}
    return cks[-1], {}


def _sha(path):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.glob("*.safetensors"))}


class _AllAhead(Ahead):
    """The worker computes every matrix before the merge starts: every result the adapter uses is the worker's."""

    def __init__(self, names, compute, key, window=2):
        super().__init__(names, compute, key, window=10**6)

    def start(self):
        super().start()
        self._thread.join()
        return self


@pytest.mark.parametrize("method", sorted(EDITS))
def test_every_edit_is_the_same_bytes_computed_ahead_or_inline(run_family, tmp_path, monkeypatch, method):
    base, cks, other = run_family
    tuned, params = _params(method, cks, other)
    taken = []
    real_take = Ahead.take
    monkeypatch.setattr(ahead_mod.Ahead, "take", lambda self, n: taken.append(real_take(self, n)) or taken[-1])
    outs = {}
    for mode in ("inline", "worker", "shared"):
        monkeypatch.setattr(build_mod, "matrices_at_once", lambda *a, m=mode, **k: 1 if m == "inline" else 2)
        monkeypatch.setattr(build_mod, "Ahead", _AllAhead if mode == "worker" else Ahead)
        taken.clear()
        outs[mode] = build_mod.build_edit(method, base, tuned, tmp_path / mode, **params)
        if mode == "inline":
            assert taken == []
        elif mode == "worker":  # every matrix came from the worker: not inline compared with inline
            assert len(taken) == 14 and all(t is not None for t in taken)
    ref = read_manifest(outs["inline"])
    for mode in ("worker", "shared"):
        assert _sha(outs[mode]) == _sha(outs["inline"]), mode
        got = read_manifest(outs[mode])
        diff = [(a["name"], k, a[k], b[k]) for a, b in zip(ref["matrices"], got["matrices"]) for k in a if a[k] != b[k]]
        assert diff == [] and ref["summary"] == got["summary"], mode
