"""The shell examples of README.md and docs/commands.md run, in order, on the micro organism: examples cannot rot.

Every line of every ```bash block of the two files (README.md first) runs in one
bash script (so `ORG=...` carries over) from a scratch directory laid out like
the project root, with RANKEDIT_ORGANISM_SIZE=micro. The lines run as written:
nothing is translated. Two kinds of lines are skipped, and the test pins
exactly which: `make ...` (they create .venv/ and run this suite) and lines
whose trailing comment says `# needs a GPU ...`, `# needs network`,
`# needs a Hub token ...` or `# needs the small organism ...`. Because the lines
are not translated, an example that names a checkpoint step by its number
(right for one organism, "checkpoint not found" on the other) is refused here:
the examples read the steps from the run's folder.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankedit.organism.model import RECIPES
from rankedit.organism.rl import checkpoint_steps

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# the files whose ```bash blocks run, in this order; every other doc writes its shell as ```sh (not run here)
DOCS = [ROOT / "README.md", ROOT / "docs" / "commands.md"]
MICRO_EDITS = len(yaml.safe_load((ROOT / "examples" / "organism-micro.yaml").read_text())["edits"])
NEEDS = re.compile(r"#\s*needs (a GPU|network|a Hub token|the small organism)[^#]*$")
EXPECTED_SKIPS = [
    "make demo", "make test", "make study",
    "rankedit analyze Qwen/Qwen2.5-Math-1.5B",
    "rankedit edit --config examples/edit-rank1.yaml",
    "rankedit compress --organism small", "rankedit compress base/",
    "rankedit score agentica-org/DeepScaleR-1.5B-Preview",
    "rankedit score my-model",
    "rankedit run examples/deepscaler.yaml",
    "rankedit push out/demo/edits/rank1 --repo-id you/organism-rank1 --private",
]


def bash_lines(text: str) -> list[str]:
    """The commands of the ```bash blocks, continuation lines joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(re.sub(r" +", " ", line.strip()))
    return lines


def split_runnable(lines: list[str]) -> tuple[list[str], list[str]]:
    run, skipped = [], []
    for line in lines:
        (skipped if line.startswith("make ") or NEEDS.search(line) else run).append(line)
    return run, skipped


def doc_lines() -> list[str]:
    return [line for doc in DOCS for line in bash_lines(doc.read_text())]


def test_the_readme_marks_few_lines_as_not_runnable_here():
    _, skipped = split_runnable(doc_lines())
    assert len(skipped) == len(EXPECTED_SKIPS)
    assert all(line.startswith(prefix) for line, prefix in zip(skipped, EXPECTED_SKIPS)), skipped


def test_no_example_names_a_checkpoint_step_by_its_number():
    """The small and the micro organism save different steps: a number right for one fails on the other."""
    runnable, _ = split_runnable(doc_lines())
    step_number = re.compile(r"step-\{?\d|step_\d|checkpoint-\d|--steps \d|--target-step \d")
    assert [line for line in runnable if step_number.search(line)] == []
    assert step_number.search("rankedit edit extrapolate $ORG/base $ORG/rl/checkpoints/step-{40,80} --steps 40,80")
    assert any("edit extrapolate" in line for line in runnable)  # the example is run, not skipped


def test_only_the_tested_docs_hold_bash_blocks():
    others = [f for f in sorted((ROOT / "docs").glob("*.md")) if f not in DOCS and "```bash" in f.read_text()]
    assert others == []


def test_every_runnable_readme_command_succeeds_on_the_micro_organism(micro_organism, tmp_path):
    runnable, _ = split_runnable(doc_lines())
    for folder in ("eval_configs", "examples"):  # the project root's layout, outputs kept out of the checkout
        (tmp_path / folder).symlink_to(ROOT / folder)
    script = ["set -euo pipefail"]
    for line in runnable:
        script += [f"echo \"[${{SECONDS}}s]\" {shlex.quote('>>> ' + line)} >&2", line]
    env = dict(os.environ, RANKEDIT_ORGANISM_SIZE="micro", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=1200)
    failed = re.findall(r"\[\d+s\] >>> [^\r\n]*", r.stderr)[-1:]  # progress bars share lines
    assert r.returncode == 0, f"documented command failed: {failed}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"

    out = tmp_path / "out"
    # ORG=$(rankedit organism build) is the micro organism: the fixture's recipe (RANKEDIT_TEST_ORGANISM may have
    # placed the fixture's copy outside the CLI's cache, so the folders may differ)
    recipe = [json.loads((d / "organism.json").read_text())["recipe_hash"]
              for d in (Path(r.stdout.splitlines()[0]), micro_organism)]
    assert recipe[0] == recipe[1]
    rows = [json.loads(l) for l in (out / "rl-geometry" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("rank_fraction" in row and "jaccard" in row for row in rows)
    # the extrapolate example read the micro run's own steps: its first 40% of training, to its last step
    micro = checkpoint_steps(RECIPES["micro"]["rl"]["steps"])
    extra = json.loads((out / "extra" / "rankedit_edit.json").read_text())
    assert extra["params"]["steps"] == [s for s in micro if s <= 0.4 * micro[-1]]
    assert extra["params"]["target_step"] == micro[-1]
    assert (out / "rank8-lora" / "adapter_config.json").is_file()
    scores = json.loads((out / "scores" / "scores.json").read_text())["scores"]
    assert {s["model"] for s in scores} == {"base", "rl", "rank1"}
    for run in ("demo", "micro"):
        report = json.loads((out / run / "report.json").read_text())
        assert report["plan"]["organism"]["size"] == "micro" and len(report["edits"]) == MICRO_EDITS
    assert "rankedit" in (out / "demo" / "edits" / "rank1" / "README.md").read_text()
    # the trl and verl layouts of the same checkpoints give the same trajectory
    traj = {k: (out / f"traj-{k}" / "trajectory.jsonl").read_text() for k in ("trl", "verl")}
    assert traj["trl"] == traj["verl"] and len(traj["trl"].splitlines()) > 10
    assert (out / "traj-trl" / "a_final.png").is_file() and not (out / "traj-verl" / "a_final.png").exists()
