"""`rankedit analyze`: the geometry of the update BASE -> TUNED, one matrix at a time.

Streams the checkpoints: each step loads one tensor from each side (plus the
other run's, if given), measures it and drops it, so memory holds a few
matrices and their decompositions whatever the model size.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import torch

from rankedit.files.atomic import atomic_dir
from rankedit.core import base_decomp
from rankedit.files.adapter import AdapterCheckpoint, open_tuned
from rankedit.files.checkpoint import Checkpoint, check_compatible
from rankedit.core.errors import RankeditError
from rankedit.core.option_rules import check_value
from rankedit.analysis.analyze_options import AnalyzeCommandOptions
from rankedit.analysis.geometry import (DEFAULT_ALPHA, DEFAULT_ATOL, DEFAULT_K, DEFAULT_Q, BaseParts, default_k,
                                        matrix_metrics, rel_update_norm)
from rankedit.analysis.interference import all_pairs, interference_summary, run_names, update_parts
from rankedit.analysis.metrics import SCALAR_METRICS
from rankedit.core.linalg import SVD
from rankedit.core.masks import Cut, bf16_unchanged, count
from rankedit.core.coverage import coverage, line as coverage_line, matrices_of
from rankedit.core.modules import EXPERT, as_linear, classify, expert_of, split_key
from rankedit.analysis.moe import moe_summary
from rankedit.files.outdir import check_out
from rankedit.core.threads import hot_path_threads, matrices_at_once, ordered_map
from rankedit.files.validate import check_inputs
from rankedit.core.device import check_device
from rankedit.core.names import ANALYSIS_METRICS, ANALYSIS_SUMMARY
from tqdm.auto import tqdm
from rankedit.analysis.plots import analysis_plots
from rankedit.analysis.routing import routing_flips
from rankedit.analysis.interference_plots import interference_plots


def validate_params(k: int, alpha: float, atol: float, q: float, device: str) -> None:
    for name, value in (("k", k), ("alpha", alpha), ("q", q)):
        check_value(AnalyzeCommandOptions, name, value, f"--{name}")
    if not atol >= 0 or math.isinf(atol):  # NaN fails every comparison
        raise RankeditError(f"--atol must be a finite number >= 0, got {atol}")
    check_device(device)


def analyze(
    base: str | Path,
    tuned: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    names: Sequence[str] | None = None,
    other_tuned: str | Path | None = None,
    k: int = DEFAULT_K,
    alpha: float = DEFAULT_ALPHA,
    atol: float = DEFAULT_ATOL,
    q: float = DEFAULT_Q,
    device: str = "cpu",
    modules: str | None = None,
    progress: bool = True,
    plots: bool = True,
    overwrite: bool = False,
    base_cache: bool = True,
    routing_prompts: str | Path | None = None,
) -> list[dict]:
    """Measure every 2-D attention/MLP matrix of the update; optionally write OUT.

    Returns one dict per matrix (the rows of ``metrics.jsonl``). With ``out``, also
    writes ``metrics.jsonl``, ``summary.json`` and PNG plots, atomically. An
    existing ``out`` is replaced only when it is an earlier analysis holding
    nothing else (``rankedit.files.outdir``), or with ``overwrite``.
    ``routing_prompts``: a text file, one prompt a line: for an MoE, the routing flip rate of base vs
    tuned on them goes into the summary (``rankedit.analysis.routing``; both models are loaded).
    ``base_cache``: take W0's decompositions from ``rankedit.core.base_decomp`` (and keep
    them there), so that further runs tuned from the same base skip them.
    ``tuned``: one run, or several runs of the same base: the first is measured as one run is, and each row
    gains ``interference`` (every pair of runs, "A|B" -> ``rankedit.analysis.interference.pair_metrics``),
    summary.json an ``interference`` block and OUT its heatmaps; ``names``: the runs' names (their folders').
    """
    validate_params(k, alpha, atol, q, device)
    runs = list(tuned) if isinstance(tuned, (list, tuple)) else [tuned]
    if not runs:
        raise RankeditError("no tuned run given")
    if names is not None and len(runs) < 2:
        raise RankeditError("--names names several tuned runs; one was given")
    tuned = runs[0]
    run_labels = run_names(runs, names) if len(runs) > 1 else None
    try:
        pattern = re.compile(modules) if modules else None
    except re.error as e:
        raise RankeditError(f"--modules is not a valid regular expression: {e}") from None
    ck0 = Checkpoint(base)
    ck1 = open_tuned(tuned, ck0)  # a LoRA adapter is read on the base, its ΔW exactly
    more = [open_tuned(r, ck0) for r in runs[1:]]
    ckpts, labels = [ck0, ck1, *more], ["base", "tuned", *(f"tuned run {n}" for n in (run_labels or [])[1:])]
    ck2 = None
    if other_tuned is not None:
        ck2 = open_tuned(other_tuned, ck0)
        ckpts.append(ck2)
        labels.append("other-tuned")
    names = check_compatible(ckpts, labels)
    inputs = [ck.path for ck in ckpts]
    if out is not None:  # before the work, not after it
        check_out(out, "analyze", inputs, overwrite)
    prompts = _read_prompts(routing_prompts) if routing_prompts is not None else None
    check_inputs(ckpts)  # whole and finite before any decomposition (remembered per file)
    model_type = ck0.model_type

    infos = {n: classify(n, ck0.info(n).shape, model_type, ck0.config) for n in names}
    shapes = {n: tuple(ck0.info(n).shape) for n in names}
    selected = [key for key in matrices_of(shapes, infos) if pattern is None or pattern.search(key)]
    if not selected:
        what = f" matching --modules {modules!r}" if modules else ""
        raise RankeditError(f"no 2-D attention, MLP, expert or mixer matrices{what} in {ck0.path}")
    if prompts is not None and not any(i.kind == EXPERT for i in infos.values()):
        raise RankeditError(f"--routing-prompts: {ck0.path} is not a mixture-of-experts model (no expert matrices)")
    by_tensor: dict[str, list[str]] = defaultdict(list)
    for key in selected:
        by_tensor[split_key(key)[0]].append(key)

    params = dict(base=str(base), tuned=str(tuned), other_tuned=None if other_tuned is None else str(other_tuned),
                  k=k, alpha=alpha, atol=atol, q=q, device=device, modules=modules, model_type=model_type)
    rows: list[dict] = []
    unchanged = total = 0
    short = max(min(shapes[split_key(key)[0]][-2:]) for key in selected)

    def one(name: str) -> tuple[int, int, list[dict]]:
        return _one_tensor(name, ck0, ck1, ck2, infos[name], by_tensor.get(name, []),
                           dict(k=k, alpha=alpha, atol=atol, q=q), device, base_cache, more, run_labels)

    with hot_path_threads("analyze", short):
        done = ordered_map(one, names, matrices_at_once("analyze", short, device))
        for u, t, found in _progress(done, progress, "analyze", total=len(names)):
            unchanged += u
            total += t
            rows.extend(found)

    chosen = set(selected)
    cov = coverage(shapes, infos, selected, copied_from=None,
                   left={key: "not matching --modules" for key in matrices_of(shapes, infos) if key not in chosen})
    logging.getLogger("rankedit").info(coverage_line(cov, "analysed"))
    if out is not None:
        summary = summarize(rows, model_sparsity=unchanged / total if total else math.nan, params=params)
        summary["coverage"] = cov
        moe = moe_summary(rows, ck0.config)
        if moe:
            if prompts is not None:
                moe["routing"] = _routing(ck0, ck1, prompts, moe["experts_per_token"] or 1)
            summary["moe"] = moe
        if isinstance(ck1, AdapterCheckpoint):
            summary["adapter"] = adapter_summary(ck1, rows)
        if run_labels:
            summary["interference"] = interference_summary(rows, dict(zip(run_labels, map(str, runs))))
        with atomic_dir(out, kind="analyze", inputs=inputs, overwrite=overwrite) as tmp:
            write_jsonl(tmp / ANALYSIS_METRICS, rows)
            (tmp / ANALYSIS_SUMMARY).write_text(dumps(summary) + "\n")
            if plots:
                analysis_plots(rows, tmp, moe=summary.get("moe"))
                if run_labels:
                    interference_plots(rows, summary["interference"], tmp)
    return rows


def _one_tensor(name: str, ck0: Checkpoint, ck1: Checkpoint, ck2: Checkpoint | None, info, keys: list[str],
                params: dict, device: str, base_cache: bool, more: list[Checkpoint] = (),
                names: list[str] | None = None) -> tuple[int, int, list[dict]]:
    """(entries unchanged in bf16, entries, metrics rows) of one tensor: a row per matrix of ``keys`` (the
    tensor itself, or experts of a fused stack; none: not measured). ``more``: the further tuned runs, whose
    interference with ``ck1`` and each other each row gains (run names ``names``)."""
    w0 = ck0.get(name, check_finite=True)
    w1 = ck1.get(name, check_finite=True)
    w2 = ck2.get(name, check_finite=True) if ck2 is not None else None
    ws = [ck.get(name, check_finite=True) for ck in more] if keys else []
    unchanged = count(bf16_unchanged(w0, w1)) if w0.is_floating_point() else count(w0 == w1)
    rows = []
    for key in keys:
        e = split_key(key)[1]
        pick = (lambda t: t) if e is None else (lambda t: t[e])  # noqa: E731
        a0, a1 = (as_linear(pick(w), info).to(device) for w in (w0, w1))
        a2 = as_linear(pick(w2), info).to(device) if w2 is not None else None
        key_, base = _cached_base_parts(a0, params["k"], params["alpha"], device) if base_cache else (None, None)
        on_base = (lambda parts, c=key_: base_decomp.store_parts(c, _parts_tensors(parts))
                   ) if key_ is not None and base is None else None
        eig_key, eig0 = base_decomp.run_eigh(a0, device)  # made by an earlier analysis of this run
        on_eig0 = (lambda eig, c=eig_key, w=a0: base_decomp.keep_eigh(c, w, eig))
        # a LoRA adapter's ΔW is scale·B·A itself (float64), not the rounded difference of merged weights
        lora = ck1.lora.get(name) if isinstance(ck1, AdapterCheckpoint) and e is None else None
        dw = _exact_delta(ck1, name, info, e, device)
        eig: list = []
        m = matrix_metrics(a0, a1, w_other=a2, base=base, on_base=on_base, dw=dw, eig0=eig0, on_eig0=on_eig0,
                           **params, on_update=eig.append if more else None)
        row = {"name": key, "layer": info.layer, "module": info.module, "kind": info.kind, "shape": list(a0.shape),
               **_clean(m)}
        if isinstance(ck1, AdapterCheckpoint):
            row["lora_r"] = lora.r if lora is not None else 0  # the rank bound: rank(ΔW) <= r by construction
        expert = expert_of(key, info)
        if expert is not None:
            row["expert"] = expert
        # ‖ΔW‖², what the MoE shares sum (rankedit.analysis.moe)
        row["update_norm_sq"] = float(torch.linalg.vector_norm((a1.double() - a0.double())) ** 2)
        if more:  # the first run's update decomposed once, by its metrics; each further run's here
            parts = [update_parts(a0, a1, params["k"], dw=dw, eig=eig[0])]
            parts += [update_parts(a0, as_linear(pick(w), info).to(device), params["k"],
                                   dw=_exact_delta(ck, name, info, e, device)) for ck, w in zip(more, ws)]
            row["interference"] = _clean(all_pairs(parts, names))
        rows.append(row)
    return unchanged, w0.numel(), rows


def _exact_delta(ck: Checkpoint, name: str, info, expert: int | None, device: str) -> torch.Tensor | None:
    """A LoRA adapter's ΔW = scale·B·A (float64, exact) for a tensor it targets; None otherwise."""
    if not isinstance(ck, AdapterCheckpoint) or expert is not None or name not in ck.lora:
        return None
    return as_linear(ck.delta(name), info).to(device)


def _parts_tensors(p: BaseParts) -> dict[str, torch.Tensor]:
    cpu = {"s": p.s, "U": p.svd.U, "S": p.svd.S, "V": p.svd.V}
    out = {n: t.detach().to("cpu").contiguous() for n, t in cpu.items()}
    out["norm"] = torch.tensor([p.norm], dtype=torch.float64)
    out["thresholds"] = torch.tensor([p.principal.threshold, p.low.threshold], dtype=torch.float64)
    out["ties"] = torch.tensor([p.principal.ties, p.low.ties], dtype=torch.int64)
    return out


def _cached_base_parts(w0: torch.Tensor, k: int, alpha: float, device: str) -> tuple[str, BaseParts | None]:
    """(key, W0's parts from ``rankedit.core.base_decomp``'s cache, or None when this very matrix was not
    seen before at these settings). ``w0`` is in (out, in) layout as the metrics see it (on any device). On
    a miss ``matrix_metrics`` computes the parts, from the W0 decomposition it makes anyway."""
    shape = (int(w0.shape[0]), int(w0.shape[1]))
    kk = default_k(shape, k)
    key = base_decomp.parts_key(w0, kk, alpha, device)
    t = base_decomp.load_parts(key, shape, kk, device)
    if t is None:
        return key, None
    thr, ties = t["thresholds"].tolist(), t["ties"].tolist()
    return key, BaseParts(t["s"], SVD(t["U"], t["S"], t["V"]), float(t["norm"][0]),
                          Cut(thr[0], int(ties[0])), Cut(thr[1], int(ties[1])))


def _read_prompts(path) -> list[str]:
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise RankeditError(f"--routing-prompts: cannot read {path} ({e.__class__.__name__})") from None
    if not lines:
        raise RankeditError(f"--routing-prompts: {path} holds no prompt (one a line)")
    return lines


def _routing(ck0: Checkpoint, ck1: Checkpoint, prompts: list[str], k: int) -> dict:
    """Base vs tuned routing on the prompts, tokenized with the base's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ck0.path), trust_remote_code=False)
    ids = [tok(p)["input_ids"] for p in prompts]
    return routing_flips(ck0.path, ck1.path, [i for i in ids if i], k)


def _matrix_names(ck: Checkpoint, names: list[str], infos: dict | None = None) -> list[str]:
    """The 2-D matrices among ``names`` (attention, MLP, expert, router, shared expert, mixer)."""
    infos = infos or {n: classify(n, ck.info(n).shape, ck.model_type, ck.config) for n in names}
    return [n for n in names if infos[n].is_matrix and len(ck.info(n).shape) == 2]


def _progress(items: Iterable, enabled: bool, desc: str, total: int | None = None) -> Iterable:
    if not enabled:
        return items

    return tqdm(items, desc=desc, unit="tensor", leave=False, total=total)


# ---- summaries -------------------------------------------------------------------------------

def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def mean_metrics(rows: list[dict]) -> dict:
    keys = [k for k in SCALAR_METRICS if any(k in r for r in rows)]
    return {k: _mean([r.get(k) for r in rows]) for k in keys}


def summarize(rows: list[dict], model_sparsity: float, params: dict) -> dict:
    """Means of each metric over all matrices, by kind, by module and by layer."""
    groups: dict[str, dict] = {}
    for key in ("kind", "module", "layer"):
        buckets: dict = defaultdict(list)
        for r in rows:
            buckets[r[key]].append(r)
        order = sorted(buckets, key=lambda v: (v is None, v if not isinstance(v, str) else 0, str(v)))
        groups[f"by_{key}"] = {str(v): mean_metrics(buckets[v]) for v in order}
    return {
        "params": params,
        "n_matrices": len(rows),
        "model": {"sparsity_bf16": model_sparsity},
        "mean": mean_metrics(rows),
        **groups,
    }


def adapter_summary(ck: AdapterCheckpoint, rows: list[dict]) -> dict:
    """What a LoRA-trained update is by construction: rank(ΔW) <= r on each targeted matrix, 0 elsewhere."""
    over = [r["name"] for r in rows if r.get("rank") is not None and r["rank"] > r.get("lora_r", 0)]
    return {"path": str(ck.path), "peft_type": "LORA", "r_max": ck.max_rank,
            "targeted_matrices": sum(1 for r in rows if r.get("lora_r")),
            "rank_bound": "rank <= r by construction (ΔW = scale·B·A)",
            "bound_holds": not over, "over_bound": over}


def _clean(obj):
    """NaN/Inf become null: JSON has no NaN, and 'undefined' is what they mean here."""
    if isinstance(obj, float):
        return None if (math.isnan(obj) or math.isinf(obj)) else obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj) -> str:
    return json.dumps(_clean(obj), indent=2, allow_nan=False)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(_clean(r), allow_nan=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def update_size(base: str | Path, tuned: str | Path) -> float:
    """Mean over attention/MLP matrices of ‖W1 − W0‖_F / ‖W0‖_F (the `rel_update_norm` mean), cheaply.

    No decomposition: used to find, among a run's checkpoints, the one whose
    update is as large as another run's (comparisons at matched update size).
    """
    ck0 = Checkpoint(base)
    ck1 = open_tuned(tuned, ck0)
    names = check_compatible([ck0, ck1], ["base", "tuned"])
    vals = [rel_update_norm(ck0.get(n), ck1.get(n)) for n in _matrix_names(ck0, names)]
    good = [v for v in vals if not math.isnan(v)]
    if not good:
        raise RankeditError(f"no 2-D attention or MLP matrices in {ck0.path}")
    return sum(good) / len(good)
