"""docs/science.md defines everything the code writes; the README and docs/ link only to what is there, inside
the repository; the README stays an overview of every command and edit."""

import re
from pathlib import Path

from rankedit.edits import EDITS
from rankedit.edits.methods.extrapolate import ExtrapolateParams
from rankedit.edits.methods.mask import SOURCES
from rankedit.analysis.geometry import matrix_metrics
from rankedit.analysis.metrics import SCALAR_METRICS
from rankedit.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
SCIENCE = (ROOT / "docs" / "science.md").read_text()
DEFINED = set(re.findall(r"`([a-z0-9_\-]+)`", SCIENCE))
README = (ROOT / "README.md").read_text()
# the prose a reader opens: the README, the benchmarks, and every page of docs/
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_metric_analyze_writes_is_defined():
    import torch

    w0 = torch.randn(16, 12, generator=torch.Generator().manual_seed(0))
    written = set(matrix_metrics(w0, w0 + 0.01, k=2, w_other=w0 - 0.01))
    assert written >= set(SCALAR_METRICS) - {"jaccard_expected"}
    assert written - DEFINED == set()
    assert set(SCALAR_METRICS) - DEFINED == set()


def test_every_edit_mask_source_and_extrapolation_mode_is_defined():
    assert set(EDITS) - DEFINED == set()
    assert set(SOURCES) - DEFINED == set()
    modes = set(ExtrapolateParams.model_fields["mode"].annotation.__args__)
    assert modes == {"linear", "rank1-step", "alpharl", "alpharl-increment", "expo", "last", "rank1"}
    assert modes - DEFINED == set()


def test_every_quantity_trajectory_writes_is_defined():
    import torch

    from rankedit.analysis.trajectory_math import a_final_linearity, linearity, matrix_trajectory

    w0 = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    rows, gram = matrix_trajectory(w0, [w0 + 0.01 * t for t in (1, 2, 3)])
    written = set(rows[0]) | set(linearity([1, 2, 3], gram, 48, 0, 2)) | set(a_final_linearity([1, 2, 3], [1, 2, 3], (8, 6), 0, 2))
    assert written - DEFINED == set()


def test_every_score_the_report_writes_is_defined():
    for term in ("Gain retention", "Forgetting", "paired bootstrap", "significant", "energy_kept", "density",
                 "rank_kept"):
        assert term in SCIENCE, term


def test_every_frontier_key_the_report_writes_is_defined():
    from rankedit.report.frontier import edit_size, frontier_rows

    edits = [{"name": "a", "method": "scale", "of": "tuned", **edit_size("scale", {}, {}, [], {})}]
    rows = [{"edit": "a", "task": "t", "retention": None, "forgetting": 0.0, "forgetting_ci_low": 0.0,
             "forgetting_ci_high": 0.0}]
    written = set(edits[0]) | set(frontier_rows(edits, rows, ["t", "c"], ["c"])[0]) | {"frontier", "storage_bytes_range"}
    shared = {"edit", "method", "of", "control_of", "task", "retention", "ci_low", "ci_high", "retention_defined",
              "gain", "gain_ci_low", "gain_ci_high", "forgetting", "name"}  # the report's rows, defined above
    assert {"storage_bytes", "delta_bytes", "storage_ratio", "pareto", "control"} <= written
    assert written - shared - DEFINED == set()


def test_nothing_in_the_repository_refers_to_files_outside_it():
    outside = re.compile(r"\.\./shared|" + "SCIENCE" + r"\.md")
    files = [ROOT / f for f in ("README.md", "BENCHMARKS.md", "Makefile", "pyproject.toml")]
    for folder in ("rankedit", "tests", "examples", "eval_configs", "docs", "bench"):
        files += [f for f in (ROOT / folder).rglob("*") if f.suffix in (".py", ".md", ".yaml", ".toml", ".txt")]
    hits = [f"{f.relative_to(ROOT)}: {line.strip()}" for f in files
            for line in f.read_text(errors="replace").splitlines() if outside.search(line)]
    assert hits == []


def test_every_key_of_the_edit_manifest_is_defined():
    import torch

    from rankedit.edits.manifest import matrix_facts, matrix_record, summarize
    from rankedit.edits.registry import EditResult
    from rankedit.edits.storage import Storage

    dw = torch.ones(4, 6)
    facts = matrix_facts("w", dw, EditResult(delta=2 * dw, rescale=2.0, svd_error=0.0, svd_identifiable=True),
                         Storage(10, 20))
    written = set(matrix_record(facts)) | set(summarize([facts], {"w": 24}))
    assert written - {"name"} - DEFINED == set()
    new = {"energy_before_rescale", "rescale", "stored_params", "stored_bytes", "bf16_delta_bytes", "bytes_ratio"}
    assert new <= written and "multiplier" in DEFINED


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (hyphens and underscores kept), spaces to hyphens."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_anchors_are_githubs():
    assert _anchors("## `rankedit edit METHOD BASE -o OUT`: an edit\n### When input is bad") == {
        "rankedit-edit-method-base--o-out-an-edit", "when-input-is-bad"}


def test_every_link_of_the_readme_and_docs_reaches_a_file_and_heading_of_the_repository():
    broken = []
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", text, flags=re.S)):
            assert not re.match(r"[a-z]+:", target) or target.startswith("https://"), f"{page.name}: {target}"
            if target.startswith("https://"):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if ROOT not in dest.parents or not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file in the repository)")
            elif anchor and anchor not in _anchors(dest.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_docs_speak_of_versions_and_dates_not_of_work_sessions():
    pattern = re.compile(r"session [0-9]|\(session|sessions [0-9]", re.I)
    hits = [f"{p.relative_to(ROOT)}: {line.strip()}" for p in PAGES for line in p.read_text().splitlines()
            if pattern.search(line)]
    assert hits == []


def test_the_readme_is_an_overview_of_every_command_and_every_edit():
    assert len(README.splitlines()) <= 300  # the reference lives in docs/commands.md
    commands = (ROOT / "docs" / "commands.md").read_text()
    for name in COMMANDS:
        assert f"| `rankedit {name}" in README, name  # a line of the README's table
        assert f"`rankedit {name}" in commands, name
    table = README.split("## The edits and their controls", 1)[1].split("\n## ", 1)[0]
    assert [name for name in EDITS if f"`{name}" not in table] == []
    assert "make demo" in README and "make test" in README
    assert "## When input is bad" in commands and "**When input is bad**" in README


def test_every_call_of_the_readmes_python_api_block_names_a_function_and_its_parameters():
    """The README's Python block is not run (it builds the small organism); each call is checked against the API."""
    import ast
    import importlib
    import inspect

    (block,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    calls = [n for n in ast.walk(ast.parse(block)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    checked = []
    for call in calls:
        chain = ast.unparse(call.func).split(".")
        if chain[0] != "rankedit":
            continue
        obj = importlib.import_module("rankedit")
        for i, part in enumerate(chain[1:], 1):
            obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(".".join(chain[:i + 1]))
        params = inspect.signature(obj).parameters
        kinds = {p.kind for p in params.values()}
        assert len(call.args) <= len(params) or inspect.Parameter.VAR_POSITIONAL in kinds, chain
        if inspect.Parameter.VAR_KEYWORD not in kinds:  # build_edit takes the edit's own parameters as **params
            assert {k.arg for k in call.keywords} <= set(params), (chain, set(params))
        checked.append(".".join(chain))
    assert {"rankedit.organism.build", "rankedit.analyze", "rankedit.build_edit", "rankedit.run"} <= set(checked)
