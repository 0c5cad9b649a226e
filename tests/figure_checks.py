"""What a reviewer checks on a figure, read from its matplotlib objects (tests/ is on sys.path).

``kept_figures`` keeps the figures a writer made open (the writers close them after saving);
``problems(fig)`` lists what is wrong with one: an axis with no data and no text saying why, an
x or y axis without a label (an axis sharing it with a labelled one counts as labelled), a colour
bar without a label, a legend entry that names nothing drawn.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba_array
from matplotlib.lines import Line2D
from matplotlib.patches import Patch


class kept_figures:
    """Context: plt.close keeps the figures instead; ``.made`` lists them; they are closed on exit."""

    def __init__(self, monkeypatch):
        self.made, self._close = [], plt.close
        monkeypatch.setattr(plt, "close", lambda fig=None: self.made.append(fig))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fig in self.made:
            self._close(fig)
        self.made.clear()


def _has_data(artist) -> bool:
    if isinstance(artist, Line2D):
        x, y = (np.asarray(v, dtype=float) for v in artist.get_data())
        return bool(np.isfinite(x).any() and np.isfinite(y).any())
    if hasattr(artist, "get_offsets") and len(artist.get_offsets()):
        return True
    if hasattr(artist, "get_paths"):
        return any(len(p.vertices) for p in artist.get_paths())
    if hasattr(artist, "get_children") and hasattr(artist, "__len__"):  # a container (errorbar, bars)
        return any(_has_data(c) for c in artist.get_children() if c is not None)
    return True  # a patch: drawn


def _drawn(ax) -> list:
    return [a for a in [*ax.lines, *ax.patches, *ax.collections, *ax.images, *ax.containers] if _has_data(a)]


def _colours(artist) -> set:
    """The visible colours an artist is drawn in (RGB rounded), over its colour, face, edge and marker colours."""
    out = set()
    for getter in ("get_color", "get_facecolor", "get_edgecolor", "get_markerfacecolor", "get_markeredgecolor"):
        try:
            rgba = to_rgba_array(getattr(artist, getter)())
        except (AttributeError, TypeError, ValueError):
            continue
        out |= {tuple(round(float(x), 3) for x in c[:3]) for c in rgba if c[3] > 0}
    return out


def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _labelled(ax, axis: str) -> bool:
    get = ax.get_xlabel if axis == "x" else ax.get_ylabel
    if get().strip():
        return True
    shared = ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()
    return any((s.get_xlabel() if axis == "x" else s.get_ylabel()).strip() for s in shared.get_siblings(ax))


def problems(fig) -> list[str]:
    out = []
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    plots = [ax for ax in axes if not _is_colorbar(ax)]
    drawn = {ax: _drawn(ax) for ax in plots}
    for i, ax in enumerate(plots):
        where = f"axis {i} ({ax.get_title() or ax.get_title(loc='left') or 'untitled'})"
        if not drawn[ax] and not [t for t in ax.texts if t.get_text().strip()]:
            out.append(f"{where}: nothing drawn and no text saying why")
        for axis in "xy":
            if not _labelled(ax, axis):
                out.append(f"{where}: no {axis} label")
    for ax in axes:
        if _is_colorbar(ax) and not (ax.get_ylabel().strip() or ax.get_xlabel().strip()):
            out.append("a colour bar without a label")
    artists = [a for ax in plots for a in drawn[ax]]
    labels = {a.get_label() for a in artists if not str(a.get_label()).startswith("_")}
    colours = set().union(*(_colours(a) for a in artists)) if artists else set()
    legends = [ax.get_legend() for ax in plots if ax.get_legend()] + list(fig.legends)
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            label = text.get_text()
            if label in labels:
                continue
            # a proxy handle (a Patch or an empty Line2D made for the legend): its colour must be drawn
            if isinstance(handle, (Patch, Line2D)) and _colours(handle) and _colours(handle) <= colours:
                continue
            out.append(f"legend entry {label!r} names nothing drawn")
    return out
