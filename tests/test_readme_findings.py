"""README.md's findings are the study's report rendered by scripts/readme_findings.py, not typed by hand."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _findings():
    spec = importlib.util.spec_from_file_location("readme_findings", ROOT / "scripts" / "readme_findings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_readme_findings_are_the_study_report_rendered():
    findings = _findings()
    study = json.loads((ROOT / "docs" / "organism-study.json").read_text())
    demo = json.loads((ROOT / "docs" / "organism-demo.json").read_text())
    assert len(study["runs"]) >= 3 and study["plan"]["organism"]["seeds"] == [0, 1, 2]
    section = findings.render(study, demo)
    assert section in (ROOT / "README.md").read_text()
