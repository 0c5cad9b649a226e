"""The edits of the next matrices, computed on a second core while mergekit loads and writes (CPU only).

Why: mergekit runs its graph on one thread, and on a small box the thread
policy (``rankedit.core.threads``) gives the edit one BLAS thread. The SVDs,
norms and casts of rank-k then sat on the same core as mergekit's reads and
writes while the other core idled: a whole ``rankedit edit rank-k`` took 1.7x
``mergekit-yaml`` (BENCHMARKS.md). Here one worker thread reads each matrix from
the checkpoints itself and runs the same code the mergekit adapter runs on it
(``rankedit.edits.mergekit_methods.edit_matrix``, one OpenMP thread, so the same
numbers), up to ``window`` matrices ahead of the graph, in the graph's order
(mergekit schedules tensors by name). When a matrix comes up, the adapter takes
its result, or claims the matrix and computes it inline if the worker has not
started it: the output is the same either way, only the timing differs. A
failure in the worker is not reported from there: the adapter recomputes the
matrix inline, where the error surfaces with mergekit's context.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Optional

_MISSING = object()


class Ahead:
    """A worker computing ``compute(name)`` for ``names`` in order, at most ``window`` finished results held."""

    def __init__(self, names: Iterable[str], compute: Callable[[str], Any], key: Any, window: int = 2):
        self.key = key  # what the results were computed for (the edit's parameters): a caller with another key computes inline
        self._names = list(names)
        self._compute = compute
        self._window = max(1, window)
        self._cv = threading.Condition()
        self._claimed: set[str] = set()
        self._ready: dict[str, Any] = {}
        self._wanted: Optional[str] = None
        self._stop = False
        self._thread = threading.Thread(target=self._work, name="rankedit-ahead", daemon=True)

    def start(self) -> "Ahead":
        self._thread.start()
        return self

    def _work(self) -> None:
        for name in self._names:
            with self._cv:
                if self._stop:
                    return
                if name in self._claimed:
                    continue
                # claimed before waiting for room, so the caller never races the worker for the next
                # matrix; computed at once if the caller is waiting for it (no deadlock when the
                # caller's order differs and the held results are not the ones it wants yet)
                self._claimed.add(name)
                while not self._stop and len(self._ready) >= self._window and self._wanted != name:
                    self._cv.wait()
                if self._stop:
                    return
            try:
                out = self._compute(name)
            except BaseException as e:  # noqa: BLE001  (recomputed inline by the caller, which reports it)
                out = _Failed(e)
            with self._cv:
                self._ready[name] = out
                self._cv.notify_all()

    def take(self, name: str) -> Optional[Any]:
        """The worker's result for ``name`` (waiting for it if it is being computed), or None: compute it inline.

        None also claims ``name``, so the worker skips it."""
        with self._cv:
            if name not in self._claimed:
                self._claimed.add(name)
                return None
            self._wanted = name
            self._cv.notify_all()
            while name not in self._ready:
                self._cv.wait()
            self._wanted = None
            out = self._ready.pop(name)
            self._cv.notify_all()
        return None if isinstance(out, _Failed) else out

    def close(self) -> None:
        """Stop the worker (after the matrix it is on) and drop what it holds."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._ready.clear()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error
