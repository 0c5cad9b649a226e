"""Edits of an RL update: pure tensor functions, one registry, run through mergekit.

Importing this package registers every edit in ``EDITS`` and as a mergekit merge
method (``rankedit_rank_k``, ``rankedit_mask``, ...), so a plain mergekit YAML can
name them once ``rankedit.edits`` is imported (see ``rankedit.edits.mergekit_yaml``).

Every module of this package that is not machinery (``MACHINERY``) holds edits and is
imported here, so a new edit is one new file calling ``registry.register``; edits from
other packages come in through ``registry.load_plugins`` (entry points, $RANKEDIT_PLUGINS).
"""

import importlib
import pkgutil

# The modules that run, record and export edits rather than define them.
MACHINERY = {"ahead", "apply", "artifact", "base_svd", "build", "delta_format", "config_file", "edit_plan", "lora", "manifest",
             "matrix_edit", "merge_options", "merge_run", "mergekit_fit", "mergekit_methods", "mergekit_yaml", "registry",
             "storage", "streamed", "lora_targets"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in MACHINERY:
        importlib.import_module(f"{__name__}.{_module.name}")

from rankedit.edits.registry import EDITS, EditResult, MatrixInputs, get_edit, load_plugins  # noqa: E402

load_plugins()

from rankedit.edits.build import build_edit, mergekit_config, plan_edit  # noqa: E402
from rankedit.edits.manifest import MANIFEST, read_manifest  # noqa: E402
from rankedit.edits.mergekit_methods import method_name, register_all  # noqa: E402

register_all()

__all__ = ["EDITS", "MANIFEST", "EditResult", "MatrixInputs", "build_edit", "get_edit", "mergekit_config",
           "method_name", "plan_edit", "read_manifest", "register_all"]
