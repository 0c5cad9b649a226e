"""A wheel install finds its own files: built, installed into a fresh venv, run from outside the repository.

The venv reuses this interpreter's installed libraries through a .pth file
(no download, no dependency resolution: seconds, offline) and gets rankedit
only from the wheel. PYTHONPATH is dropped, so nothing of the checkout leaks in.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MICRO_EDITS = len(yaml.safe_load((ROOT / "examples" / "organism-micro.yaml").read_text())["edits"])
# repository folder -> where the wheel must install it
SHIPPED = {"rankedit": "rankedit", "eval_configs": "rankedit/eval_configs",
           "examples": "rankedit/examples", "docs": "rankedit/docs"}


def _files(root: Path, folder: str) -> list[Path]:
    return [f for f in sorted((root / folder).rglob("*"))
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]


def _run(cmd, cwd, env=None, timeout=600):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a clean copy of the source (no stale build/ of the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    for folder in SHIPPED:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", tmp / "dist", src], cwd=tmp)
    (whl,) = (tmp / "dist").glob("rankedit-*.whl")
    return whl


def _clean_env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    e.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return e


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with rankedit installed from the wheel, the other libraries borrowed from this one."""
    v = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", "--without-pip", v], cwd=v.parent)
    py = v / "bin" / "python"
    site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=v).stdout.strip()
    # a plain path line: the libraries, but not the .pth hooks (e.g. an editable rankedit) of this venv
    (Path(site) / "_borrowed_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the borrowed libraries may hold a rankedit of the same version (an
    # editable install); pip must neither skip the wheel nor touch that one
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel],
         cwd=v, env=_clean_env())
    return v


@pytest.fixture
def env():
    return _clean_env()


def test_wheel_holds_every_file_of_the_package_and_its_data_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"{dest}/{f.relative_to(ROOT / folder).as_posix()}"
                for folder, dest in SHIPPED.items() for f in _files(ROOT, folder)}
    assert expected - names == set()
    assert {"rankedit/eval_configs/organism/organism_id.jsonl", "rankedit/examples/organism-micro.yaml",
            "rankedit/docs/science.md"} <= names
    # nothing lands in site-packages outside the package
    assert {n.split("/")[0] for n in names} == {"rankedit", wheel.name.split("-py3")[0] + ".dist-info"}


def test_installed_wheel_reads_its_own_folders(venv, env, tmp_path):
    probe = ("import json, rankedit, rankedit.scoring.suites as s, rankedit.pipeline.run as p, rankedit.pipeline.plan as pl;"
             "print(json.dumps([rankedit.__file__, str(s.EVAL_CONFIGS), str(p.DEFAULT_PLAN),"
             " str(pl.find_plan('organism-micro')), str(pl.find_plan('examples/organism.yaml'))]))")
    paths = json.loads(_run([venv / "bin" / "python", "-c", probe], cwd=tmp_path, env=env).stdout)
    pkg = Path(paths[0]).parent
    assert venv in pkg.parents
    assert Path(paths[1]) == pkg / "eval_configs" and (pkg / "eval_configs/organism/organism_id.yaml").is_file()
    assert paths[2:] == [str(pkg / "examples/organism.yaml"), str(pkg / "examples/organism-micro.yaml"),
                         str(pkg / "examples/organism.yaml")]


def test_installed_wheel_carries_the_docs_the_readme_links(venv, env, tmp_path):
    """The README's overview links docs/*.md; an installed rankedit has every one of them, the same bytes."""
    probe = "from rankedit.core.resources import shipped_dir; print(shipped_dir('docs'))"
    docs = Path(_run([venv / "bin" / "python", "-c", probe], cwd=tmp_path, env=env).stdout.strip())
    assert venv in docs.parents
    linked = {Path(p).name for p in re.findall(r"\]\(docs/([\w.-]+\.md)", (ROOT / "README.md").read_text())}
    assert {"commands.md", "findings.md", "science.md", "scaling.md", "extending.md"} <= linked
    for name in linked | {f.name for f in (ROOT / "docs").glob("*.md")}:
        assert (docs / name).read_bytes() == (ROOT / "docs" / name).read_bytes(), name


def test_installed_wheel_runs_the_micro_plan_and_scores_outside_the_repository(venv, env, micro_organism, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    rankedit = venv / "bin" / "rankedit"
    _run([rankedit, "run", "organism-micro", "-o", "out", "--quiet"], cwd=work, env=env)
    report = json.loads((work / "out" / "report.json").read_text())
    assert set(report["tasks"]) == {"organism_id", "organism_hard", "organism_control"}
    assert len(report["edits"]) == MICRO_EDITS and (work / "out" / "report.md").is_file()

    _run([rankedit, "score", f"base={micro_organism / 'base'}", f"rl={micro_organism / 'rl'}",
          "--suite", "organism", "--limit", "5", "-o", "scores"], cwd=work, env=env)
    rows = json.loads((work / "scores" / "scores.json").read_text())["scores"]
    assert {(r["model"], r["task"]) for r in rows} >= {("base", "organism_id"), ("rl", "organism_control")}
    assert all(r["n"] == 5 for r in rows)
