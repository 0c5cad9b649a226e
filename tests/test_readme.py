"""The README's shell examples run, in order, on the micro organism: examples cannot rot.

Every line of every ```bash block runs in one bash script (so `ORG=...` carries
over) from a scratch directory laid out like the project root, with
RANKEDIT_ORGANISM_SIZE=micro. Two kinds of lines are skipped, and the test pins
exactly which: `make ...` (they create .venv/ and run this suite) and lines
whose trailing comment says `# needs a GPU ...`, `# needs network` or
`# needs a Hub token ...`. The one translation is the extrapolate example's
step numbers, written for the small organism: the test checks they are the
small organism's first 40% of checkpoints and its last step, then maps them to
the micro organism's.
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


def to_micro(line: str) -> str:
    """The extrapolate example's small-organism steps, checked, then mapped to the micro organism's."""
    if "edit extrapolate" not in line:
        return line
    small = checkpoint_steps(RECIPES["small"]["rl"]["steps"])
    micro = checkpoint_steps(RECIPES["micro"]["rl"]["steps"])
    dirs = [int(s) for s in re.search(r"step-\{([\d,]+)\}", line).group(1).split(",")]
    steps = [int(s) for s in re.search(r"--steps ([\d,]+)", line).group(1).split(",")]
    target = int(re.search(r"--target-step (\d+)", line).group(1))
    window = [s for s in small if s <= 0.4 * small[-1]]
    assert dirs == steps == window and target == small[-1], "the README's steps are not the small organism's"
    mapping = dict(zip(map(str, small), map(str, micro)))
    return re.sub(r"(?<=[{,\s])(\d+)(?=[},\s])", lambda m: mapping[m.group(1)], line)


def test_the_readme_marks_few_lines_as_not_runnable_here():
    _, skipped = split_runnable(bash_lines((ROOT / "README.md").read_text()))
    assert len(skipped) == len(EXPECTED_SKIPS)
    assert all(line.startswith(prefix) for line, prefix in zip(skipped, EXPECTED_SKIPS)), skipped


def test_to_micro_maps_the_step_numbers_and_rejects_wrong_ones():
    line = ("rankedit edit extrapolate $ORG/base $ORG/rl/checkpoints/step-{40,80,120,160} "
            "--steps 40,80,120,160 --target-step 400 --mode linear -o out/extra")
    assert to_micro(line) == ("rankedit edit extrapolate $ORG/base $ORG/rl/checkpoints/step-{2,4,6,8} "
                              "--steps 2,4,6,8 --target-step 20 --mode linear -o out/extra")
    with pytest.raises(AssertionError, match="not the small organism's"):
        to_micro(line.replace("40,80,120,160", "60,120,180,240"))


def test_every_runnable_readme_command_succeeds_on_the_micro_organism(micro_organism, tmp_path):
    runnable, _ = split_runnable(bash_lines((ROOT / "README.md").read_text()))
    for folder in ("eval_configs", "examples"):  # the project root's layout, outputs kept out of the checkout
        (tmp_path / folder).symlink_to(ROOT / folder)
    script = ["set -euo pipefail"]
    for line in map(to_micro, runnable):
        script += [f"echo \"[${{SECONDS}}s]\" {shlex.quote('>>> ' + line)} >&2", line]
    env = dict(os.environ, RANKEDIT_ORGANISM_SIZE="micro", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=1200)
    failed = re.findall(r"\[\d+s\] >>> [^\r\n]*", r.stderr)[-1:]  # progress bars share lines
    assert r.returncode == 0, f"README command failed: {failed}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"

    out = tmp_path / "out"
    assert str(micro_organism) in r.stdout  # ORG=$(rankedit organism build) is the micro organism
    rows = [json.loads(l) for l in (out / "rl-geometry" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("rank_fraction" in row and "jaccard" in row for row in rows)
    extra = json.loads((out / "extra" / "rankedit_edit.json").read_text())
    assert extra["params"]["steps"] == [2, 4, 6, 8] and extra["params"]["target_step"] == 20
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
