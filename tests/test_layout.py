"""The package's shape, as README's Development section draws it: stages import downwards only.

Read from the source with ``ast`` (nothing is imported), so a lazy import inside
a function counts like one at the top: a cycle through a function-level import
is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "rankedit"

# folder -> the folders it may import (besides itself); README's package map says the same
ALLOWED = {
    "core": set(),
    "files": {"core"},
    "analysis": {"core", "files"},
    "edits": {"core", "files"},
    "scoring": {"core", "files"},
    "report": {"core", "files", "analysis", "edits", "scoring"},
    "publish": {"core", "files", "analysis", "edits", "scoring", "report"},
    "pipeline": {"core", "files", "analysis", "edits", "scoring", "report", "organism"},
    "organism": {"core", "files"},
    "testing": {"core", "files"},
    "cli": None,  # anything
}
MAX_LINES = 600  # what one concept needs (a module is split along a seam, not at a line count)


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent)
        if "eval_configs" in rel.parts:
            continue  # lm-eval's task helpers, not rankedit's code
        out[".".join(rel.with_suffix("").parts).removesuffix(".__init__")] = p
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} over every import statement in it."""
    out = {}
    for mod, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "rankedit":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.add((sub, None) if sub in modules else (node.module, a.name))
            elif isinstance(node, ast.Import):
                found |= {(a.name, None) for a in node.names if a.name.split(".")[0] == "rankedit"}
        out[mod] = found
    return out


MODULES = _modules()
IMPORTS = _imports(MODULES)


def _folder(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else None


def test_every_folder_of_the_package_has_a_rule():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"eval_configs"}
    assert folders == set(ALLOWED)


def test_stages_import_only_the_folders_below_them():
    wrong = []
    for mod, found in IMPORTS.items():
        src = _folder(mod)
        if src is None or ALLOWED[src] is None:
            continue  # rankedit/__init__.py and __main__.py: the lazy API, over everything
        for tgt, _ in found:
            dst = _folder(tgt)
            if dst is not None and dst != src and dst not in ALLOWED[src]:
                wrong.append(f"{mod} imports {tgt}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_imports_a_private_name_of_another():
    wrong = sorted(f"{mod} imports {tgt}.{name}" for mod, found in IMPORTS.items() for tgt, name in found
                   if name and name.startswith("_") and not name.startswith("__"))
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {mod: {tgt for tgt, _ in found if tgt in MODULES and tgt != mod} for mod, found in IMPORTS.items()}
    # a package's __init__ that re-exports its modules is not a cycle with them
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    cycles, state = [], {}

    def visit(u, path):
        state[u] = "open"
        for v in sorted(graph.get(u, ())):
            if state.get(v) == "open":
                cycles.append(" -> ".join(path[path.index(v):] + [v]))
            elif v not in state:
                visit(v, path + [v])
        state[u] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_modules_stay_short(mod):
    n = len(MODULES[mod].read_text().splitlines())
    assert n < MAX_LINES, f"{mod}: {n} lines; split it along a seam"


def _registers_an_edit(path: Path) -> bool:
    """Whether the module decorates a function with ``registry.register(...)`` (``@register(NAME, ...)``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                f = d.func if isinstance(d, ast.Call) else None
                if (isinstance(f, ast.Name) and f.id == "register") or (isinstance(f, ast.Attribute) and f.attr == "register"):
                    return True
    return False


def test_edit_methods_folder_holds_exactly_the_edit_families():
    # the extension point apart from the machinery (as mergekit keeps merge_methods/ apart from io/):
    # every module of edits/methods/ registers an edit, and no module elsewhere does
    methods = {m for m in MODULES if m.startswith("rankedit.edits.methods.")}
    assert methods, "rankedit/edits/methods/ is empty"
    not_edits = sorted(m for m in methods if not _registers_an_edit(MODULES[m]))
    assert not not_edits, f"modules in edits/methods/ that register no edit: {not_edits}"
    outside = sorted(m for m, p in MODULES.items() if not m.startswith("rankedit.edits.methods.") and _registers_an_edit(p))
    assert not outside, f"edits registered outside rankedit/edits/methods/: {outside}"


def test_every_edit_family_is_found_and_registered():
    from rankedit.edits import EDITS
    from rankedit.edits.methods import FAMILIES

    found = {m.rsplit(".", 1)[1] for m in MODULES if m.startswith("rankedit.edits.methods.")}
    assert set(FAMILIES) == found
    assert {e.fn.__module__.rsplit(".", 1)[1] for e in EDITS.values() if e.fn.__module__.startswith("rankedit.edits.methods.")} == found


# ---- imports at the top ---------------------------------------------------------------------------

# what a function may import for itself: the heavy libraries, whose import takes seconds and which a command
# needs only once it runs (``rankedit --help`` and a bad-input error stay instant)
HEAVY = {"torch", "transformers", "lm_eval", "mergekit", "ray", "vllm", "matplotlib", "peft", "scipy", "datasets",
         "huggingface_hub", "trl", "accelerate", "tokenizers", "safetensors.torch"}
# (module, imported module) kept inside a function, each with its reason: none at present (the two there were,
# a name shadowed by a module-level one and an import inside a try, are resolved at the top)
LAZY_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _heavy(mod: str) -> bool:
    return any(mod == h or mod.startswith(h + ".") for h in HEAVY)


def test_imports_are_at_the_top_except_heavy_libraries():
    """An import inside a function is for a heavy library only (or in rankedit/cli/, whose modules load the
    command's implementation when the command runs); everything else is imported where a reader looks."""
    wrong = []
    for mod, path in MODULES.items():
        if mod.startswith("rankedit.cli.") or mod in ("rankedit", "rankedit.__main__"):
            continue  # the CLI's lazy loading and the package's lazy API
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                wrong += [f"{mod}:{node.lineno} imports {n} inside {fn.name}()" for n in names
                          if not _heavy(n) and (mod, n) not in LAZY_EXCEPTIONS]
    assert not wrong, "\n".join(sorted(set(wrong)))

