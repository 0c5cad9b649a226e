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
    assert done == ["a", "b"]  # two results held: the worker has claimed "c" and waits for room
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

    a = Ahead(["a", "b", "c"], compute, key=None).start()
    assert (a.take("a"), a.take("b"), a.take("c")) == ("a", None, "c")  # "c" is claimed: no race
    a.close()


def test_a_caller_in_another_order_neither_deadlocks_nor_computes_twice():
    calls = []

    def compute(name):
        calls.append(name)
        return name

    a = Ahead(["a", "b", "c", "d"], compute, key=None, window=1).start()
    time.sleep(0.05)  # "a" held, "b" claimed and waiting for room
    got = [a.take(n) for n in ("b", "d", "a", "c")]  # "b" is wanted: computed despite the full window
    a.close()
    assert got[0] == "b" and got[2] == "a"
    assert sorted(calls + [n for n, g in zip("bdac", got) if g is None]) == ["a", "b", "c", "d"]


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


@pytest.mark.parametrize("method", sorted(EDITS))
def test_every_edit_is_the_same_bytes_computed_ahead_or_inline(run_family, tmp_path, monkeypatch, method):
    base, cks, other = run_family
    tuned, params = _params(method, cks, other)
    taken = []
    real_take = Ahead.take
    monkeypatch.setattr(ahead_mod.Ahead, "take", lambda self, n: taken.append(real_take(self, n)) or taken[-1])
    outs = {}
    for n in (1, 2):
        monkeypatch.setattr(build_mod, "matrices_at_once", lambda *a, n=n, **k: n)
        taken.clear()
        outs[n] = build_mod.build_edit(method, base, tuned, tmp_path / f"out{n}", **params)
        if n == 1:
            assert taken == []
        else:  # every matrix came from the worker: the comparison is not inline against inline
            assert len(taken) == 14 and all(t is not None for t in taken)
    assert _sha(outs[1]) == _sha(outs[2])
    one, two = read_manifest(outs[1]), read_manifest(outs[2])
    diff = [(a["name"], k, a[k], b[k]) for a, b in zip(one["matrices"], two["matrices"]) for k in a if a[k] != b[k]]
    assert diff == [] and one["summary"] == two["summary"]
