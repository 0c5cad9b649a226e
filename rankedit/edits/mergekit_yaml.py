"""mergekit's own ``mergekit-yaml`` command with rankedit's methods registered.

mergekit 0.1.5 has no plugin entry points, so its console script does not know
``rankedit_*`` methods. Run a plain mergekit YAML that names them with::

    python -m rankedit.edits.mergekit_yaml edit.yml OUT [any mergekit-yaml option, e.g. --cuda]

or from Python: ``import rankedit.edits`` before ``mergekit.merge.run_merge``.
"""

from __future__ import annotations

import rankedit.edits  # noqa: F401  (registers the rankedit_* merge methods)


def main() -> None:
    from mergekit.scripts.run_yaml import main as mergekit_yaml

    mergekit_yaml()


if __name__ == "__main__":
    main()
