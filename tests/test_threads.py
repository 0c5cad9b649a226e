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
