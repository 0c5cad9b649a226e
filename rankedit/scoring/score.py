"""Score checkpoints with lm-eval, cache the results, and keep per-problem correctness.

``score(models, suite=... | tasks=..., out=...)`` runs ``lm_eval.simple_evaluate``
in-process (``hf`` backend by default, CPU or GPU; ``vllm`` when installed)
with ``log_samples=True``, one model at a time, and returns a ScoreResult: for
each model and task, every metric lm-eval reported (value, stderr, n) and the
per-problem scores keyed by lm-eval's ``doc_id``, which ``rankedit.scoring.retention``
pairs across models for retention intervals.

Cache: a run is stored under ``cache_root()/scores/<key>/`` (lm-eval's results
JSON plus one samples JSONL per task) as soon as that model finishes. The key
hashes the model files (weights, config, tokenizer), the task configs (every
file of the suite's YAML folders, and lm-eval's version for its built-in tasks)
and the settings that change generations (limit, batch size, backend, dtype,
device type, max_gen_toks, chat template, few-shot count). A rerun with the
same key loads the JSON and never loads the model.

Failures: a model that lm-eval cannot score is recorded and the others go on;
``score`` writes OUT with everything that succeeded, then raises one
RankeditError naming the failures (the CLI exits non-zero). Finished models
are in the cache either way, so nothing computed is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from rankedit.files.atomic import atomic_dir
from rankedit.files.tempfiles import WRITE_ERRNOS
from rankedit.files.outdir import check_out
from rankedit.files.cache import cache_root
from rankedit.files.checkpoint import Checkpoint, file_sha256
from rankedit.core.errors import RankeditError
from rankedit.scoring.suites import Suite, custom_suite, get_suite
from rankedit.files.validate import check_scorable

BACKENDS = ("hf", "vllm")
CACHE_FORMAT = 1  # bump when the cached layout or its meaning changes
_SKIP_KEYS = {"alias", "name", "sample_len", "samples", " "}

log = logging.getLogger(__name__)


# ---- results ------------------------------------------------------------------------
@dataclass
class TaskScore:
    """One metric of one task for one model, as lm-eval reported it."""

    task: str
    metric: str  # lm-eval's "metric,filter" key, e.g. "exact_match,strict-match"
    value: float
    stderr: float | None
    n: int
    per_sample: dict[int, float] = field(default_factory=dict, repr=False)  # doc_id -> score; empty for groups


@dataclass
class ModelScores:
    label: str
    path: str
    sha256: dict[str, str]
    key: str  # cache key
    cached: bool
    scores: dict[str, dict[str, TaskScore]]  # task -> metric -> TaskScore
    raw: dict = field(repr=False)  # lm-eval's results JSON (without samples)
    samples: dict[str, list] = field(repr=False, default_factory=dict)  # lm-eval's logged samples per task


@dataclass(frozen=True)
class Settings:
    """Everything besides model and tasks that changes what lm-eval generates."""

    backend: str = "hf"
    batch_size: int | str = 8
    limit: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    max_gen_toks: int | None = None
    apply_chat_template: bool = False
    num_fewshot: int | None = None

    def cache_dict(self) -> dict:
        d = asdict(self)
        d["device"] = self.device.split(":")[0]  # which GPU does not matter, CPU vs GPU might
        return d


@dataclass
class ScoreResult:
    """Scores of several models on one suite; the pipeline's view of ``rankedit score``."""

    suite: Suite
    settings: Settings
    models: dict[str, ModelScores]  # label -> scores, in the order given
    failures: dict[str, str] = field(default_factory=dict)  # label -> one-line reason
    out: Path | None = None

    @property
    def tasks(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.models.values():
            seen.update(dict.fromkeys(m.scores))
        return list(seen)

    def primary_metric(self, task: str) -> str:
        """The metric used for retention on ``task``: the suite's choice, else the first reported."""
        for m in self.models.values():
            metrics = m.scores.get(task)
            if metrics:
                want = self.suite.primary_metrics.get(task)
                return want if want in metrics else next(iter(metrics))
        raise RankeditError(f"no scores for task {task!r}; scored tasks: {', '.join(self.tasks) or 'none'}")

    def get(self, label: str, task: str, metric: str | None = None) -> TaskScore:
        if label not in self.models:
            why = f" (it failed: {self.failures[label]})" if label in self.failures else ""
            raise RankeditError(f"no scores for model {label!r}{why}")
        metric = metric or self.primary_metric(task)
        try:
            return self.models[label].scores[task][metric]
        except KeyError:
            raise RankeditError(f"model {label!r} has no score for task {task!r}, metric {metric!r}") from None

    def correctness(self, label: str, task: str, metric: str | None = None) -> dict[int, float]:
        """doc_id -> per-problem score (1/0 for exact match) of ``label`` on ``task``."""
        return self.get(label, task, metric).per_sample

    def rows(self) -> list[dict]:
        """One row per (model, task, metric): the ``scores`` list of scores.json."""
        return [
            {"model": label, "task": ts.task, "metric": ts.metric, "value": ts.value, "stderr": ts.stderr, "n": ts.n}
            for label, m in self.models.items()
            for metrics in m.scores.values()
            for ts in metrics.values()
        ]


# ---- parsing lm-eval's output (pure) ------------------------------------------------
def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, (int, float)) and math.isfinite(float(x)):
        return float(x)
    return None


def per_sample_scores(samples: Iterable[Mapping]) -> dict[str, dict[int, float]]:
    """lm-eval's logged samples of one task -> "metric,filter" -> {doc_id: score}.

    Each logged sample holds one document under one filter, with the metric
    values it produced; metrics that are not one number per document (e.g.
    corpus-level BLEU inputs) are left out.
    """
    out: dict[str, dict[int, float]] = {}
    for s in samples:
        flt = s.get("filter", "none")
        for metric in s.get("metrics", []):
            v = _number(s.get(metric))
            if v is not None:
                out.setdefault(f"{metric},{flt}", {})[int(s["doc_id"])] = v
    return out


def parse_results(results: Mapping) -> dict[str, dict[str, TaskScore]]:
    """lm-eval's results dict (``simple_evaluate``'s return, or its saved JSON plus samples)
    -> task -> "metric,filter" -> TaskScore, groups included (without per-problem scores)."""
    samples = results.get("samples") or {}
    n_samples = results.get("n-samples") or {}
    parsed: dict[str, dict[str, TaskScore]] = {}
    for task, row in (results.get("results") or {}).items():
        per = per_sample_scores(samples.get(task, []))
        metrics: dict[str, TaskScore] = {}
        for key, val in row.items():
            if key in _SKIP_KEYS or "," not in key or "_stderr," in key:
                continue
            value = _number(val)
            if value is None:
                continue
            metric, flt = key.split(",", 1)
            stderr = _number(row.get(f"{metric}_stderr,{flt}"))
            ps = per.get(key, {})
            n = len(ps) or int(row.get("sample_len") or (n_samples.get(task) or {}).get("effective") or 0)
            metrics[key] = TaskScore(task, key, value, stderr, n, ps)
        if metrics:
            parsed[task] = metrics
    # a group's n is the sum over its scored subtasks
    for group, subtasks in (results.get("group_subtasks") or {}).items():
        for ts in parsed.get(group, {}).values():
            if ts.n == 0:
                ts.n = sum(next(iter(parsed[s].values())).n for s in subtasks if s in parsed)
    return parsed


# ---- hashing and the cache ----------------------------------------------------------
def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# written into an edit's folder by `rankedit run` for `rankedit push`; not part of the model
REPORT_FILES = frozenset({"rankedit_scores.json", "rankedit_analysis.json"})


def model_fingerprint(ckpt: Checkpoint) -> dict[str, str]:
    """sha256 of every file that defines the model: weights, config, tokenizer, chat template.

    Hashes are memoised by (path, size, mtime) in the shared cache
    (``rankedit.files.hashes``), so a rerun does not reread gigabytes of safetensors.
    """
    from rankedit.files.hashes import files_sha256

    return files_sha256(f for f in sorted(ckpt.path.iterdir())
                        if f.is_file() and f.suffix not in (".md", ".lock") and not f.name.startswith(".")
                        and f.name not in REPORT_FILES)


def task_config_hash(suite: Suite, builtin: bool) -> str:
    """Hash of every file under the suite's task folders (YAMLs, data, utils) and
    lm-eval's version when its built-in tasks are in play."""
    import lm_eval

    h = hashlib.sha256()
    h.update(json.dumps(sorted(suite.tasks)).encode())
    for root in suite.include_paths:
        for f in sorted(Path(root).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(root)).encode())
                h.update(file_sha256(f).encode())
    h.update(f"lm_eval={lm_eval.__version__} builtin={builtin}".encode())
    return h.hexdigest()


def cache_key(model_sha: Mapping[str, str], config_hash: str, settings: Settings) -> str:
    return _hash_json({"format": CACHE_FORMAT, "model": dict(model_sha), "tasks": config_hash,
                       "settings": settings.cache_dict()})


def save_raw(results: Mapping, folder: Path) -> None:
    """Write lm-eval's results as results.json plus samples_<task>.jsonl (lm-eval's own layout)."""
    from lm_eval.utils import handle_non_serializable

    folder.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in results.items() if k != "samples"}
    (folder / "results.json").write_text(json.dumps(body, indent=2, default=handle_non_serializable))
    for task, samples in (results.get("samples") or {}).items():
        with open(folder / f"samples_{task}.jsonl", "w") as fh:
            for s in samples:
                fh.write(json.dumps(s, default=handle_non_serializable) + "\n")


def load_raw(folder: Path) -> dict:
    """Inverse of save_raw: lm-eval's results dict with its "samples"."""
    try:
        results = json.loads((folder / "results.json").read_text())
        samples = {}
        for f in sorted(folder.glob("samples_*.jsonl")):
            with open(f) as fh:
                samples[f.stem[len("samples_"):]] = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError) as e:
        raise RankeditError(f"{folder}: unreadable lm-eval results ({e})") from None
    results["samples"] = samples
    return results


# ---- tasks ----------------------------------------------------------------------------
def task_manager(suite: Suite):
    """An lm-eval TaskManager that knows the suite's tasks; unknown names are one clear error.

    lm-eval's own ~15k task configs are indexed only when needed (it takes ~10 s).
    The returned manager carries ``rankedit_builtin`` (whether they were indexed).
    """
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in suite.include_paths if Path(p).is_dir()]
    tm, builtin = None, False
    if suite.needs_builtin_tasks is not True and paths:
        tm = TaskManager(include_path=paths, include_defaults=False)
        if suite.needs_builtin_tasks is None and any(t not in tm.all_tasks for t in suite.tasks):
            tm = None
    if tm is None:
        tm, builtin = TaskManager(include_path=paths or None, include_defaults=True), True
    tm.rankedit_builtin = builtin
    unknown = [t for t in suite.tasks if t not in tm.all_tasks]
    if unknown:
        import difflib

        hints = []
        for t in unknown:
            close = difflib.get_close_matches(t, tm.all_tasks, n=3)
            hints.append(f"{t!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        where = ", ".join(str(p) for p in suite.include_paths) or "none"
        scope = "" if builtin else " (lm-eval's built-in tasks not searched)"
        raise RankeditError(f"unknown task {', '.join(hints)}: not found in task folders [{where}] "
                            f"or lm-eval's task list{scope}")
    return tm


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0] if s else ''}".rstrip(": ")


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


def _preflight(suite: Suite, tm) -> None:
    """Build the tasks once (datasets, !function imports) so environment problems are one clear error."""
    try:
        with quiet_lm_eval_notices():
            tm.load(list(suite.tasks))
    except ImportError as e:
        raise RankeditError(f"a task of suite {suite.name!r} needs a missing package ({_first_line(e)}); "
                            'for the math tasks: pip install "lm-eval[math]==0.4.13"') from None
    except RankeditError:
        raise
    except Exception as e:  # dataset download (offline?), bad YAML
        raise RankeditError(f"cannot load the tasks of suite {suite.name!r}: {_first_line(e)} "
                            "(datasets of lm-eval's built-in tasks need the Hugging Face Hub)") from None


# ---- running lm-eval ---------------------------------------------------------------
def _lm_eval_model(backend: str, path: Path, settings: Settings) -> tuple[str, dict]:
    if backend == "hf":
        return "hf", {"pretrained": str(path), "dtype": settings.dtype}
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise RankeditError("backend 'vllm' needs vllm, which is not installed in this environment: see "
                                "'Scoring with vllm' in the README (a separate environment, GPU only); or use --backend hf")
        return "vllm", {"pretrained": str(path), "dtype": "auto" if settings.dtype == "float32" else settings.dtype}
    raise RankeditError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


# Below this many parameters a CPU forward pass is so small that torch's intra-op
# threads only add synchronisation: one thread scored the organism 3-4x faster
# than two on a 2-core machine (BENCHMARKS.md, "Scoring").
SINGLE_THREAD_MAX_PARAMS = 50_000_000


@contextlib.contextmanager
def cpu_threads_for(path: Path, device: str):
    """Run tiny models single-threaded on the CPU; leave everything else alone."""
    from rankedit.core.threads import torch_threads

    small = False
    if device == "cpu":
        try:
            ck = Checkpoint(path)
            small = sum(ck.info(n).numel for n in ck.names) < SINGLE_THREAD_MAX_PARAMS
        except RankeditError:
            small = False
    with torch_threads(1 if small else None):
        yield


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


def run_lm_eval(path: Path, suite: Suite, tm, settings: Settings) -> dict:
    """One call of lm_eval.simple_evaluate for one model on the suite's tasks (with samples)."""
    from lm_eval import simple_evaluate

    model, model_args = _lm_eval_model(settings.backend, path, settings)
    gen_kwargs = {"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else None
    with cpu_threads_for(path, settings.device if settings.backend == "hf" else "gpu"), quiet_generate_warnings(), \
            quiet_lm_eval_notices():
        res = simple_evaluate(
            model=model, model_args=model_args, tasks=list(suite.tasks), task_manager=tm,
            batch_size=settings.batch_size, device=settings.device if settings.backend == "hf" else None,
            limit=settings.limit, num_fewshot=settings.num_fewshot, log_samples=True,
            apply_chat_template=settings.apply_chat_template, gen_kwargs=gen_kwargs,
            bootstrap_iters=1000,
        )
    if not res or not res.get("results"):
        raise RuntimeError("lm-eval returned no results")
    return res


def run_into_cache(path: str, suite: Suite, settings: Settings, entry: str, tm=None) -> str:
    """Score one model and store lm-eval's output as the cache entry ``entry`` (one executor task).

    The entry appears whole or not at all, so a finished model is never lost, and
    a task that runs again (a retry, a resume) only replaces it with the same content.
    """
    raw = run_lm_eval(Path(path), suite, tm if tm is not None else task_manager(suite), settings)
    with atomic_dir(entry) as tmp:
        save_raw(raw, tmp)
    return entry


# ---- the public entry point -------------------------------------------------------------
def model_labels(models: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """label -> model reference. Accepts a mapping, or refs with optional "label=path" prefixes;
    default labels are directory names, made unique with their parent's name. A label that
    is still repeated is refused (a row of the table would otherwise be renamed behind the
    user's back)."""
    if isinstance(models, Mapping):
        return {str(k): str(v) for k, v in models.items()}
    pairs = []
    for m in models:
        s = str(m)
        label, sep, ref = s.partition("=")
        if sep and label and not os.path.exists(s) and re.fullmatch(r"[\w.\-]+", label):
            pairs.append((label, ref))
        else:
            p = Path(s.rstrip("/"))
            pairs.append((p.name or s, s))
    labels = [lab for lab, _ in pairs]
    out: dict[str, str] = {}
    for (lab, ref), given in zip(pairs, models):
        if labels.count(lab) > 1 and ref == str(given):  # a default label: qualify it with the parent folder
            p = Path(ref.rstrip("/"))
            lab = f"{p.parent.name}/{p.name}" if p.parent.name else lab
        if lab in out:
            raise RankeditError(f"duplicate label {lab!r} (for {out[lab]} and {ref}); give each model its own "
                                "LABEL=PATH")
        out[lab] = ref
    return out


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def score(
    models: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
    suite: str | Suite | None = None,
    tasks: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    *,
    backend: str = "hf",
    batch_size: int | str = 8,
    limit: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_gen_toks: int | None = None,
    apply_chat_template: bool | None = None,
    num_fewshot: int | None = None,
    include_paths: Sequence[str | os.PathLike] = (),
    use_cache: bool = True,
    on_model: Callable[[str, ModelScores | None, str | None], None] | None = None,
    overwrite: bool = False,
    executor=None,
    resources: Mapping[str, float] | None = None,
) -> ScoreResult:
    """Score ``models`` on a named ``suite`` or a list of ``tasks``; write ``out`` if given.

    ``models``: paths or Hub ids (``"label=path"`` names a row), or a label->path
    mapping. ``device``: "cpu", "cuda", "cuda:1" (default: cuda when available).
    ``dtype``: the hf backend's torch dtype (default float32 on the CPU, auto on GPUs).
    ``max_gen_toks``/``apply_chat_template``/``num_fewshot`` override the suite.
    ``on_model(label, scores, error)`` is called as each model finishes or fails.
    ``executor`` (``rankedit.pipeline.executors``, default local) runs the models not in
    the cache, each task asking for ``resources`` (``num_cpus``, ``num_gpus``).
    Raises RankeditError for bad input up front, and after writing ``out`` when
    some models failed (the others' scores are in ``out`` and in the cache).
    An existing ``out`` is replaced only when it holds earlier scores and nothing
    else (``rankedit.files.outdir``), or with ``overwrite``.
    """
    if (suite is None) == (tasks is None):
        raise RankeditError("give exactly one of a suite (--suite NAME) or a task list (--tasks T1,T2)")
    if suite is not None:
        st = suite if isinstance(suite, Suite) else get_suite(suite)
        if include_paths:
            st = Suite(**{**st.__dict__, "include_paths": st.include_paths + tuple(Path(p) for p in include_paths)})
    else:
        st = custom_suite(list(tasks), include_paths)
    if backend not in BACKENDS:
        raise RankeditError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if limit is not None and limit < 1:
        raise RankeditError(f"--limit must be at least 1, got {limit}")
    if max_gen_toks is not None and max_gen_toks < 1:
        raise RankeditError(f"--max-gen-toks must be at least 1, got {max_gen_toks}")
    labels = model_labels(models)
    if not labels:
        raise RankeditError("no models to score")
    device = device or default_device()
    settings = Settings(
        backend=backend, batch_size=batch_size, limit=limit, device=device,
        dtype=dtype or ("float32" if device == "cpu" else "auto"),
        max_gen_toks=max_gen_toks if max_gen_toks is not None else st.max_gen_toks,
        apply_chat_template=st.apply_chat_template if apply_chat_template is None else apply_chat_template,
        num_fewshot=num_fewshot,
    )
    if backend == "vllm":
        _lm_eval_model(backend, Path("."), settings)  # fail now, not after hashing, if vllm is missing

    # everything a user can get wrong is checked before any model runs
    ckpts = {label: Checkpoint(ref) for label, ref in labels.items()}
    inputs = [ck.path for ck in ckpts.values()] + list(st.include_paths)
    if out is not None:
        check_out(out, "score", inputs, overwrite)
    for ck in ckpts.values():
        check_scorable(ck)  # finite, complete, with a tokenizer: never score random or NaN weights
    tm = task_manager(st)
    config_hash = task_config_hash(st, builtin=tm.rankedit_builtin)
    store = cache_root() / "scores"
    keys = {}
    for label, ck in ckpts.items():
        sha = model_fingerprint(ck)
        keys[label] = (sha, cache_key(sha, config_hash, settings))
    if not (use_cache and all((store / k / "results.json").is_file() for _, k in keys.values())):
        _preflight(st, tm)  # task-level problems (missing package, offline dataset): one error, before any model

    from rankedit.pipeline.executors import LocalExecutor

    ex = executor or LocalExecutor()
    settled: dict[str, ModelScores | str] = {}  # label -> scores, or why it failed

    def settle(label: str, error: BaseException | None, cached: bool) -> None:
        sha, key = keys[label]
        try:
            if error is not None:
                raise error
            raw = load_raw(store / key)  # the JSON form, identical for fresh and cached runs
            parsed = parse_results(raw)
            if not parsed:
                raise RuntimeError("lm-eval reported no numeric metric")
        except RankeditError as e:
            settled[label] = str(e)
        except ImportError as e:  # the environment, not this model: every model would fail the same way
            raise RankeditError(f"lm-eval could not run ({_first_line(e)})") from None
        except OSError as e:
            if e.errno in WRITE_ERRNOS:  # a full or read-only disk fails every model alike
                raise
            log.debug("scoring %s failed", label, exc_info=True)
            result.failures[label] = f"lm-eval failed on {ck.path}: {_first_line(e)}"
        except Exception as e:  # noqa: BLE001 - one model's failure must not lose the others
            log.debug("scoring %s failed", label, exc_info=e)
            settled[label] = f"lm-eval failed on {ckpts[label].path}: {_first_line(e)}"
        else:
            samples = raw.pop("samples", {})
            settled[label] = ModelScores(label, str(ckpts[label].path), sha, key, cached, parsed, raw, samples)
        if on_model:
            m = settled[label]
            on_model(label, m if isinstance(m, ModelScores) else None, m if isinstance(m, str) else None)

    todo: dict[str, list[str]] = {}  # cache key -> its labels: a model given twice is scored once
    for label, (_, key) in keys.items():
        if use_cache and (store / key / "results.json").is_file():
            settle(label, None, cached=True)
        else:
            todo.setdefault(key, []).append(label)
    # the workers build their own task manager; in this process the one above is reused
    items = [(str(ckpts[labs[0]].path), st, settings, str(store / key), tm if ex.in_process else None)
             for key, labs in todo.items()]
    groups = list(todo.values())
    try:
        ex.map(run_into_cache, items, **(resources or {}), stop_on=(ImportError,),
               on_done=lambda i, o: [settle(label, o.error, cached=False) for label in groups[i]])
    except ImportError as e:
        raise RankeditError(f"lm-eval could not run ({_first_line(e)})") from None
    result = ScoreResult(suite=st, settings=settings, models={})
    for label in keys:  # in the order given, however the tasks finished
        m = settled[label]
        if isinstance(m, ModelScores):
            result.models[label] = m
        else:
            result.failures[label] = m

    if out is not None:
        result.out = write_outputs(result, out, inputs=inputs, overwrite=overwrite)
    if result.failures:
        msg = "; ".join(f"{lab}: {why}" for lab, why in result.failures.items())
        kept = f" (scores of the other {len(result.models)} are in {result.out})" if result.out and result.models else ""
        raise ScoringFailed(f"{len(result.failures)} of {len(ckpts)} models failed: {msg}{kept}", result)
    return result


class ScoringFailed(RankeditError):
    """Some models could not be scored; ``.result`` holds the ones that could."""

    def __init__(self, message: str, result: ScoreResult):
        super().__init__(message)
        self.result = result


# ---- outputs --------------------------------------------------------------------------
def markdown_table(result: ScoreResult) -> str:
    lines = ["| model | task | metric | value | stderr | n |", "|---|---|---|---|---|---|"]
    for r in result.rows():
        se = "" if r["stderr"] is None else f"{r['stderr']:.4f}"
        lines.append(f"| {r['model']} | {r['task']} | {r['metric']} | {r['value']:.4f} | {se} | {r['n']} |")
    for lab, why in result.failures.items():
        lines.append(f"| {lab} | – | failed | {why} | | |")
    return "\n".join(lines) + "\n"


def write_outputs(result: ScoreResult, out: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (),
                  overwrite: bool = False) -> Path:
    """OUT/scores.json, OUT/scores.md and OUT/<label>/ (lm-eval results.json + samples_<task>.jsonl)."""
    import lm_eval

    import rankedit

    out = Path(out)
    with atomic_dir(out, kind="score", inputs=inputs, overwrite=overwrite) as tmp:
        models = {}
        for label, m in result.models.items():
            folder = _safe_dirname(label)
            save_raw({**m.raw, "samples": m.samples}, tmp / folder)
            models[label] = {"path": m.path, "sha256": m.sha256, "cache_key": m.key, "cached": m.cached,
                             "results": f"{folder}/results.json"}
        doc = {
            "scores": result.rows(),
            "suite": result.suite.name,
            "tasks": list(result.suite.tasks),
            "control_tasks": list(result.suite.control_tasks),
            "primary_metrics": {t: result.primary_metric(t) for t in result.tasks},
            "settings": asdict(result.settings),
            "models": models,
            "failures": dict(result.failures),
            "rankedit_version": getattr(rankedit, "__version__", None),
            "lm_eval_version": lm_eval.__version__,
        }
        (tmp / "scores.json").write_text(json.dumps(doc, indent=2))
        (tmp / "scores.md").write_text(markdown_table(result))
    return out.absolute()


def _safe_dirname(label: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", label).strip("._") or "model"
