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

import logging
import os
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

from rankedit.core.errors import RankeditError
from rankedit.core.option_rules import check_value, default
from rankedit.scoring.score_options import ScoreOptions
from rankedit.files.tempfiles import WRITE_ERRNOS
from rankedit.core.cache_dir import cache_root
from rankedit.files.adapter import is_adapter
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.outdir import check_out
from rankedit.files.validate import check_scorable
from rankedit.scoring.data_dir import with_data_dir
from rankedit.scoring.cache_keys import cache_key, model_fingerprint, task_config_hash
from rankedit.scoring.failures import ScoringFailed, first_line
from rankedit.scoring.lm_eval_run import BACKENDS, lm_eval_model, run_into_cache
from rankedit.scoring.score_files import write_outputs
from rankedit.scoring.profiles import resolve
from rankedit.scoring.raw_files import load_raw
from rankedit.scoring.sampled_logs import attach
from rankedit.scoring.results import ModelScores, ScoreResult, Settings, parse_results
from rankedit.scoring.suites import Suite, custom_suite, get_suite
from rankedit.scoring.lm_eval_tasks import preflight, task_manager
from rankedit.core.names import LM_EVAL_RESULTS
from rankedit.core.executors import LocalExecutor

log = logging.getLogger(__name__)


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


def task_defaults(st: Suite, profile, samples, temperature, top_p, seed) -> tuple:
    """The suite's per-task default profiles, when the run names no profile and no sampling value."""
    if profile is not None or any(v is not None for v in (samples, temperature, top_p, seed)):
        return ()
    return tuple((task, st.profiles[name]) for task, name in sorted(st.task_profiles.items()))


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def score(
    models: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
    suite: str | Suite | None = None,
    tasks: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    *,
    backend: str = default(ScoreOptions, "backend"),
    batch_size: int | str = default(ScoreOptions, "batch_size"),
    limit: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_gen_toks: int | None = None,
    apply_chat_template: bool | None = None,
    num_fewshot: int | None = None,
    profile: str | None = None,
    samples: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    include_paths: Sequence[str | os.PathLike] = (),
    data_dir: str | os.PathLike | None = None,
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
    Greedy by default; ``profile`` (a suite's named sampled profile, e.g. reasoning's
    "avg16") or any of ``samples``/``temperature``/``top_p``/``seed`` score n sampled
    generations per problem (``rankedit.scoring.profiles``): each model then gets
    avg@n (the primary metric, per problem for retention), pass@k and maj@k per task.
    Every model gets the truncation counts of its generations per task.
    ``data_dir``: read every Hub dataset of the tasks from local copies (``rankedit.scoring.data_dir``).
    ``on_model(label, scores, error)`` is called as each model finishes or fails.
    ``executor`` (``rankedit.core.executors``, default local) runs the models not in
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
    if data_dir is not None:  # every Hub dataset of the suite's tasks read from local copies
        st = with_data_dir(st, data_dir)
    if backend not in BACKENDS:
        raise RankeditError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    for name, value in (("batch_size", batch_size), ("limit", limit), ("max_gen_toks", max_gen_toks)):
        check_value(ScoreOptions, name, value, "--" + name.replace("_", "-"))
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
        sampling=resolve(st.profiles, profile, samples=samples, temperature=temperature, top_p=top_p, seed=seed),
        task_sampling=task_defaults(st, profile, samples, temperature, top_p, seed),
    )
    if backend == "vllm":
        lm_eval_model(backend, Path("."), settings)  # fail now, not after hashing, if vllm is missing

    # everything a user can get wrong is checked before any model runs
    for label, ref in labels.items():
        if is_adapter(ref):
            raise RankeditError(f"{ref} is a LoRA adapter, not a model: score it in a plan (rankedit run merges it "
                                f"on the plan's base) or merge it first (rankedit edit scale BASE {ref} --factor 1 "
                                "--rest tuned -o MERGED)")
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
    loaded = None
    if settings.sampling or settings.task_sampling or not (use_cache and all((store / k / LM_EVAL_RESULTS).is_file() for _, k in keys.values())):
        # task-level problems (missing package, offline dataset): one error, before any model;
        # a sampled run re-scores each generation with the built tasks
        loaded = preflight(st, tm)

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
            ms = ModelScores(label, str(ckpts[label].path), sha, key, cached, parsed, raw, raw.pop("samples", {}))
            attach(ms, st.primary_metrics, settings.samples_per_task(), loaded and loaded["tasks"])
        except RankeditError as e:
            settled[label] = str(e)
        except ImportError as e:  # the environment, not this model: every model would fail the same way
            raise RankeditError(f"lm-eval could not run ({first_line(e)})") from None
        except OSError as e:
            if e.errno in WRITE_ERRNOS:  # a full or read-only disk fails every model alike
                raise
            log.debug("scoring %s failed", label, exc_info=True)
            settled[label] = f"lm-eval failed on {ckpts[label].path}: {first_line(e)}"
        except Exception as e:  # noqa: BLE001 - one model's failure must not lose the others
            log.debug("scoring %s failed", label, exc_info=e)
            settled[label] = f"lm-eval failed on {ckpts[label].path}: {first_line(e)}"
        else:
            settled[label] = ms
        if on_model:
            m = settled[label]
            on_model(label, m if isinstance(m, ModelScores) else None, m if isinstance(m, str) else None)

    todo: dict[str, list[str]] = {}  # cache key -> its labels: a model given twice is scored once
    for label, (_, key) in keys.items():
        if use_cache and (store / key / LM_EVAL_RESULTS).is_file():
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
        raise RankeditError(f"lm-eval could not run ({first_line(e)})") from None
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
