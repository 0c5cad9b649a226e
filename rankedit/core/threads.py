"""How many torch CPU threads each hot path gets, chosen inside rankedit (users set no env vars).

Why rankedit chooses at all: torch's default is one OpenMP thread per core, and
on a small box that is the slow choice. OpenMP threads spin at the barrier that
ends each parallel region; when another process (or our own hashing thread)
holds one of the cores, the others spin until the OS reschedules it. On the
project's 2-core machine an edit (`rankedit edit rank-k --k 1` on a
Qwen2.5-0.5B-shaped pair) took 2.5x mergekit's task_arithmetic with the default
two threads and 0.7x with one; a single LAPACK call once took 16 s instead of
0.2 s (BENCHMARKS.md). A second thread on two cores gains at most 2x on the
compute-bound part when the box is idle, and loses far more when it is not.

So the policy, a pure function of the cores this process may run on and the
size of the largest matrix the path decomposes:

- 2 cores or fewer: one thread, whatever the path.
- ``edit``: the randomized SVD multiplies each matrix by k + 10 columns, thin
  products whose per-thread share is tiny below a few thousand rows; one more
  thread per 1024 of the short side, and one core left for the background
  thread that hashes the inputs while the merge runs.
- ``analyze``: float64 Gram products (m² n) and eigendecompositions (m³) are
  compute-bound and split well; one thread per 256 of the short side.

``torch_threads(n)`` sets it for the duration of a hot path and restores the
caller's setting after, so an API user's own choice survives the call. Someone
who exported ``OMP_NUM_THREADS`` has made the choice already: it is kept.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

# Short-side rows of work per thread: below this a thread's share of the hot path's
# products is too small to pay for its synchronisation.
ROWS_PER_THREAD = {"edit": 1024, "analyze": 256}


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, which taskset and cgroups cpusets narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def threads_for(path: str, cores: int, short_side: int) -> int:
    """Torch intra-op threads for hot path ``edit`` or ``analyze`` (see the module docstring)."""
    if path not in ROWS_PER_THREAD:
        raise ValueError(f"unknown hot path {path!r}; one of {', '.join(ROWS_PER_THREAD)}")
    if cores <= 2:
        return 1
    usable = cores - 1 if path == "edit" else cores
    by_size = max(1, short_side // ROWS_PER_THREAD[path])
    return max(1, min(usable, by_size))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave as is), then restore the setting."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def hot_path_threads(path: str, short_side: int) -> contextlib.AbstractContextManager:
    """``torch_threads`` with the policy's choice for this machine and matrix size
    (none where ``OMP_NUM_THREADS`` is set)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch_threads(None)
    return torch_threads(threads_for(path, available_cores(), short_side))


def matrices_at_once(path: str, short_side: int, device: str = "cpu") -> int:
    """How many matrices a hot path works on side by side: 2 where the policy leaves a core idle.

    Why: on 2 cores the policy gives each call one thread, and the other core
    would sit idle. Two matrices in two Python threads, one OpenMP thread each,
    use both cores without the barrier spinning that two threads inside one
    call suffer when the box is shared (no thread waits on the other's
    progress). Numbers are the same as one at a time: each matrix is computed
    by the same code on one thread. Two, not more: peak memory holds two
    matrices' decompositions. One on a GPU (the device is the shared resource)
    and where the user set ``OMP_NUM_THREADS``.
    """
    if device != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return 1
    cores = available_cores()
    return 2 if cores >= 2 * threads_for(path, cores, short_side) else 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` with ``workers`` calls running at once, results in order.

    At most ``workers + 1`` calls are submitted ahead of the consumer, so memory
    holds a bounded number of results whatever the length of ``items``. An
    exception from a call is raised at its place in the order; later calls are
    cancelled.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="rankedit-matrix") as ex:
        pending: deque = deque()
        try:
            for x in items:
                pending.append(ex.submit(fn, x))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
