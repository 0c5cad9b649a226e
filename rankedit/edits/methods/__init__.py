"""The edit families: one file each, every one registered by name in ``rankedit.edits.registry``.

This folder is the extension point and nothing else: every module here defines edits
(its params model, its pure tensor function, its ``register`` call), and importing the
package imports them all. The machinery that plans, runs, records and exports edits lives
one folder up, in ``rankedit.edits``. Edits from other packages come in through
``registry.load_plugins`` (entry points, $RANKEDIT_PLUGINS).
"""

import importlib
import pkgutil

FAMILIES = tuple(m.name for m in pkgutil.iter_modules(__path__))

for _name in FAMILIES:
    importlib.import_module(f"{__name__}.{_name}")
