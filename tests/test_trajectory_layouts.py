"""`rankedit trajectory --run-dir` on the folders trl and verl write (tiny synthetic runs)."""

import json
import shutil

import pytest

from test_edits_build import cli, write_variant
from test_trajectory import drift

from rankedit.analysis.trajectory import run_dir_checkpoints
from rankedit.core.errors import RankeditError

STEPS = (10, 20, 30)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, tiny_pair):
    """The same three checkpoints as trl (checkpoint-N/) and as verl (global_step_N/actor/huggingface/)."""
    base, _ = tiny_pair
    root = tmp_path_factory.mktemp("layouts")
    at = drift(seed=3, bend=1e-4)
    for t in STEPS:
        ck = write_variant(base, root / "trl" / f"checkpoint-{t}", at(t))
        (ck / "optimizer.pt").write_bytes(b"not read")  # what trl saves beside the weights: never unpickled
        (ck / "trainer_state.json").write_text("{}")
        actor = root / "verl" / f"global_step_{t}" / "actor"
        shutil.copytree(ck, actor / "huggingface")
        (actor / "model_world_size_1_rank_0.pt").write_bytes(b"shard")
    (root / "verl" / "latest_checkpointed_iteration.txt").write_text("30")
    return base, root


def test_trl_and_verl_folders_give_the_same_trajectory(layouts, tmp_path, capsys):
    base, root = layouts
    cks, steps = run_dir_checkpoints(root / "verl")
    assert steps == list(STEPS) and cks == [root / "verl" / f"global_step_{t}" / "actor" / "huggingface" for t in STEPS]
    cks, steps = run_dir_checkpoints(root / "trl")
    assert steps == list(STEPS) and cks == [root / "trl" / f"checkpoint-{t}" for t in STEPS]
    rows = {}
    for kind in ("trl", "verl"):
        out = tmp_path / kind
        code, err = cli(["trajectory", str(base), "--run-dir", str(root / kind), "-o", str(out), "--quiet",
                         "--no-plots", "--null-draws", "2"], capsys)
        assert code == 0, err
        rows[kind] = (out / "trajectory.jsonl").read_text()
        assert json.loads((out / "summary.json").read_text())["params"]["steps"] == list(STEPS)
    assert rows["trl"] == rows["verl"] and rows["trl"]


def test_verl_fsdp_shards_alone_name_the_model_merger(layouts, tmp_path, capsys):
    base, root = layouts
    sharded = tmp_path / "verl-shards"
    for t in STEPS:
        actor = sharded / f"global_step_{t}" / "actor"
        actor.mkdir(parents=True)
        (actor / "model_world_size_2_rank_0.pt").write_bytes(b"shard")
        (actor / "model_world_size_2_rank_1.pt").write_bytes(b"shard")
    with pytest.raises(RankeditError, match="verl.model_merger merge --backend fsdp"):
        run_dir_checkpoints(sharded)
    code, err = cli(["trajectory", str(base), "--run-dir", str(sharded), "-o", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "global_step_10" in err and "model merger" in err
    assert not (tmp_path / "o").exists()


def test_a_step_folder_without_weights_is_one_error(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text("{}")
    with pytest.raises(RankeditError, match="checkpoint-5: no HF checkpoint"):
        run_dir_checkpoints(tmp_path)
