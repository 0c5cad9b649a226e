"""rankedit's shipped folders and example plans are found from any directory."""

from pathlib import Path

import pytest

from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import find_plan, load_plan
from rankedit.core.resources import SHIPPED, shipped_dir

ROOT = Path(__file__).resolve().parent.parent


def test_a_checkout_reads_the_top_level_folders():
    for name in SHIPPED:
        assert shipped_dir(name) == ROOT / name
    with pytest.raises(ValueError):
        shipped_dir("tests")


@pytest.mark.parametrize("given", ["organism-micro", "organism-micro.yaml", "examples/organism-micro.yaml"])
def test_an_example_plan_is_found_by_name_from_another_directory(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_plan(given) == ROOT / "examples" / "organism-micro.yaml"
    assert load_plan(given).organism.size == "micro"


def test_a_file_of_that_name_in_the_current_directory_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "organism-micro.yaml").write_text("name: mine\n")
    assert find_plan("organism-micro.yaml") == Path("organism-micro.yaml")


def test_an_unknown_plan_names_the_example_plans(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RankeditError) as e:
        find_plan("sub/organism-micro.yaml")
    assert str(e.value) == ("plan not found: sub/organism-micro.yaml (rankedit's example plans: "
                            "deepscaler, organism, organism-behaviour, organism-frontier, organism-merge, organism-micro, organism-seeds, "
                            "organism-trajectory, qwen-math-grpo)")


def test_run_help_names_every_example_plan():
    from click.testing import CliRunner

    from rankedit.cli.main import cli

    text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
    named = text.split("example plans (", 1)[1].split(";", 1)[0].split(", ")
    assert sorted(named) == sorted(f.stem for f in (ROOT / "examples").glob("*.yaml") if not f.name.startswith("edit-"))
