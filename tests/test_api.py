"""The Python API the README documents: every public name resolves to the CLI's implementation."""

import inspect

import rankedit


def test_every_api_name_resolves():
    for name in ("analyze", "build_edit", "score", "run", "push", "load_plan", "Checkpoint", "RankeditError"):
        assert callable(getattr(rankedit, name)), name
    assert callable(rankedit.organism.build) and "organism" in dir(rankedit)


def test_api_parameters_mirror_the_cli_options():
    assert {"other_tuned", "k", "alpha", "atol", "q", "device", "modules"} <= set(inspect.signature(rankedit.analyze).parameters)
    assert {"device", "as_lora"} <= set(inspect.signature(rankedit.build_edit).parameters)
    assert {"private", "revision", "dry_run", "regenerate_card"} <= set(inspect.signature(rankedit.push).parameters)
    assert {"size", "seed", "out", "device"} <= set(inspect.signature(rankedit.organism.build).parameters)


def test_organism_build_stays_the_function_after_its_module_is_imported():
    """The builder module once shared the function's name: importing it replaced rankedit.organism.build."""
    import importlib

    importlib.import_module("rankedit.organism.builder")
    assert callable(rankedit.organism.build) and not isinstance(rankedit.organism.build, type(rankedit))
