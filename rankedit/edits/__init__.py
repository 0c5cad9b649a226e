"""Edits of an RL update: pure tensor functions, one registry, run through mergekit.

Importing this package registers every edit in ``EDITS`` and as a mergekit merge
method (``rankedit_rank_k``, ``rankedit_mask``, ...), so a plain mergekit YAML can
name them once ``rankedit.edits`` is imported (see ``rankedit.edits.mergekit_yaml``).
"""

from rankedit.edits import extrapolate, mask, off_principal, rank_k, scale  # noqa: F401  (register)
from rankedit.edits.build import build_edit, mergekit_config, plan_edit
from rankedit.edits.manifest import MANIFEST, read_manifest
from rankedit.edits.mergekit_methods import method_name, register_all
from rankedit.edits.registry import EDITS, EditResult, MatrixInputs, get_edit

register_all()

__all__ = ["EDITS", "MANIFEST", "EditResult", "MatrixInputs", "build_edit", "get_edit", "mergekit_config",
           "method_name", "plan_edit", "read_manifest", "register_all"]
