"""Suites offline: every task's dataset read from local copies (``rankedit score --data-dir DIR``).

A cluster without internet cannot fetch lm-eval's datasets from the Hub. With
``--data-dir DIR``, each task of the suite that reads a Hub dataset ``OWNER/NAME``
reads ``DIR/OWNER/NAME/`` instead: the dataset's own files (jsonl, json,
parquet, csv), laid out as on the Hub, e.g. what
``hf download OWNER/NAME --repo-type dataset --local-dir DIR/OWNER/NAME`` writes.
Splits are named by the files, as the ``datasets`` library names them on the Hub
(``test.jsonl``, ``main/test-00000-of-00001.parquet``; a lone file is the
``train`` split, as AIME 2024's is). A dataset with configs (``dataset_name``)
is read from the config's subfolder (``DIR/openai/gsm8k/main/``,
``DIR/EleutherAI/hendrycks_math/algebra/``) or, when the copy's README declares
its configs, from the copy itself.

How: the real lm-eval task configs are kept (prompts, filters, metrics,
``process_results``): for each task, a YAML that ``include``s the task's own
config and sets only ``dataset_path`` and ``dataset_name`` is written to an
override folder in rankedit's cache, added last to the suite's task folders,
where it overrides the built-in task by name, as ``lm_eval --include_path``
does. The folder also lists the sha256 of every local data file, so the score
cache's key changes with the data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import yaml

from rankedit.core.cache_dir import cache_root
from rankedit.core.errors import RankeditError
from rankedit.files.atomic import atomic_dir
from rankedit.files.hashes import files_sha256
from rankedit.scoring.suites import Suite
from rankedit.scoring.lm_eval_tasks import group_children, task_manager

# datasets' packaged builders and local files: already local, nothing to redirect
LOCAL_BUILDERS = {"json", "csv", "parquet", "arrow", "text", "pandas", "imagefolder", "audiofolder"}
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow", ".txt", ".jsonl.gz", ".json.gz")
MANIFEST = "rankedit_data_files.json"


def leaf_tasks(tm, names) -> dict:
    """task name -> lm-eval index entry of every task the names build on (groups and tags walked)."""
    from lm_eval.tasks._index import Kind

    out, todo, seen = {}, list(names), set()
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        entry = tm.task_index.get(name)
        if entry is None:
            continue  # an inline task of a group: its own config names its data
        if entry.kind is Kind.GROUP:
            todo.extend(group_children(entry.cfg or {}))
        elif entry.kind is Kind.TAG:
            todo.extend(n for n, e in tm.task_index.items() if name in (e.tags or ()))
        elif entry.kind is Kind.TASK:
            out[name] = entry
    return out


def _declared_configs(root: Path) -> set[str]:
    """Config names a Hub copy's README declares in its YAML front matter (``configs: - config_name: X``)."""
    readme = root / "README.md"
    if not readme.is_file():
        return set()
    text = readme.read_text(errors="replace")
    if not text.startswith("---"):
        return set()
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return set()
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return {c.get("config_name") for c in configs or [] if isinstance(c, dict)}


def local_copy(data_dir: Path, hub_path: str, name: str | None, task: str) -> tuple[str, str | None]:
    """(dataset_path, dataset_name) that read ``hub_path`` (config ``name``) from ``data_dir``."""
    root = data_dir / hub_path
    if not root.is_dir():
        raise RankeditError(f"--data-dir {data_dir}: no local copy of {hub_path} for task {task} (expected the "
                            f"dataset's files in {root}/, e.g. hf download {hub_path} --repo-type dataset "
                            f"--local-dir {root})")
    if name and (root / name).is_dir():
        return str(root / name), None
    if name and name in _declared_configs(root):
        return str(root), name
    return str(root), None


def data_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.name.endswith(DATA_SUFFIXES)
                  and not any(p.startswith(".") for p in f.relative_to(folder).parts))


def override_configs(tm, suite: Suite, data_dir: Path) -> dict[str, dict]:
    """task -> the override config (include of its own YAML, local dataset_path/dataset_name) of every
    task of the suite that reads a Hub dataset."""
    out = {}
    for task, entry in sorted(leaf_tasks(tm, suite.tasks).items()):
        cfg = entry.cfg or {}
        hub = cfg.get("dataset_path")
        if not isinstance(hub, str) or hub in LOCAL_BUILDERS or Path(hub).expanduser().exists():
            continue
        if entry.yaml_path is None:
            raise RankeditError(f"--data-dir: task {task} has no YAML config to override")
        path, name = local_copy(data_dir, hub, cfg.get("dataset_name"), task)
        if not data_files(Path(path)):
            raise RankeditError(f"--data-dir {data_dir}: {path} holds no data files ({', '.join(DATA_SUFFIXES)}) "
                                f"for task {task}")
        out[task] = {"task": task, "include": str(Path(entry.yaml_path).resolve()),
                     "dataset_path": path, "dataset_name": name}
    return out


def with_data_dir(suite: Suite, data_dir: str | Path) -> Suite:
    """``suite`` with a task folder that reads every Hub dataset of its tasks from ``data_dir``."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        raise RankeditError(f"--data-dir: not a folder: {data_dir}")
    tm = task_manager(replace(suite, needs_builtin_tasks=True))
    configs = override_configs(tm, suite, data_dir)
    if not configs:
        return suite  # every task already reads local files (the organism's)
    sha = {}
    for c in configs.values():
        for f in data_files(Path(c["dataset_path"])):
            sha[str(f.relative_to(data_dir))] = files_sha256([f])[f.name]
    texts = {f"{task}.yaml": "# written by rankedit score --data-dir: lm-eval's own task, its data read locally\n"
             + yaml.safe_dump(c, sort_keys=False) for task, c in configs.items()}
    manifest = json.dumps({"data_dir": str(data_dir), "sha256": sha}, indent=1, sort_keys=True) + "\n"
    key = hashlib.sha256(json.dumps([texts, manifest], sort_keys=True).encode()).hexdigest()[:24]
    dest = cache_root() / "task-data" / key
    if not (dest / MANIFEST).is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(dest, overwrite=True) as tmp:
            for fname, text in texts.items():
                (tmp / fname).write_text(text)
            (tmp / MANIFEST).write_text(manifest)
    return replace(suite, include_paths=(*suite.include_paths, dest))
