"""Work done beside the merge (rankedit.edits.ahead): the same bits as done inside it, bounded memory,
and never a wait behind a queue."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from pathlib import Path

import pytest
import torch

from rankedit.edits import ahead as ahead_mod
from rankedit.edits import build_edit
from rankedit.edits.registry import MatrixInputs
from rankedit.testing import synthetic


@pytest.fixture(scope="module")
def wide_pair(tmp_path_factory):
    """A Llama whose q/o (288 x 288) and MLP (320 x 288) matrices are above 256, so their work is done
    ahead; k/v (144 x 288) stay inline. A decaying base spectrum, as trained weights have."""
    root = tmp_path_factory.mktemp("wide")
    base = synthetic.build_random(root / "base", "llama", seed=0, hidden_size=288, intermediate_size=320,
                                  num_hidden_layers=2, num_attention_heads=4)
    base = synthetic.decay_spectrum(base, 0.5, seed=0)
    return base, synthetic.perturb(base, root / "tuned", scale=1e-2, rank=8, seed=1)


def _sha(out: Path) -> str:
    return hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


EDITS = [("off-principal", {"k": 16}), ("principal-only", {"k": 16}), ("sub-rank-1", {"direction": "base"}),
         ("sub-rank-1", {"direction": "delta"}), ("random-sub-rank-1", {"direction": "base"}),
         ("rank-auto", {"energy": 0.5}), ("random-rank-auto", {"energy": 0.5}), ("rank-k", {"k": 1}),
         ("random-rank-k", {"k": 2})]


def beside_and_inside(method, params, base, tuned, tmp_path, monkeypatch) -> list[bool]:
    """Build the edit with its work beside the merge, then with nothing ahead (and W0's decompositions not
    on disk): the same bits. Returns, per matrix, whether the merge took a result computed ahead."""
    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "c1"))
    handed = []
    real_take = ahead_mod.take
    monkeypatch.setattr("rankedit.edits.matrix_edit.take",
                        lambda name, x: (lambda v: handed.append(v is not None) or v)(real_take(name, x)))
    beside = build_edit(method, base, tuned, tmp_path / "beside", **params)
    handed_beside = list(handed)

    @contextlib.contextmanager
    def nothing_ahead(plan, device="cpu"):
        yield 0

    monkeypatch.setattr("rankedit.edits.build.computed_ahead", nothing_ahead)
    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "c2"))
    inside = build_edit(method, base, tuned, tmp_path / "inside", **params)
    assert _sha(inside) == _sha(beside)
    return handed_beside


@pytest.mark.parametrize("method, params", EDITS, ids=[f"{m}-{list(p.values())[0]}" for m, p in EDITS])
def test_beside_the_merge_or_inside_it_the_edit_has_the_same_bits(method, params, wide_pair, tmp_path, monkeypatch):
    handed = beside_and_inside(method, params, *wide_pair, tmp_path, monkeypatch)
    assert len(handed) == 14 and 1 <= sum(handed) <= 10  # 10 large matrices were done ahead (k/v are small)


def test_an_edit_with_nothing_to_do_ahead_schedules_nothing(wide_pair):
    from rankedit.edits.build import plan_edit
    from rankedit.edits.edit_plan import computed_ahead

    base, tuned = wide_pair
    for method, params in (("scale", {"factor": 0.5}), ("rank-auto", {"param_ratio": 0.1})):
        with computed_ahead(plan_edit(method, base, tuned, **params)) as scheduled:
            assert scheduled == 0
    with computed_ahead(plan_edit("off-principal", base, tuned, k=4)) as scheduled:
        assert scheduled == 10


def _inputs(i: int) -> MatrixInputs:
    w = torch.full((4, 4), float(i))
    return MatrixInputs(w0=w, tuned=(w + 1,), seed=i)


def test_results_waiting_to_be_taken_are_bounded():
    running, done = [0], []
    lock = threading.Lock()

    def work(x):
        with lock:
            running[0] += 1
        done.append(x.seed)
        return x.seed

    a = ahead_mod._Ahead(work, lambda name: _inputs(int(name)), [str(i) for i in range(50)], workers=2, limit=3)
    time.sleep(0.5)  # nothing is taken: the feeder stops after 3
    assert len(done) == 3
    assert a.take("0", _inputs(0)) == 0  # a slot frees, one more is computed
    time.sleep(0.3)
    assert len(done) == 4
    a.close()


def test_a_matrix_not_started_is_left_to_the_edit_and_not_computed_later():
    gate = threading.Event()

    def work(x):
        gate.wait(5)
        return x.seed

    a = ahead_mod._Ahead(work, lambda name: _inputs(int(name)), [str(i) for i in range(6)], workers=1, limit=6)
    time.sleep(0.2)  # "0" runs (held by the gate); 1..5 are queued
    assert a.take("3", _inputs(3)) is None  # queued: cancelled, the edit computes it itself
    gate.set()
    assert a.take("0", _inputs(0)) == 0  # running: waited for
    assert a.take("3", _inputs(3)) is None  # taken once
    a.close()


def test_a_failure_or_another_matrix_is_left_to_the_edit():
    def work(x):
        if x.seed == 1:
            raise RuntimeError("disk error")
        return x.seed

    a = ahead_mod._Ahead(work, lambda name: _inputs(int(name)), ["0", "1", "2"], workers=1, limit=3)
    time.sleep(0.3)
    assert a.take("1", _inputs(1)) is None  # it failed ahead: the edit meets the error itself
    assert a.take("2", _inputs(5)) is None  # computed from other values than the merge has
    assert a.take("0", _inputs(0)) == 0
    a.close()


def test_closing_with_work_pending_returns_and_stops_the_feeder():
    a = ahead_mod._Ahead(lambda x: time.sleep(0.05) or x.seed, lambda name: _inputs(int(name)),
                         [str(i) for i in range(100)], workers=2, limit=4)
    t0 = time.perf_counter()
    a.close()
    assert time.perf_counter() - t0 < 2 and not a._feeder.is_alive()


def test_a_lora_export_takes_the_work_beside_it_too(wide_pair, tmp_path, monkeypatch):
    """``--as-lora`` runs the edit outside mergekit (``run_matrices``): same factors with the work beside it."""
    from safetensors.torch import load_file

    import rankedit.edits.edit_plan as ep

    base, tuned = wide_pair
    monkeypatch.setenv("RANKEDIT_CACHE", str(tmp_path / "c1"))
    scheduled, real = [], ep.computed_ahead

    @contextlib.contextmanager
    def counted(plan, device="cpu"):
        with real(plan, device) as n:
            scheduled.append(n)
            yield n

    monkeypatch.setattr(ep, "computed_ahead", counted)
    beside = build_edit("rank-auto", base, tuned, tmp_path / "beside", energy=0.5, as_lora=True)
    assert scheduled == [10]

    @contextlib.contextmanager
    def nothing_ahead(plan, device="cpu"):
        yield 0

    monkeypatch.setattr("rankedit.edits.edit_plan.computed_ahead", nothing_ahead)
    inside = build_edit("rank-auto", base, tuned, tmp_path / "inside", energy=0.5, as_lora=True)
    a, b = (load_file(str(p / "adapter_model.safetensors")) for p in (beside, inside))
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


@pytest.fixture(scope="module")
def gqa_pair(tmp_path_factory):
    """k/v 256 x 1024 (2 key/value heads of 128) and the MLP 256 x 1024: short side 256, long side 1024,
    so done ahead by their long side; q/o 1024 x 1024. A bf16 RL-like update."""
    root = tmp_path_factory.mktemp("gqa")
    base = synthetic.build_random(root / "base", "llama", seed=0, hidden_size=1024, intermediate_size=256,
                                  num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=2,
                                  dtype=torch.bfloat16)
    tuned = synthetic.perturb(base, root / "tuned", scale=1e-3, density=0.1, spike=0.2, seed=1,
                              dtype=torch.bfloat16)
    return base, tuned


GQA_EDITS = [(m, {**p, "exact_svd": False}) for m, p in EDITS] + [
    ("rank-k", {"k": 1, "exact_svd": True}), ("rank-auto", {"energy": 0.5, "exact_svd": True})]


@pytest.mark.parametrize("method, params", GQA_EDITS,
                         ids=[f"{m}-{list(p.values())[0]}{'-exact' if p['exact_svd'] else ''}" for m, p in GQA_EDITS])
def test_gqa_key_value_projections_are_done_ahead_with_the_same_bits(method, params, gqa_pair, tmp_path, monkeypatch):
    """Every edit that declares work ahead, on matrices scheduled by their long side alone (a GQA model's
    k/v): it runs, and has the same bits as with nothing done ahead (rank-auto once handed its energy
    decomposition of such a matrix to rank-k, which failed)."""
    assert ahead_mod.worth_ahead((256, 1536)) and ahead_mod.worth_ahead((288, 288))
    assert not ahead_mod.worth_ahead((144, 288)) and not ahead_mod.worth_ahead((64, 176))  # the organisms': inline
    handed = beside_and_inside(method, params, *gqa_pair, tmp_path, monkeypatch)
    assert len(handed) == 7 and sum(handed) >= 1
