"""rankedit: analyse, edit, score and publish the geometry of RL fine-tuning updates.

The Python API mirrors the CLI. Names are imported lazily so that importing
rankedit (and running `rankedit --help`) stays fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "analyze": ("rankedit.analysis.analyze", "analyze"),
    "apply": ("rankedit.edits.apply", "apply_artifact"),
    "Checkpoint": ("rankedit.files.checkpoint", "Checkpoint"),
    "compress": ("rankedit.pipeline.compress.command", "compress"),
    "build_edit": ("rankedit.edits.build", "build_edit"),
    "merge": ("rankedit.edits.merge", "build_merge"),
    "kl": ("rankedit.scoring.kl.sampler", "kl"),
    "load_plan": ("rankedit.pipeline.plan", "load_plan"),
    "patch": ("rankedit.files.patch", "write_patch"),
    "patch_chain": ("rankedit.files.patch", "write_chain"),
    "apply_patch": ("rankedit.files.patch_apply", "apply_patch"),
    "push": ("rankedit.publish.hub", "push"),
    "run": ("rankedit.pipeline.run", "run"),
    "score": ("rankedit.scoring.score", "score"),
    "trajectory": ("rankedit.analysis.trajectory", "trajectory"),
    "write_artifact": ("rankedit.edits.artifact", "write_artifact"),
    "RankeditError": ("rankedit.core.errors", "RankeditError"),
}


def __getattr__(name):
    if name == "organism":  # the subpackage: rankedit.organism.build(...)
        return import_module("rankedit.organism")
    if name in _API:
        mod, attr = _API[name]
        return getattr(import_module(mod), attr)
    raise AttributeError(f"module 'rankedit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API) + ["organism"])
