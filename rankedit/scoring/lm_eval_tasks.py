"""lm-eval's tasks for a suite: the TaskManager over its task folders, and a preflight that builds them once."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from rankedit.core.errors import RankeditError
from rankedit.scoring.failures import first_line
from rankedit.scoring.suites import Suite
import difflib
from rankedit.scoring.task_index import builtin_index


def task_manager(suite: Suite):
    """An lm-eval TaskManager that knows the suite's tasks; unknown names are one clear error.

    lm-eval's own ~15k task configs are indexed only when needed (it takes ~10 s), once per
    process and then from rankedit's cache (``rankedit.scoring.task_index``).
    The returned manager carries ``rankedit_builtin`` (whether they were indexed).
    """
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in suite.include_paths if Path(p).is_dir()]
    tm, builtin = None, False
    if suite.needs_builtin_tasks is not True and paths:
        tm = TaskManager(include_path=paths, include_defaults=False)
        if suite.needs_builtin_tasks is None and not resolved_locally(tm, suite.tasks):
            tm = None
    if tm is None:
        tm, builtin = with_builtin_tasks(TaskManager(include_path=paths or None, include_defaults=False)), True
    tm.rankedit_builtin = builtin
    unknown = [t for t in suite.tasks if t not in tm.all_tasks]
    if unknown:
        hints = []
        for t in unknown:
            close = difflib.get_close_matches(t, tm.all_tasks, n=3)
            hints.append(f"{t!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        where = ", ".join(str(p) for p in suite.include_paths) or "none"
        scope = "" if builtin else " (lm-eval's built-in tasks not searched)"
        raise RankeditError(f"unknown task {', '.join(hints)}: not found in task folders [{where}] "
                            f"or lm-eval's task list{scope}")
    return tm


def with_builtin_tasks(tm, builtin: dict | None = None):
    """``tm`` (built on the task folders alone) with lm-eval's own tasks beneath its own, as
    ``TaskManager(include_path=..., include_defaults=True)`` builds it: the folders' names
    override the built-ins (with lm-eval's warning), and the name lists are rebuilt from the index."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._index import log as index_log

    base = builtin_index() if builtin is None else builtin
    for name, entry in tm.task_index.items():
        if name in base:
            index_log.warning("Task '%s' from %s overrides existing task from %s",
                              name, entry.yaml_path, base[name].yaml_path)
    index = {**base, **tm.task_index}
    tm._index = index
    tm._all_tasks = sorted(index)
    tm._all_subtasks = sorted(k for k, e in index.items() if e.kind in (Kind.TASK, Kind.PY_TASK))
    tm._all_groups = sorted(k for k, e in index.items() if e.kind is Kind.GROUP)
    tm._all_tags = sorted(k for k, e in index.items() if e.kind is Kind.TAG)
    return tm


def group_children(cfg: dict) -> list[str]:
    """The task and group names a group config builds on (``task:`` entries, by name or with overrides)."""
    items = cfg.get("task")
    out = []
    for it in items if isinstance(items, list) else []:
        if isinstance(it, str):
            out.append(it)
        elif isinstance(it, dict):
            name = it.get("group") or it.get("task")
            if isinstance(name, str):
                out.append(name)
    return out


def resolved_locally(tm, names) -> bool:
    """Whether every name, and every task a local group builds on, is defined in the task folders alone.

    A local config may override an lm-eval built-in (a group entry ``- task: gsm8k_cot_zeroshot``
    with a local ``dataset_path``, as plain ``lm_eval --include_path`` allows): the override then needs
    the built-in's own config, so finding the group's name locally is not enough."""
    from lm_eval.tasks._index import Kind

    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        entry = tm.task_index.get(name)
        if entry is None:
            return False
        if entry.kind is Kind.GROUP:
            todo.extend(group_children(entry.cfg or {}))
        elif entry.kind is Kind.TAG:
            todo.extend(n for n, e in tm.task_index.items() if name in (e.tags or ()))
    return True


class _DropMetadataNotice(logging.Filter):
    """Drops lm-eval's "Custom kwargs can be passed to `--metadata`" warning.

    lm-eval logs it each time it builds a task with a ``custom_dataset``: every
    organism task, once at preflight and again for every model scored (six
    lines for one model). It advises on lm-eval's own command line, which a
    rankedit user does not run, so it is dropped, not just deduplicated."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed to `--metadata`" not in record.getMessage()


@contextlib.contextmanager
def quiet_lm_eval_notices():
    logger = logging.getLogger("lm_eval.api.task")  # where lm-eval's Task.download logs it
    f = _DropMetadataNotice()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


def preflight(suite: Suite, tm) -> dict:
    """Build the tasks once (datasets, !function imports) so environment problems are one clear error;
    returns lm-eval's loaded tasks (``{"tasks": {name: Task}, "groups": ...}``)."""
    try:
        with quiet_lm_eval_notices():
            return tm.load(list(suite.tasks))
    except ImportError as e:
        raise RankeditError(f"a task of suite {suite.name!r} needs a missing package ({first_line(e)}); "
                            'for the math tasks: pip install "rankedit[math]" (lm-eval[math]==0.4.13)') from None
    except RankeditError:
        raise
    except Exception as e:  # dataset download (offline?), bad YAML
        raise RankeditError(f"cannot load the tasks of suite {suite.name!r}: {first_line(e)} "
                            "(datasets of lm-eval's built-in tasks need the Hugging Face Hub)") from None
