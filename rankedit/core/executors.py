"""Where the pipeline's heavy tasks (edit builds, model scorings) run: in this process, or as Ray tasks.

Both executors have one call, ``map(fn, items, ...)``: ``fn(*args)`` for each
args tuple in ``items``, returning one ``Outcome`` (a value or the exception)
per item, in the order given. The driver keeps everything else: it decides
what is already built or cached, reads the results back from the shared
filesystem and alone writes the report. So a task only ever writes its own
output (an edit directory, a score-cache entry), atomically, and a run under
Ray resumes from exactly the state a local run leaves, and the other way round.

``LocalExecutor`` runs the items one after another, as rankedit always has.
``RayExecutor`` submits them as Ray tasks with resource requests (CPUs, GPUs);
a task that raises, or whose worker dies, is retried once, then its last
exception comes back like a local one. Ray is an optional extra
(``pip install 'rankedit[ray]'``) and is imported only here.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rankedit.core.errors import RankeditError
from rankedit.core.cache_dir import cache_root

RAY_MISSING = "the ray executor needs Ray, which is not installed: pip install 'rankedit[ray]'"
# what a worker must see as the driver does: the cache (scores, hashes, organisms) and offline switches
WORKER_ENV = ("RANKEDIT_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM")
RETRIES = 1  # a failed task runs once more before its failure is reported


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


OnDone = Callable[[int, Outcome], None]


class LocalExecutor:
    """Runs each item in this process, in order; ``stop_on`` exceptions propagate at once."""

    in_process = True

    def map(self, fn: Callable, items: Sequence[tuple], *, num_cpus: float = 1, num_gpus: float = 0,
            on_done: OnDone | None = None, stop_on: tuple[type[BaseException], ...] = ()) -> list[Outcome]:
        outcomes = []
        for i, args in enumerate(items):
            try:
                o = Outcome(value=fn(*args))
            except stop_on:
                raise
            except Exception as e:  # noqa: BLE001 - the caller decides what a failure means
                o = Outcome(error=e)
            outcomes.append(o)
            if on_done:
                on_done(i, o)
        return outcomes

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def worker_env() -> dict[str, str]:
    """The driver's settings every worker must share; the cache is the driver's resolved one."""
    env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}
    env["RANKEDIT_CACHE"] = str(cache_root())
    return env


class RayExecutor(LocalExecutor):
    """Runs each item as a Ray task on the cluster at ``address`` (None: a Ray instance of this
    machine, started here unless this process already called ``ray.init``).

    The workers must see the driver's filesystem paths (OUT, the checkpoints and the cache).
    """

    in_process = False

    def __init__(self, address: str | None = None, **init_kwargs: Any):
        if not ray_available():
            raise RankeditError(RAY_MISSING)
        import ray

        self._env = worker_env()
        self._owns = not ray.is_initialized()
        if self._owns:  # a driver's own session: quiet (workers' logs stay in Ray's log folder)
            init_kwargs = {"include_dashboard": False, "log_to_driver": False, **init_kwargs}
            try:
                ray.init(address=address, **init_kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise RankeditError(f"cannot connect to the Ray cluster at {address or 'this machine'}: "
                                    f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None

    def map(self, fn: Callable, items: Sequence[tuple], *, num_cpus: float = 1, num_gpus: float = 0,
            on_done: OnDone | None = None, stop_on: tuple[type[BaseException], ...] = ()) -> list[Outcome]:
        import ray

        if not items:
            return []
        task = ray.remote(fn).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=RETRIES,
                                      retry_exceptions=True, runtime_env={"env_vars": self._env})
        refs = [task.remote(*args) for args in items]
        index = {ref: i for i, ref in enumerate(refs)}
        outcomes: list[Outcome | None] = [None] * len(refs)
        pending = refs
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index[ref]
                try:
                    outcomes[i] = Outcome(value=ray.get(ref))
                except ray.exceptions.RayTaskError as e:
                    outcomes[i] = Outcome(error=_cause(e))
                except ray.exceptions.RayError as e:  # a worker or node lost twice, an object lost
                    outcomes[i] = Outcome(error=RuntimeError(f"ray: {str(e).strip().splitlines()[0]}"))
                if on_done:
                    on_done(i, outcomes[i])
        # the others have finished (their results are on disk for a resume); then stop as a local run would
        for o in outcomes:
            if stop_on and isinstance(o.error, stop_on):
                raise o.error
        return outcomes

    def close(self) -> None:
        import ray

        if self._owns and ray.is_initialized():
            ray.shutdown()


def _cause(e: BaseException) -> BaseException:
    """The exception the task raised, without Ray's wrapper (whose text carries the remote traceback)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else RuntimeError(str(e).strip().splitlines()[-1])


def make_executor(spec) -> LocalExecutor:
    """The executor a plan's ``executor`` section asks for (``rankedit.pipeline.plan.ExecutorSpec``)."""
    if spec is None or spec.kind == "local":
        return LocalExecutor()
    return RayExecutor(spec.address)
