"""The fresh-install checks CI runs after the suite (.ci/run, .ci/fresh_install.sh) test what pyproject.toml promises.

They need PyPI and minutes, so they are CI steps, not tests; what is checked here is
that they check the package's own ranges: the constraints file of the lowest
install pins every direct dependency, each at the lower bound of its range.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _lower_bound(req: Requirement) -> str | None:
    for spec in req.specifier:
        if spec.operator in (">=", "=="):
            return Version(spec.version)
    return None


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def test_lowest_constraints_pin_every_dependency_at_its_lower_bound():
    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    bounds = {canonicalize_name(r.name): _lower_bound(r) for r in deps}
    assert None not in bounds.values(), f"a dependency without a lower bound: {bounds}"
    assert _pins(ROOT / ".ci" / "lowest.txt") == bounds


def test_ci_runs_the_suite_then_the_fresh_installs():
    commands = [line.split() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))]
    assert commands[0] == ["make", "test"]
    assert [c[-2:] for c in commands[1:]] == [[".ci/fresh_install.sh", m] for m in ("newest", "vllm", "lowest")]
    assert all(c[0] == "timeout" for c in commands[1:])
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "fresh_install.sh")], check=True)
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "browser_check.sh")], check=True)
