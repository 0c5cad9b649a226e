"""The per-matrix work an edit declares (``Edit.ahead``), done in background threads beside the merge.

mergekit runs its graph one tensor at a time in one thread, and where the
thread policy gives each call one thread (``rankedit.core.threads``: 2 cores or
fewer) the other core waits. An edit whose cost is a decomposition (W0's top-k
for off-principal, dW's Gram eigendecomposition for rank-auto's energy rule)
declares it as ``ahead(params)``: a pure function of one matrix's inputs, or
None when these parameters need none. ``beside`` (``rankedit.edits.edit_plan.computed_ahead``
for a plan) then runs it for the matrices in the plan's order (mergekit's own) on
``matrices_at_once`` threads while the merge runs, and the adapter hands each matrix's result to the
edit as ``x.ahead`` (``take``):

- being computed: the merge waits for it;
- not started yet: the merge leaves it to the edit (``None``), which computes it
  itself, so the merge never waits behind a queue;
- at most ``LIMIT`` results wait to be taken, so memory stays bounded whatever the
  size of the model (a feeder thread submits the next matrix only when a slot is free).

Only matrices above 256 on the short side, or 1024 or more on the long side
(a GQA model's k/v projections, 256 x 1536: 20-50 ms to decompose), are done
ahead (``worth_ahead``): a smaller one costs less than reading it a second time,
and the organism's edits are computed as they always were. An ``ahead`` function must compute on values, not addresses
(on products or fresh copies of its inputs: BLAS results can depend on
alignment), so that an edit has the same bits wherever its work ran; each edit
that declares one is tested for that. A result is only used for the very matrix
it was computed from (a sample of W0's and W1's entries is compared), and a
failure ahead is left to the edit, which meets it again and reports it.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional

import torch

from rankedit.core.svd import EXACT_MAX_DIM, GRAM_MIN_LONG
from rankedit.edits.registry import MatrixInputs
from rankedit.core.threads import hot_path_threads, matrices_at_once

LIMIT_PER_WORKER = 2  # results waiting to be taken, per background thread

_local = threading.local()


def _sample(x: MatrixInputs) -> tuple[torch.Tensor, ...]:
    def grid(t: torch.Tensor) -> torch.Tensor:
        m, n = t.shape
        return t[:: max(1, m // 32), :: max(1, n // 32)].to("cpu", copy=True)

    return grid(x.w0), grid(x.w1)


class _Ahead:
    def __init__(self, work: Callable[[MatrixInputs], Any], read: Callable[[str], MatrixInputs],
                 names: list[str], workers: int, limit: int):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rankedit-ahead")
        self._slots = threading.Semaphore(limit)
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}
        self._claimed: set[str] = set()
        self._stop = False
        self._feeder = threading.Thread(target=self._feed, args=(work, read, names), name="rankedit-ahead-feed",
                                        daemon=True)
        self._feeder.start()

    def _feed(self, work, read, names) -> None:
        for name in names:
            self._slots.acquire()
            with self._lock:
                if self._stop:
                    self._slots.release()
                    return
                if name in self._claimed:  # the merge got there first and computed it itself
                    self._slots.release()
                    continue
                self._futures[name] = self._pool.submit(self._one, work, read, name)

    @staticmethod
    def _one(work, read, name: str) -> tuple[tuple[torch.Tensor, ...], Any]:
        x = read(name)
        return _sample(x), work(x)

    def take(self, name: str, x: MatrixInputs) -> Any:
        with self._lock:
            self._claimed.add(name)
            pending = self._futures.pop(name, None)
        if pending is None:
            return None
        try:
            if pending.cancel():  # queued, not started: the edit computes it now
                return None
            sample, value = pending.result()
        except Exception:  # noqa: BLE001 - the edit meets it again and reports it
            return None
        finally:
            self._slots.release()
        same = all(torch.equal(a, b) for a, b in zip(sample, _sample(x)))
        return value if same else None

    def close(self) -> None:
        with self._lock:
            self._stop = True
            pending, self._futures = list(self._futures.values()), {}
        for f in pending:
            f.cancel()
        self._slots.release()  # a feeder waiting for a slot wakes, sees the stop and returns
        self._feeder.join()
        self._pool.shutdown(wait=True)


def worth_ahead(shape: tuple[int, ...]) -> bool:
    """Whether a matrix of this shape is decomposed beside the merge (the module's rule)."""
    return min(shape) > EXACT_MAX_DIM or max(shape) >= GRAM_MIN_LONG


@contextlib.contextmanager
def beside(work: Optional[Callable[[MatrixInputs], Any]], names: list[str], read: Callable[[str], MatrixInputs],
           shape: Callable[[str], tuple[int, ...]], device: str = "cpu") -> Iterator[int]:
    """Run the block (the merge) with ``work`` under way beside it for the matrices ``names`` (in the
    merge's order) of which ``read`` gives the inputs; yields the number scheduled (0 when there is no
    work, or no matrix is worth it: ``worth_ahead(shape(name))``)."""
    names = [n for n in names if worth_ahead(shape(n))] if work is not None else []
    if not names:
        yield 0
        return
    short = max(min(shape(n)) for n in names)
    workers = matrices_at_once("edit", short, device)
    # the policy's threads for the whole block: the merge sets the same, and restores it, inside
    with hot_path_threads("edit", short):
        ahead = _Ahead(work, read, names, workers, LIMIT_PER_WORKER * workers)
        _local.current = ahead
        try:
            yield len(names)
        finally:
            _local.current = None
            ahead.close()


def take(name: str, x: MatrixInputs) -> Optional[Any]:
    """The result of the ``ahead`` work for matrix ``name`` of the build under way in this thread, or None."""
    ahead = getattr(_local, "current", None)
    return None if ahead is None else ahead.take(name, x)
