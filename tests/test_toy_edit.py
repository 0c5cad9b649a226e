"""An edit added in ONE file, outside the package, is everywhere an edit is: the CLI listing and
its own --help (options generated from its parameters), a plan (validated and built through
mergekit), the report (its describe() text) and the model card.

The toy module is written to tmp_path and registered the way a user would: $RANKEDIT_PLUGINS
(a list of Python files) or the entry-point group ``rankedit.edits`` of an installed package.
Everything runs in subprocesses, so this test process's registry stays as shipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from rankedit.edits import EDITS

ROOT = Path(__file__).resolve().parent.parent

TOY = '''
"""toy-share: keep a share of the update (a toy edit, one file)."""
from typing import Literal

from pydantic import Field

from rankedit.edits.registry import Control, EditParams, EditResult, MatrixInputs, register


class ToyParams(EditParams):
    share: float = Field(0.5, description="fraction of dW kept")
    style: Literal["plain", "fancy"] = Field("plain", description="how the toy words its description")


@register("toy-share", ToyParams, help="""Keep a share of the update (a toy).

    New matrix: W0 + share·dW.""",
          describe=lambda p: f"toy share {p.share} of ΔW, {p.style}", control=Control("scale", {"factor": 0.0}))
def toy_share(x: MatrixInputs, p: ToyParams) -> EditResult:
    return EditResult(delta=x.dw * p.share)
'''


def _rankedit(args, env, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "rankedit", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert not check or r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture
def plugin_env(tmp_path):
    path = tmp_path / "toy_edit.py"
    path.write_text(TOY)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "RANKEDIT_PLUGINS": str(path)}


def test_toy_edit_in_cli_plan_report_and_card(plugin_env, micro_organism, tmp_path):
    assert "toy-share" not in EDITS  # the shipped registry is untouched

    listing = _rankedit(["edit", "--help"], plugin_env).stdout
    assert "toy-share" in listing and "Keep a share of the update (a toy)." in listing
    own = _rankedit(["edit", "toy-share", "--help"], plugin_env).stdout
    for needle in ("New matrix: W0 + share·dW.", "--share FLOAT", "fraction of dW kept.", "[default: 0.5]",
                   "--style [plain|fancy]", "--rest [base|tuned]", "--seed INTEGER"):
        assert needle in own, (needle, own)
    bad = _rankedit(["edit", "toy-share", micro_organism / "base", micro_organism / "rl", "--style", "odd",
                     "-o", tmp_path / "never"], plugin_env, check=False)
    assert bad.returncode == 2 and "'odd' is not one of 'plain', 'fancy'" in bad.stderr

    plan = {"name": "toy", "base": str(micro_organism / "base"), "tuned": str(micro_organism / "rl"),
            "edits": [{"name": "quarter", "method": "toy-share", "params": {"share": 0.25, "style": "fancy"}}],
            "score": {"tasks": ["organism_id"], "limit": 20, "n_boot": 200}, "analyze": {"enabled": False}}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    _rankedit(["run", tmp_path / "plan.yaml", "-o", tmp_path / "out", "--quiet"], plugin_env)

    # built through mergekit: W0 + 0.25 dW in float32 (the adapter's arithmetic), stored in the base's dtype
    built = tmp_path / "out" / "edits" / "quarter"
    man = json.loads((built / "rankedit_edit.json").read_text())
    assert man["method"] == "toy-share" and man["mergekit_method"] == "rankedit_toy_share"
    assert man["summary"]["energy_kept"] == pytest.approx(0.25, rel=1e-3)
    name = man["matrices"][0]["name"]
    w = {}
    for label, d in (("base", micro_organism / "base"), ("rl", micro_organism / "rl"), ("edit", built)):
        with safe_open(str(d / "model.safetensors"), "pt") as f:
            w[label] = f.get_tensor(name)
    w0, w1 = w["base"].float(), w["rl"].float()
    assert torch.equal(w["edit"], (w0 + (w1 - w0) * 0.25).to(w["base"].dtype))

    keeps = "toy share 0.25 of ΔW, fancy"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["edits"][0]["keeps"] == keeps and report["rows"][0]["edit"] == "quarter"
    assert keeps in (tmp_path / "out" / "report.md").read_text()

    card = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import json
        from rankedit.publish.card import build_card
        man = json.load(open({str(built / 'rankedit_edit.json')!r}))
        print(build_card(man, repo_id="me/toy"))
        """)], capture_output=True, text=True, env=plugin_env, timeout=120)
    assert card.returncode == 0, card.stderr
    assert f"Method **`toy-share`**: keep a share of the update (a toy). Here it keeps: {keeps}." in card.stdout


def test_toy_edit_from_an_entry_point(tmp_path):
    """A package that declares ``[rankedit.edits] toy = toy_edit`` is found once installed."""
    (tmp_path / "toy_edit.py").write_text(TOY)
    dist = tmp_path / "toy_edit-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-edit\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rankedit.edits]\ntoy = toy_edit\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("RANKEDIT_PLUGINS", None)
    assert "toy-share" in _rankedit(["edit", "--help"], env).stdout


def test_a_broken_plugin_is_one_error_line(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("raise ImportError('no such thing')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RANKEDIT_PLUGINS": str(bad)}
    r = _rankedit(["edit", "--help"], env, check=False)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"error: edit plugin {bad}: ImportError: no such thing"], r.stderr
