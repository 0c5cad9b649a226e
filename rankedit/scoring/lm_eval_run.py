"""One lm-eval run: ``lm_eval.simple_evaluate`` on one model, in-process, with its samples logged.

The ``hf`` backend (CPU or GPU) by default; ``vllm`` when it is installed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import subprocess
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.files.atomic import atomic_dir
from rankedit.scoring.cpu_threads import cpu_threads_for
from rankedit.scoring.raw_files import save_raw
from rankedit.scoring.results import Settings
from rankedit.scoring.suites import Suite
from rankedit.scoring.lm_eval_tasks import quiet_lm_eval_notices, task_manager

BACKENDS = ("hf", "vllm")


def lm_eval_model(backend: str, path: Path, settings: Settings) -> tuple[str, dict]:
    if backend == "hf":
        return "hf", {"pretrained": str(path), "dtype": settings.dtype}
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise RankeditError("backend 'vllm' needs vllm, which is not installed in this environment: see "
                                "'Scoring with vllm' in docs/scaling.md (a separate environment, GPU only); or use --backend hf")
        args = {"pretrained": str(path), "dtype": "auto" if settings.dtype == "float32" else settings.dtype}
        sampling = settings.sampling or (settings.task_sampling[0][1] if settings.task_sampling else None)
        if sampling is not None:
            args["seed"] = sampling.seed  # vllm seeds its own sampler from its model args
        return "vllm", args
    raise RankeditError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


@contextlib.contextmanager
def quiet_generate_warnings():
    """Silence transformers' per-batch "Both `max_new_tokens` and `max_length`" warning.

    lm-eval's hf backend passes max_length while a checkpoint's generation_config
    may set max_new_tokens (the organism's does); transformers then warns on every
    generate() call, a thousand lines per scored model. Errors still show."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def _git_hash_quietly() -> str | None:
    """lm-eval's ``get_git_commit_hash`` with git's stderr kept off the user's terminal.

    lm-eval records the git commit of the current directory in every result and
    runs ``git describe`` for it with stderr inherited: outside a repository each
    scored model printed "fatal: not a git repository" to the user. Same command,
    same value; only the message is dropped."""
    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
    except (subprocess.CalledProcessError, FileNotFoundError, OSError):
        return None


@contextlib.contextmanager
def quiet_git_probe():
    import lm_eval.evaluator as evaluator

    before = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = _git_hash_quietly
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = before


@functools.cache
def _env_info(cwd: str) -> dict:
    """lm-eval's ``add_env_info`` fields, computed once per process (and working directory)."""
    from lm_eval.loggers.utils import add_env_info

    info: dict = {}
    add_env_info(info)
    return info


def _env_info_once(storage: dict) -> None:
    storage.update(_env_info(os.getcwd()))


@contextlib.contextmanager
def env_info_once():
    """lm-eval's ``add_env_info`` with its value kept for the process.

    lm-eval records torch's ``collect_env`` report in every result, and builds it
    anew for every scored model: a ``pip list`` and a dozen other subprocesses,
    1-4 s per model. The report describes the process's environment, which does
    not change while it runs, so every model after the first reuses it: same
    fields, same values."""
    import lm_eval.evaluator as evaluator

    before = evaluator.add_env_info
    evaluator.add_env_info = _env_info_once
    try:
        yield
    finally:
        evaluator.add_env_info = before


def run_lm_eval(path: Path, suite: Suite, tm, settings: Settings) -> dict:
    """One call of lm_eval.simple_evaluate for one model on the suite's tasks (with samples)."""
    from lm_eval import simple_evaluate

    model, model_args = lm_eval_model(settings.backend, path, settings)
    gen_kwargs = {"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else {}
    tasks, seeds = list(suite.tasks), {}
    if settings.sampling is not None:
        gen_kwargs |= settings.sampling.gen_kwargs()
        tasks, seeds = with_repeats(tm, tasks, settings.sampling.samples), settings.sampling.seeds()
    elif settings.task_sampling:
        tasks = with_task_sampling(tm, tasks, dict(settings.task_sampling))
        seeds = settings.task_sampling[0][1].seeds()
    with cpu_threads_for(path, settings.device if settings.backend == "hf" else "gpu"), quiet_generate_warnings(), \
            quiet_lm_eval_notices(), quiet_git_probe(), env_info_once():
        res = simple_evaluate(
            model=model, model_args=model_args, tasks=tasks, task_manager=tm,
            batch_size=settings.batch_size, device=settings.device if settings.backend == "hf" else None,
            limit=settings.limit, num_fewshot=settings.num_fewshot, log_samples=True,
            apply_chat_template=settings.apply_chat_template, gen_kwargs=gen_kwargs or None,
            bootstrap_iters=1000, **seeds,
        )
    if not res or not res.get("results"):
        raise RuntimeError("lm-eval returned no results")
    return res


def with_repeats(tm, names: list[str], n: int) -> list:
    """The suite's tasks and groups built by ``tm``, every leaf task set to ``repeats: n``.

    simple_evaluate has no repeats argument and its task dicts build inline tasks,
    so the built objects (which it accepts) carry the override; groups keep their children."""
    built = []
    for name in names:
        loaded = tm.load([name])
        for task in loaded["tasks"].values():
            task.set_config(key="repeats", value=n)
        built.append(loaded["groups"][name] if name in loaded["groups"] else loaded["tasks"][name])
    return built


def with_task_sampling(tm, names: list[str], per_task: dict) -> list:
    """The suite's tasks and groups built by ``tm``, the leaf tasks named in ``per_task`` set to
    its sampling (``repeats: n`` and do_sample, temperature, top_p over the task's own
    generation kwargs), the others left greedy."""
    built = []
    for name in names:
        loaded = tm.load([name])
        for task_name, task in loaded["tasks"].items():
            s = per_task.get(task_name)
            if s is not None:
                task.set_config(key="repeats", value=s.samples)
                task.set_config(key="generation_kwargs", value=s.gen_kwargs(), update=True)
        built.append(loaded["groups"][name] if name in loaded["groups"] else loaded["tasks"][name])
    return built


def run_into_cache(path: str, suite: Suite, settings: Settings, entry: str, tm=None) -> str:
    """Score one model and store lm-eval's output as the cache entry ``entry`` (one executor task).

    The entry appears whole or not at all, so a finished model is never lost, and
    a task that runs again (a retry, a resume) only replaces it with the same content.
    """
    raw = run_lm_eval(Path(path), suite, tm if tm is not None else task_manager(suite), settings)
    with atomic_dir(entry) as tmp:
        save_raw(raw, tmp)
    return entry
