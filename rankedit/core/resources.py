"""Where rankedit's own files are: the lm-eval task folders, the example plans, the definitions.

The repository keeps them in top-level folders users know (``eval_configs/``,
``examples/``, ``docs/``). A wheel installs the same folders inside the package
(``rankedit/eval_configs``, ... mapped by ``package-dir`` in pyproject.toml), so
an installed rankedit finds them through importlib.resources wherever it runs.
A source checkout or an editable install has no copy inside the package; there
the folders next to the package are the ones.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rankedit.core.errors import RankeditError

SHIPPED = ("eval_configs", "examples", "docs")


def shipped_dir(name: str) -> Path:
    """The directory of rankedit's shipped folder ``name`` (one of SHIPPED), as a real path.

    A real directory is needed, not a Traversable: lm-eval's ``--include_path``
    walks a folder and imports the task's Python helpers from it.
    """
    if name not in SHIPPED:
        raise ValueError(f"not a shipped folder: {name!r}")
    packaged = resources.files("rankedit") / name
    if packaged.is_dir():
        if not isinstance(packaged, Path):  # e.g. a zipped install: lm-eval cannot read from it
            raise RankeditError(f"rankedit's {name}/ is not a directory on disk ({packaged}); "
                                "install rankedit unzipped (pip install)")
        return packaged
    checkout = Path(__file__).resolve().parents[2] / name  # rankedit/core/resources.py -> the checkout
    if checkout.is_dir():
        return checkout
    raise RankeditError(f"rankedit's {name}/ folder is missing from this installation "
                        f"(looked in {packaged} and {checkout}); reinstall rankedit")
