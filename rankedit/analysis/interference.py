"""Interference between the updates of several runs tuned from one base, measured before any merge.

Pure functions of tensors; docs/science.md ("Interference between runs") defines every figure.
Each run's update is reduced once per matrix to its ``UpdateParts`` (dW, its bf16 update mask,
its numerical rank and top-k singular triplets: the same decomposition analyze's own metrics
make, passed on through ``matrix_metrics(on_update=...)``), and each pair of runs to the
figures of ``pair_metrics``. Every figure stands beside its null: the value a random pair of
the same shapes and sparsity has, in closed form. ``pooled`` sums a group of matrices into
one figure per quantity (the overall, per-kind, per-module and per-layer ones).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from rankedit.analysis.geometry import default_k, principal_angles_deg
from rankedit.core.errors import RankeditError
from rankedit.core.linalg import SVD, gram64, gram_eigh, numerical_rank, triplets_from_eigh
from rankedit.core.masks import bf16_update_mask, count

NAN = float("nan")
SEP = "|"  # pairs are keyed "A|B", A the run given first

# The figures of one pair, each followed by its null (``pair_metrics``), in the order the summaries write them.
FIGURES = ("cosine", "subspace_overlap_left", "subspace_overlap_right", "jaccard", "sign_conflict", "rank1_overlap")
# The counts a group of matrices sums (``pooled``).
COUNTS = ("dot", "norm_sq_a", "norm_sq_b", "numel", "changed_a", "changed_b", "shared", "conflicting")


class UpdateParts(NamedTuple):
    """What the pair figures need of one run's update of one matrix."""
    d: torch.Tensor  # dW = W1 - W0, float64 (of the float32 values, or a LoRA adapter's exact scale·B·A)
    mask: torch.Tensor  # the bf16 update mask M (``rankedit.core.masks.bf16_update_mask``)
    norm_sq: float  # ‖dW‖_F²
    rank: int  # numerical rank of dW (analyze's `rank`)
    svd: SVD  # dW's top-k triplets, float64, k = analyze's k for this shape


def update_parts(w0: torch.Tensor, w1: torch.Tensor, k: int, dw: torch.Tensor | None = None,
                 eig: tuple[torch.Tensor, torch.Tensor] | None = None) -> UpdateParts:
    """One run's ``UpdateParts``. ``dw``: the update when known exactly (a LoRA adapter's); ``eig``: dW's Gram
    eigenpairs when analyze's metrics made them (``gram_eigh`` of the short side's Gram, as ``gram64`` forms it)."""
    if w0.ndim != 2 or w0.shape != w1.shape:
        raise ValueError(f"need two 2-D matrices of one shape, got {tuple(w0.shape)} and {tuple(w1.shape)}")
    shape = (int(w0.shape[0]), int(w0.shape[1]))
    d = dw.double() if dw is not None else w1.float().double() - w0.float().double()
    s, vecs = gram_eigh(gram64(d)[1]) if eig is None else eig
    flat = d.reshape(-1)
    return UpdateParts(d, bf16_update_mask(w0, w1), float(torch.dot(flat, flat)), numerical_rank(s, shape),
                       triplets_from_eigh(d, s, vecs, default_k(shape, k)))


def mean_abs_cos(m: int) -> float:
    """E|x·u| for a fixed unit x and u uniform on the unit sphere of R^m: Γ(m/2) / (√π Γ((m+1)/2))."""
    return math.exp(math.lgamma(m / 2) - math.lgamma((m + 1) / 2)) / math.sqrt(math.pi)


def jaccard_null(changed_a: int, changed_b: int, numel: int) -> float:
    """|A ∩ B| / |A ∪ B| in expected counts for masks of these sizes at independent uniform positions:
    p q / (p + q - p q) with p, q the two densities (NaN when both masks are empty)."""
    inter = changed_a * changed_b / numel
    union = changed_a + changed_b - inter
    return NAN if union == 0 else inter / union


def _ratio(num: float, den: float) -> float:
    return NAN if den == 0 else num / den


def pair_metrics(a: UpdateParts, b: UpdateParts) -> dict:
    """The interference of two updates of one matrix, each figure beside its null, plus the counts ``pooled`` sums."""
    if a.d.shape != b.d.shape:
        raise ValueError(f"updates of shapes {tuple(a.d.shape)} and {tuple(b.d.shape)}")
    m, n = (int(x) for x in a.d.shape)
    numel = m * n
    dot = float(torch.dot(a.d.reshape(-1), b.d.reshape(-1)))
    # subspaces: at most the rank of either update (beyond it a top-k "subspace" is rounding noise)
    k = min(a.svd.U.shape[1], a.rank, b.rank)
    if k >= 1:
        ul, ur = (x.svd.U[:, :k] for x in (a, b))
        vl, vr = (x.svd.V[:, :k] for x in (a, b))
        overlap_l = float((ul.T @ ur).pow(2).sum()) / k
        overlap_r = float((vl.T @ vr).pow(2).sum()) / k
        angles_l, angles_r = ([float(t) for t in principal_angles_deg(*p)] for p in ((ul, ur), (vl, vr)))
        rank1 = abs(float(ul[:, 0] @ ur[:, 0])) * abs(float(vl[:, 0] @ vr[:, 0]))
    else:
        overlap_l = overlap_r = rank1 = NAN
        angles_l, angles_r = [], []
    both = a.mask & b.mask
    shared = count(both)
    conflicting = count(both & (a.d.sign() * b.d.sign() < 0))
    changed_a, changed_b = count(a.mask), count(b.mask)
    return {
        "cosine": _ratio(dot, math.sqrt(a.norm_sq * b.norm_sq)),
        "cosine_null": 0.0,
        "cosine_null_std": 1 / math.sqrt(numel),
        "subspace_overlap_left": overlap_l, "subspace_overlap_left_null": k / m if k else NAN,
        "subspace_overlap_right": overlap_r, "subspace_overlap_right_null": k / n if k else NAN,
        "angles_left_deg": angles_l, "angles_right_deg": angles_r, "k": k,
        "jaccard": _ratio(shared, changed_a + changed_b - shared),
        "jaccard_null": jaccard_null(changed_a, changed_b, numel),
        "sign_conflict": _ratio(conflicting, shared), "sign_conflict_null": 0.5 if shared else NAN,
        "rank1_overlap": rank1, "rank1_overlap_null": mean_abs_cos(m) * mean_abs_cos(n) if k else NAN,
        "dot": dot, "norm_sq_a": a.norm_sq, "norm_sq_b": b.norm_sq, "numel": numel,
        "changed_a": changed_a, "changed_b": changed_b, "shared": shared, "conflicting": conflicting,
    }


def pairs_of(names: Sequence[str]) -> list[tuple[int, int, str]]:
    """(i, j, "A|B") for every pair of runs, in the order given."""
    return [(i, j, f"{names[i]}{SEP}{names[j]}") for i, j in combinations(range(len(names)), 2)]


def all_pairs(parts: Sequence[UpdateParts], names: Sequence[str]) -> dict[str, dict]:
    """``pair_metrics`` of every pair of runs of one matrix, keyed "A|B"."""
    return {key: pair_metrics(parts[i], parts[j]) for i, j, key in pairs_of(names)}


def _defined(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def pooled(figures: list[dict]) -> dict:
    """One group of matrices' figures from their ``pair_metrics``: the cosine, Jaccard and sign conflict from
    summed inner products, norms and counts (as if the group were one long vector), the subspace and rank-1
    overlaps (each matrix's own directions) as means over the matrices where they are defined; nulls alike."""
    tot = {c: sum(f[c] for f in figures) for c in COUNTS}
    both = tot["norm_sq_a"] * tot["norm_sq_b"]
    null_var = sum(f["norm_sq_a"] * f["norm_sq_b"] / f["numel"] for f in figures)
    union = tot["changed_a"] + tot["changed_b"] - tot["shared"]
    inter_null = sum(f["changed_a"] * f["changed_b"] / f["numel"] for f in figures)
    out = {
        "cosine": _ratio(tot["dot"], math.sqrt(both)),
        "cosine_null": 0.0,
        "cosine_null_std": NAN if both == 0 else math.sqrt(null_var / both),
    }
    for fig in ("subspace_overlap_left", "subspace_overlap_right"):
        out.update(_mean_with_null(figures, fig))
    out["jaccard"] = _ratio(tot["shared"], union)
    out["jaccard_null"] = _ratio(inter_null, tot["changed_a"] + tot["changed_b"] - inter_null)
    out["sign_conflict"] = _ratio(tot["conflicting"], tot["shared"])
    out["sign_conflict_null"] = 0.5 if tot["shared"] else NAN
    out.update(_mean_with_null(figures, "rank1_overlap"))
    out["matrices"] = len(figures)
    out.update({c: tot[c] for c in COUNTS})
    return out


def _mean_with_null(figures: list[dict], fig: str) -> dict:
    kept = [f for f in figures if _defined(f[fig])]
    if not kept:
        return {fig: NAN, f"{fig}_null": NAN}
    return {fig: sum(f[fig] for f in kept) / len(kept), f"{fig}_null": sum(f[f"{fig}_null"] for f in kept) / len(kept)}


def interference_summary(rows: list[dict], runs: dict[str, str]) -> dict:
    """The ``interference`` block of summary.json from analyze's rows (each with ``interference``: "A|B" ->
    ``pair_metrics``): per pair, the pooled figures overall, by kind, by module and by layer."""
    pairs = {}
    for _, _, key in pairs_of(list(runs)):
        groups: dict = {"overall": pooled([r["interference"][key] for r in rows])}
        for by in ("kind", "module", "layer"):
            buckets: dict = defaultdict(list)
            for r in rows:
                buckets[r[by]].append(r["interference"][key])
            order = sorted(buckets, key=lambda v: (v is None, v if not isinstance(v, str) else 0, str(v)))
            groups[f"by_{by}"] = {str(v): pooled(buckets[v]) for v in order}
        pairs[key] = groups
    return {"runs": dict(runs), "definitions": "docs/science.md, Interference between runs", "pairs": pairs}


def run_names(paths: Sequence[str | Path], names: Sequence[str] | None = None) -> list[str]:
    """The name of each tuned run: ``names`` as given, or the last part of its folder (or Hub id)."""
    if names is None:
        names = [Path(str(p).rstrip("/")).name or str(p) for p in paths]
    elif len(names) != len(paths):
        raise RankeditError(f"--names gives {len(names)} names for {len(paths)} tuned runs")
    bad = [n for n in names if not re.fullmatch(r"[^|\s,]+", n)]
    if bad:
        raise RankeditError(f"run name {bad[0]!r} is empty or holds '|', ',' or a space; give others with --names")
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise RankeditError(f"two tuned runs are both named {twice[0]!r}: give each a name with --names A,B,...")
    return list(names)
