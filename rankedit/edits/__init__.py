"""Edits of an RL update: pure tensor functions, one registry, run through mergekit.

Importing this package registers every edit in ``EDITS`` and as a mergekit merge
method (``rankedit_rank_k``, ``rankedit_mask``, ...), so a plain mergekit YAML can
name them once ``rankedit.edits`` is imported (see ``rankedit.edits.mergekit_yaml``).

The edit families live in ``rankedit.edits.methods``, one file each, so a new edit is one
new file there calling ``registry.register``; edits from other packages come in through
``registry.load_plugins`` (entry points, $RANKEDIT_PLUGINS). Everything else in this folder
is machinery: it plans, runs, records and exports edits.
"""

import rankedit.edits.methods  # noqa: F401  (registers every edit family)
from rankedit.edits.registry import EDITS, EditResult, MatrixInputs, get_edit, load_plugins  # noqa: E402

load_plugins()

from rankedit.edits.build import build_edit, mergekit_config, plan_edit  # noqa: E402
from rankedit.edits.manifest import MANIFEST, read_manifest  # noqa: E402
from rankedit.edits.mergekit_methods import method_name, register_all  # noqa: E402

register_all()

__all__ = ["EDITS", "MANIFEST", "EditResult", "MatrixInputs", "build_edit", "get_edit", "mergekit_config",
           "method_name", "plan_edit", "read_manifest", "register_all"]
