"""The size-vs-gain frontier: what each edit costs to store against how much of the gain it keeps.

Size is the bytes of the edit's smallest faithful artifact (LoRA factors for
rank-k, kept values and their positions for masks, the full delta for dense
edits). The manifest states it when the build recorded it
(``summary.stored_bytes`` and ``summary.bf16_delta_bytes``); otherwise it is
computed here from the edit's record (``Edit.storage``) and the base
checkpoint's matrix shapes and dtypes. The yardstick is
the bf16 delta of the same matrices, 2·Σ m·n bytes.

An edit is Pareto-optimal on a task when no other edit measured against the
same run has smaller-or-equal size and higher-or-equal retention, one of them
strictly. Definitions in docs/science.md, "The size-vs-gain frontier".

Bytes and R belong to one object: the checkpoint that was scored is the edit as written
(``round(W0 + E)`` in the checkpoint's dtype), the artifact counted rebuilds exactly that
checkpoint given the base (its values in the written dtype, LoRA factors in float32), and each
row carries that object's ``energy_kept_stored`` and ``stored_delta_error`` beside them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence
from rankedit.edits.registry import EDITS, parse_params
from rankedit.edits.storage import MatrixSize
from rankedit.files.checkpoint import Checkpoint

BF16_BYTES = 2
MANIFEST_KEYS = ("stored_bytes", "bf16_delta_bytes")  # the build's own size facts in a manifest's summary


def delta_bytes(shapes: Mapping[str, tuple[int, int]]) -> int:
    """Bytes of the bf16 delta of these matrices: 2 · Σ m·n."""
    return BF16_BYTES * sum(m * n for m, n in shapes.values())


def computed_storage(method: str, params: Mapping[str, Any], matrices: Sequence[Mapping[str, Any]],
                     facts: Mapping[str, tuple[tuple[int, int], int]]) -> tuple[Optional[int], Optional[str]]:
    """Σ over the edited matrices of the edit's stored values × the bytes of one value (the checkpoint's
    dtype), and None or why it could not be computed. ``facts``: matrix name -> ((m, n), bytes per value)."""
    edit = EDITS.get(method)
    if edit is None:
        return None, f"edit {method!r} is not known here"
    if not matrices:
        return None, "the manifest lists no matrices"
    fields = edit.params.model_fields
    p = parse_params(edit, {k: v for k, v in params.items() if k in fields})
    total = 0
    for mat in matrices:
        if mat["name"] not in facts:
            return None, f"{mat['name']} is not a matrix of the base checkpoint"
        shape, nbytes = facts[mat["name"]]
        try:
            total += matrix_bytes(edit, p, shape, nbytes, mat.get("density"))
        except ValueError as e:
            return None, str(e)
    return total, None


def matrix_bytes(edit, p, shape: tuple[int, int], nbytes: int, density: Optional[float]) -> int:
    """One matrix's artifact by the edit's record (``rankedit.edits.storage``), in bytes."""
    return edit.storage(p, MatrixSize(shape, nbytes, density)).bytes


def edit_size(method: str, params: Mapping[str, Any], summary: Mapping[str, Any],
              matrices: Sequence[Mapping[str, Any]], facts: Mapping[str, tuple[tuple[int, int], int]]) -> dict:
    """The edit's size facts for the report: the manifest's when it states them, else computed."""
    stored, bf16 = (summary.get(k) for k in MANIFEST_KEYS)
    if stored is not None and bf16:
        size, delta, source, why = stored, bf16, "manifest", None
    else:
        size, why = computed_storage(method, params, matrices, facts)
        names = [m["name"] for m in matrices]
        delta = delta_bytes({n: facts[n][0] for n in names}) if names and all(n in facts for n in names) else None
        source = "computed" if size is not None else None
    return {"storage_bytes": size, "delta_bytes": delta,
            "storage_ratio": size / delta if size is not None and delta else None,
            "storage_source": source, "storage_reason": why}


def matrix_facts(base: str, names: Sequence[str]) -> dict[str, tuple[tuple[int, int], int]]:
    """Shape and bytes per value of each named 2-D tensor of the base checkpoint (its header only)."""
    import torch

    ckpt = Checkpoint(base)
    have = set(ckpt.names)
    out = {}
    for n in names:
        if n in have:
            info = ckpt.info(n)
            if len(info.shape) == 2:
                out[n] = ((int(info.shape[0]), int(info.shape[1])), getattr(torch, info.dtype).itemsize)
    return out


def _finite(x) -> Optional[float]:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def pareto_flags(points: Sequence[tuple[Optional[float], Optional[float]]]) -> list[Optional[bool]]:
    """For each (size, retention): True when no other point has size ≤ and retention ≥, one strictly;
    None when its size or retention is missing or not finite (such a point dominates nothing)."""
    ok = [(_finite(s), _finite(r)) for s, r in points]
    flags: list[Optional[bool]] = []
    for i, (s, r) in enumerate(ok):
        if s is None or r is None:
            flags.append(None)
            continue
        dominated = any(j != i and s2 is not None and r2 is not None and s2 <= s and r2 >= r and (s2 < s or r2 > r)
                        for j, (s2, r2) in enumerate(ok))
        flags.append(not dominated)
    return flags


def mark_pareto(rows: list[dict]) -> list[dict]:
    """Set each row's ``pareto`` within its (task, run measured against) group."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["of"]), []).append(r)
    for group in groups.values():
        for r, flag in zip(group, pareto_flags([(r["storage_bytes"], r["retention"]) for r in group])):
            r["pareto"] = flag
    return rows


def frontier_rows(edits: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                  tasks: Sequence[str], control_tasks: Sequence[str]) -> list[dict]:
    """One row per (edit, trained task) of a single-run report: size, R with its interval, forgetting on
    each control task, Pareto-optimal or not. ``rows``: the report's edit rows (``rows.edit_rows``)."""
    by = {(r["edit"], r["task"]): r for r in rows}
    out = []
    for e in edits:
        forgetting = {t: {"value": by[(e["name"], t)]["forgetting"], "ci_low": by[(e["name"], t)]["forgetting_ci_low"],
                          "ci_high": by[(e["name"], t)]["forgetting_ci_high"]}
                      for t in control_tasks if (e["name"], t) in by}
        for task in (t for t in tasks if t not in control_tasks):
            r = by.get((e["name"], task), {})
            out.append({"edit": e["name"], "method": e["method"], "of": e["of"], "control_of": e.get("control_of"),
                        "control": bool(e.get("control_of")), "task": task,
                        "storage_bytes": e.get("storage_bytes"), "storage_ratio": e.get("storage_ratio"),
                        "retention": r.get("retention"), "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"),
                        "retention_defined": r.get("retention_defined"), "gain": r.get("gain"),
                        "gain_ci_low": r.get("gain_ci_low"), "gain_ci_high": r.get("gain_ci_high"),
                        "forgetting": forgetting, "pareto": None,
                        # the edit as written, the object that R was measured on and whose bytes are counted
                        **{k: e.get(k) for k in ("energy_kept_stored", "stored_delta_error")}})
    return mark_pareto(out)


def with_exact_patch(frontier: list[dict], references: Sequence[Mapping[str, Any]], size: Mapping[str, Any],
                     tasks: Sequence[str], control_tasks: Sequence[str]) -> list[dict]:
    """The frontier with the lossless point: the tuned run as an exact patch of its base (``rankedit patch``;
    ``size``: ``rankedit.files.patch.patch_size``). Its rebuild is the tuned model bit for bit, so it is scored
    as the tuned model: R = 1 with the interval [1, 1] wherever the tuned gain is significant, the tuned model's
    forgetting; its ratio over the same bf16 ΔW as the edits'. The Pareto flags are marked again with it."""
    trained = [t for t in tasks if t not in control_tasks]
    ref = {(r["model"], r["task"]): r for r in references}
    # forgetting is s_base - s_model (points lost): the tuned run's gain on a control task, negated
    forgetting = {t: {"value": -ref[("tuned", t)]["gain"], "ci_low": -ref[("tuned", t)]["ci_high"],
                      "ci_high": -ref[("tuned", t)]["ci_low"]}
                  for t in control_tasks if ("tuned", t) in ref and ref[("tuned", t)]["gain"] is not None}
    delta = next((r["storage_bytes"] / r["storage_ratio"] for r in frontier if r.get("storage_ratio")), None)
    rows = [dict(r) for r in frontier]
    for task in trained:
        g = ref.get(("tuned", task), {})
        defined = bool(g.get("significant")) and (g.get("gain") or 0) > 0
        rows.append({"edit": "exact-patch", "method": "patch", "of": "tuned", "control_of": None, "control": False,
                     "task": task, "storage_bytes": size["patch_bytes"],
                     "storage_ratio": size["patch_bytes"] / delta if delta else None,
                     "retention": 1.0 if defined else None, "ci_low": 1.0 if defined else None,
                     "ci_high": 1.0 if defined else None, "retention_defined": defined,
                     "gain": g.get("gain"), "gain_ci_low": g.get("ci_low"), "gain_ci_high": g.get("ci_high"),
                     "forgetting": forgetting, "pareto": None, "lossless": True, "scored_as": "tuned",
                     "energy_kept_stored": 1.0, "stored_delta_error": 0.0})
    for r in rows:
        r["pareto"] = None
    return mark_pareto(rows)


def across_frontier_rows(edits: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                         reports: Mapping[str, dict]) -> list[dict]:
    """The frontier over runs: each edit's mean size over the runs (a bf16 mask's differs run to run) against
    the mean retention R̄ with its hierarchical interval, and the mean forgetting. ``rows``: ``across_rows``."""
    sizes: dict[str, list] = {}
    for rep in reports.values():
        for e in rep["edits"]:
            sizes.setdefault(e["name"], []).append((e.get("storage_bytes"), e.get("storage_ratio")))
    by = {(r["edit"], r["task"]): r for r in rows}
    first = next(iter(reports.values()))
    out = []
    for e in edits:
        got = sizes.get(e["name"], [])
        complete = len(got) == len(reports) and all(b is not None and q is not None for b, q in got)
        forgetting = {t: {"value": by[(e["name"], t)]["mean"], "ci_low": by[(e["name"], t)]["ci_low"],
                          "ci_high": by[(e["name"], t)]["ci_high"]}
                      for t in first["control_tasks"] if (e["name"], t) in by}
        for task in (t for t in first["tasks"] if t not in first["control_tasks"]):
            r = by.get((e["name"], task), {})
            out.append({"edit": e["name"], "method": e["method"], "of": e["of"], "control_of": e.get("control_of"),
                        "control": bool(e.get("control_of")), "task": task,
                        "storage_bytes": sum(b for b, _ in got) / len(got) if complete else None,
                        "storage_ratio": sum(q for _, q in got) / len(got) if complete else None,
                        "storage_bytes_range": [min(b for b, _ in got), max(b for b, _ in got)] if complete else None,
                        "retention": r.get("mean"), "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"),
                        "retention_defined": r.get("defined"), "gain": None, "gain_ci_low": None,
                        "gain_ci_high": None, "forgetting": forgetting, "pareto": None})
    return mark_pareto(out)


# ---- Markdown ------------------------------------------------------------------------------
def _bytes(b) -> str:
    return "–" if b is None else f"{b:,.0f}"


def _iv(v, lo, hi, pct: bool = False) -> str:
    if v is None:
        return "–"
    if pct:
        return f"{100 * v:+.1f}" + ("" if lo is None or hi is None else f" [{100 * lo:+.1f}, {100 * hi:+.1f}]")
    return f"{v:.2f}" + ("" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]")


def frontier_markdown(frontier: Sequence[Mapping[str, Any]], control_tasks: Sequence[str],
                      r_name: str = "R") -> list[str]:
    """The frontier table per trained task, smallest edit first: size, ratio, R, forgetting, Pareto, control."""
    if not frontier:
        return []
    lines = ["", "## Size against gain: the frontier", "",
             "Size: bytes of the edit's smallest faithful artifact (LoRA factors, kept values and positions, or "
             "the full delta), and its ratio to the bf16 delta ΔW of the same matrices (2·Σ m·n bytes). "
             f"Pareto: no other edit of the same run is as small or smaller with {r_name} as high or higher, one "
             f"strictly (on the point estimates; edits with {r_name} undefined are not ranked)."]
    ctl = [t for t in control_tasks if any(t in r["forgetting"] for r in frontier)]
    for task in dict.fromkeys(r["task"] for r in frontier):
        rows = sorted((r for r in frontier if r["task"] == task),
                      key=lambda r: (r["storage_bytes"] is None, r["storage_bytes"] or 0, r["edit"]))
        head = ["edit", "bytes", "× bf16 ΔW", f"{r_name} {task} [95%]"] + [f"forgetting {t}" for t in ctl] + \
            ["Pareto", "control"]
        lines += ["", f"### {task}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            name = r["edit"] + (" [of SFT]" if r["of"] == "sft" else "") + \
                (" (lossless: the tuned model bit for bit, its scores)" if r.get("lossless") else "")
            ret = _iv(r["retention"], r["ci_low"], r["ci_high"]) if r["retention"] is not None else \
                ("undefined" if r["retention_defined"] is False else "–")
            cells = [name, _bytes(r["storage_bytes"]),
                     "–" if r["storage_ratio"] is None else f"{r['storage_ratio']:.3g}", ret]
            for t in ctl:
                f = r["forgetting"].get(t)
                cells.append(_iv(f["value"], f["ci_low"], f["ci_high"], pct=True) if f else "–")
            cells += [{True: "**yes**", False: "no", None: "–"}[r["pareto"]],
                      f"of {r['control_of']}" if r["control"] else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return lines
