"""Step-to-step sparsity in `rankedit trajectory`: planted changes counted exactly, bytes as the formulas say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rankedit.analysis.trajectory import trajectory
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.patch_format import encoding_sizes, smallest

# step -> how many leading entries of every matrix differ from the base (cumulative)
PLANTED = {10: 10, 20: 30, 30: 30}


def _write_step(base: Path, out: Path, n: int) -> None:
    ck = Checkpoint(base)
    out.mkdir(parents=True)
    shutil.copyfile(base / "config.json", out / "config.json")
    held = {}
    for name in ck.names:
        w = ck.get(name).clone()
        if w.ndim == 2 and "embed" not in name and "lm_head" not in name:
            w.view(-1)[:n] += 1.0
        held[name] = w
    save_file(held, str(out / "model.safetensors"), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def traj(tiny_pair, tmp_path_factory):
    base, _ = tiny_pair
    root = tmp_path_factory.mktemp("trajp")
    for s, n in PLANTED.items():
        _write_step(base, root / "run" / f"step-{s}", n)
    return trajectory(base, run_dir=root / "run", out=root / "out", progress=False, n_null=2), root / "out"


def test_rows_count_planted_changes_exactly(traj):
    summary, out = traj
    rows = summary["rows"]
    prev = {}
    for r in rows:
        fb, fp = r["patch_from_base"], r["patch_from_previous"]
        n = PLANTED[r["step"]]
        step_n = n - prev.get(r["name"], 0)
        prev[r["name"]] = n
        assert (fb["changed"], fp["changed"]) == (n, step_n)
        assert fb["entries"] == fp["entries"] and r["full_bytes"] == 4 * fb["entries"]
        want = encoding_sizes(fb["entries"], n, 4, fb["xor-zstd"])
        assert {k: fb[k] for k in want} == want and fb["bytes"] == want[smallest(want)] == min(want.values())
        assert fb["encoding"] == smallest(want)
        if step_n == 0:
            assert fp["encoding"] == "same" and fp["bytes"] == 0
    # step 30 moved nothing: the step-to-step patch is empty, the one from the base is step 20's
    by_step = {p["step"]: p for p in summary["patches"]["from_previous"]}
    assert by_step[30]["bytes"] == 0 and by_step[30]["unchanged_share"] == 1.0
    base_side = {p["step"]: p for p in summary["patches"]["from_base"]}
    assert base_side[30]["bytes"] == base_side[20]["bytes"] > by_step[20]["bytes"] > 0
    n_matrices = summary["n_matrices"]
    assert base_side[20]["changed"] == 30 * n_matrices
    assert base_side[20]["ratio"] == pytest.approx(base_side[20]["bytes"] / base_side[20]["full_bytes"])
    assert sum(k["bytes"] for k in base_side[20]["kinds"].values()) == base_side[20]["bytes"]


def test_written_summary_and_figure(traj):
    summary, out = traj
    written = json.loads((out / "summary.json").read_text())
    assert written["patches"] == json.loads(json.dumps(summary["patches"]))
    assert (out / "patch_bytes.png").stat().st_size > 1000
    row = json.loads((out / "trajectory.jsonl").read_text().splitlines()[0])
    assert {"patch_from_base", "patch_from_previous", "full_bytes"} <= set(row)


def test_measure_refuses_two_different_tensors():
    from rankedit.files.patch_format import measure

    with pytest.raises(ValueError):
        measure(torch.zeros(3), torch.zeros(4))
