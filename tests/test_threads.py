"""The thread policy of the hot paths (rankedit.core.threads): a pure function, checked on its values."""

import pytest
import torch

from rankedit.core.threads import available_cores, threads_for, torch_threads


@pytest.mark.parametrize("path", ["edit", "analyze"])
@pytest.mark.parametrize("short_side", [16, 896, 4864, 8192, 28672])
def test_small_boxes_run_one_thread(path, short_side):
    for cores in (1, 2):
        assert threads_for(path, cores, short_side) == 1


def test_big_boxes_scale_with_matrix_size_within_the_cores():
    # analyze: one thread per 256 rows of the short side, at most every core
    assert threads_for("analyze", 16, 896) == 3
    assert threads_for("analyze", 16, 8192) == 16
    assert threads_for("analyze", 4, 64) == 1
    # edit: one per 1024 rows, one core left for the hashing thread
    assert threads_for("edit", 16, 896) == 1
    assert threads_for("edit", 16, 4096) == 4
    assert threads_for("edit", 16, 28672) == 15
    assert threads_for("edit", 3, 28672) == 2
    for path in ("edit", "analyze"):
        for cores in range(1, 65):
            for side in (1, 100, 1000, 10_000, 100_000):
                n = threads_for(path, cores, side)
                assert 1 <= n <= max(1, cores)


def test_unknown_path_is_refused():
    with pytest.raises(ValueError, match="unknown hot path"):
        threads_for("score", 8, 100)


def test_torch_threads_restores_the_callers_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    assert available_cores() >= 1


def test_hot_paths_apply_the_policy_unless_the_user_chose(monkeypatch):
    import rankedit.core.threads as th

    monkeypatch.setattr(th, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with th.hot_path_threads("analyze", 4096):
        assert torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with th.hot_path_threads("analyze", 4096):
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_ordered_map_keeps_the_order_and_a_bounded_look_ahead():
    import threading
    import time

    from rankedit.core.threads import ordered_map

    running, peak, lock = [0], [0], threading.Lock()

    def slow(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02 * ((7 * i) % 5))  # later items often finish first
        with lock:
            running[0] -= 1
        return i * i

    consumed = []
    for v in ordered_map(slow, range(12), 2):
        consumed.append(v)
    assert consumed == [i * i for i in range(12)]
    assert peak[0] == 2
    assert list(ordered_map(slow, range(5), 1)) == [0, 1, 4, 9, 16]


def test_ordered_map_raises_at_the_failing_item_and_cancels_the_rest():
    from rankedit.core.threads import ordered_map

    started = []

    def f(i):
        started.append(i)
        if i == 3:
            raise ValueError("bad 3")
        return i

    got = []
    with pytest.raises(ValueError, match="bad 3"):
        for v in ordered_map(f, range(100), 2):
            got.append(v)
    assert got == [0, 1, 2] and max(started) <= 6  # look-ahead of workers + 1, nothing past it


def test_two_matrices_at_once_only_where_the_policy_leaves_a_core(monkeypatch):
    from rankedit.core import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert threads.matrices_at_once("analyze", 896) == 2
    assert threads.matrices_at_once("analyze", 896, device="cuda") == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 1)
    assert threads.matrices_at_once("analyze", 896) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    assert threads.matrices_at_once("analyze", 896) == 2  # 3 threads a call, 6 of 16 cores
    assert threads.matrices_at_once("analyze", 8192) == 1  # every core in one call already
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.matrices_at_once("analyze", 896) == 1  # the user chose


def test_analyze_gives_the_same_rows_one_or_two_matrices_at_once(tmp_path, monkeypatch):
    from rankedit.analysis import analyze as an
    from rankedit.testing import synthetic

    base = synthetic.build_random(tmp_path / "base", "llama", seed=0)
    tuned = synthetic.perturb(base, tmp_path / "rl", scale=1e-2, seed=1)
    rows = {}
    for n in (1, 2):
        monkeypatch.setattr(an, "matrices_at_once", lambda *a, n=n, **k: n)
        rows[n] = an.analyze(base, tuned, progress=False, base_cache=False)
    assert rows[1] == rows[2] and len(rows[1]) == 14
