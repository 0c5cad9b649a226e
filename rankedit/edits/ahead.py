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
its result (waiting if the worker is on it), or computes it inline if the worker
has not started it, and the worker skips it: both cores compute when the worker
falls behind. The output is the same either way, only the timing differs. A
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
        self._started: set[str] = set()  # begun by the worker, or taken over by the caller
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
                self._claimed.add(name)
                while not self._stop and len(self._ready) >= self._window and name not in self._started:
                    self._cv.wait()
                if self._stop:
                    return
                if name in self._started:  # the caller came to it first and computes it itself
                    continue
                self._started.add(name)
            try:
                out = self._compute(name)
            except BaseException as e:  # noqa: BLE001  (recomputed inline by the caller, which reports it)
                out = _Failed(e)
            with self._cv:
                self._ready[name] = out
                self._cv.notify_all()

    def take(self, name: str) -> Optional[Any]:
        """The worker's result for ``name`` (waiting for it if the worker has begun it), or None: the
        caller computes it, and the worker skips it."""
        with self._cv:
            self._claimed.add(name)
            if name not in self._started:  # not begun: computing it here beats waiting for it
                self._started.add(name)
                self._cv.notify_all()
                return None
            while name not in self._ready:  # the worker is on it (it never waits while it computes)
                self._cv.wait()
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
