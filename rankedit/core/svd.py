"""The SVD budget of the edits: exact for small matrices, a guarded randomized SVD otherwise.

Edits need the top-k singular triplets of every matrix of a model, so their cost
is what sets an edit's speed against a plain ``task_arithmetic`` merge. Matrices
up to 256 on their short side get LAPACK's exact SVD; larger ones with k above
an eighth of it the exact float64 Gram eigendecomposition
(``rankedit.core.linalg.gram_triplets``). The rest get
``rankedit.core.guarded_svd.guarded_top_k``: a seeded randomized SVD with 10 oversampling columns and 4 power iterations, whose answer is
checked (a residual bound on the top-k subspace angle) and refined (block
Krylov, then the exact float64 decomposition) until the rank-k reconstruction
is within 1e-3 of the exact one. Clean gaps pass the check after the cheap pass.

``edit_svd`` returns the triplets with their ``Accuracy``; ``EditResult``
carries it to the manifest (``svd_error``, ``svd_identifiable``, ``svd_mode`` and
``svd_residual_bound`` per matrix). Where the guard's cheap pass misses, the default
(not ``exact``) asks whether the data could fix the directions at all
(``storage_noise``) and gives a certified near-optimal part where it could not
(``rankedit.core.near_optimal``, docs/science.md "SVD mode").
The ``principal`` mask is the exception: it is cut from W0's exact
decomposition, the analysis' own (``rankedit.core.masks``), so that the edit
keeps the very entries ``overlap_principal`` counts; ``exact_accuracy`` states
its facts.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch

from rankedit.core import near_optimal
from rankedit.core.guarded_svd import GAP_TOL, Accuracy, guarded_top_k
from rankedit.core.linalg import SVD, exact_svd, gram_triplets, norm64

# Own threshold (not linalg's, which analysis tunes for accuracy): a 256 x n exact SVD
# costs about what the randomized one does.
EXACT_MAX_DIM = 256
OVERSAMPLE = 10
POWER_ITERS = 4
GRAM_MIN_LONG = 1024  # a short side <= EXACT_MAX_DIM with a long side this long or more: the Gram route (edit_svd)


def edit_svd(A: torch.Tensor, k: int, seed: int = 0, *, exact: bool = False,
             noise: float | Callable[[], float] = 0.0) -> tuple[SVD, Accuracy]:
    """The top-k triplets an edit uses, and their ``Accuracy``.

    ``exact=True`` (``--exact-svd``, plan key ``exact_svd``) is the decomposition as it always was, bit
    for bit. The default keeps that answer wherever the guard's cheap pass meets its tolerance, takes the
    certified near-optimal part where the data cannot fix the top-k directions (``noise``: the storage
    noise of the decomposed matrix, ``storage_noise``; 0 for a matrix that is exact data, such as W0),
    and decomposes exactly otherwise, computing only the top k + 1 pairs (``rankedit.core.near_optimal``)."""
    r = min(A.shape)
    if r <= EXACT_MAX_DIM and (exact or k > r // 8 or max(A.shape) < GRAM_MIN_LONG):
        full = exact_svd(A)  # LAPACK computes every value anyway: the gap comes free
        return SVD(full.U[:, :k], full.S[:k], full.V[:, :k]), exact_accuracy(full.S, k)
    if k > r // 8 or r <= EXACT_MAX_DIM:
        # the default's short, long matrices (a GQA model's 256 x 1536 k_proj) as its large ones with many
        # triplets: there LAPACK's full SVD costs 4-5x the top k + 1 Gram eigenpairs (one thread, 256 x 1536
        # and 256 x 4096; 1.5-2x at 128 x 344 and 256 x 256, where it takes milliseconds either way)
        if exact:
            # the float64 Gram eigendecomposition (every value, k triplets): what the guard falls
            # back to, and 3x faster than LAPACK's full float32 SVD of a 896 x 4864 matrix
            s, top = gram_triplets(A, k)
        else:  # the same Gram, only its top k + 1 eigenpairs (the (k+1)-th value gives the gap)
            s, top, _ = near_optimal.top_triplets(A, min(k + 1, r), float32_gram=False)
        return SVD(top.U[:, :k].to(A.dtype), top.S[:k].to(A.dtype), top.V[:, :k].to(A.dtype)), exact_accuracy(s, k)
    return guarded_top_k(A, k, seed=seed, oversample=OVERSAMPLE, n_iter=POWER_ITERS, exact=exact, noise=noise)


def storage_unit_roundoff(w: torch.Tensor, stored: torch.dtype | None = None) -> float:
    """The unit roundoff of the narrowest format that holds every entry of ``w`` exactly: bfloat16 (2^-8),
    float16 (2^-11), float32 (2^-24), else w's own. A checkpoint stored in bf16 and read as float32 is
    found as bf16: the lower 16 bits of every entry are zero. ``stored``: the dtype ``w`` was read from,
    where known; bf16, the narrowest of them, answers without a pass over the entries (10 ms of the
    20 ms this took on a 1536 x 4224 matrix)."""
    if stored == torch.bfloat16:
        return 2.0 ** -8
    if w.dtype == torch.float32:
        if not bool((w.view(torch.int32) & 0xFFFF).any()):
            return 2.0 ** -8
        return 2.0 ** -11 if torch.equal(w.half().float(), w) else 2.0 ** -24
    if w.dtype == torch.float64 and torch.equal(w.float().double(), w):
        return storage_unit_roundoff(w.float())
    return torch.finfo(w.dtype).eps / 2


def storage_noise(w: torch.Tensor, stored: torch.dtype | None = None) -> float:
    """δ: the spectral norm that rounding ``w`` to its storage format leaves, as a random matrix of its
    entries' size: each error is at most u |w_ij| (u: ``storage_unit_roundoff``), rms u rms(w) / √3 for
    errors uniform on that interval, and an m x n matrix of independent entries of rms ρ has spectral
    norm about ρ (√m + √n) (Bai-Yin). docs/science.md, "SVD mode". ``stored``: as ``storage_unit_roundoff``."""
    m, n = w.shape
    u = storage_unit_roundoff(w, stored)
    rms = norm64(w) / math.sqrt(m * n) if m * n else 0.0
    return (math.sqrt(m) + math.sqrt(n)) * u * rms / math.sqrt(3.0)


def exact_accuracy(s: torch.Tensor, k: int) -> Accuracy:
    """The ``Accuracy`` of an exact top-k decomposition, from all its singular values ``s`` (descending)."""
    r = s.numel()
    gap = math.inf if k >= r or float(s[0]) == 0 else float(s[k - 1] - s[k]) / float(s[0])
    return Accuracy(0.0, gap, gap >= GAP_TOL, "exact")


def svd_facts(*accs: Accuracy) -> dict:
    """``EditResult`` fields from the SVDs one edit made for one matrix: the worst of them."""
    eps = [a.residual_bound for a in accs if a.mode == "near-optimal"]
    return {"svd_error": max(a.edit_error for a in accs), "svd_identifiable": all(a.identifiable for a in accs),
            "svd_mode": "near-optimal" if eps else "exact", "svd_residual_bound": max(eps) if eps else None}


def unidentifiable_warning(method: str, matrices: list[dict]) -> str | None:
    """One line for the whole edit when the top-k subspace of some matrices it decomposes (dW, or W0
    for the edits on W0's subspaces) is not determined by the matrix."""
    bad = [m["name"] for m in matrices if m.get("svd_identifiable") is False and m.get("svd_mode") != "near-optimal"]
    if not bad:
        return None
    return (f"{method}: the top-k singular subspace of {len(bad)} of {len(matrices)} matrices is not identifiable "
            f"(s_k - s_k+1 < {GAP_TOL:g} s_1, e.g. {bad[0]}): the exact decomposition was used, but a tiny change "
            f"of the decomposed matrix could turn those directions")


def sign_ambiguity_warning(method: str, matrices: list[dict]) -> str | None:
    """One line for the whole edit when sign alignments across checkpoints rested on a near-tie."""
    bad = [m for m in matrices if m.get("sign_ambiguous")]
    if not bad:
        return None
    pairs = sum(m["sign_ambiguous"] for m in bad)
    return (f"{method}: the sign alignment of {pairs} (matrix, checkpoint) pairs in {len(bad)} of {len(matrices)} "
            f"matrices is ambiguous (s1/s2 near 1 or a nearly orthogonal reference, e.g. {bad[0]['name']}): "
            f"their direction may have been flipped by noise")


def warn_unidentifiable(method: str, matrices: list[dict]) -> None:
    for msg in (unidentifiable_warning(method, matrices), sign_ambiguity_warning(method, matrices)):
        if msg:
            logging.getLogger("rankedit").warning(msg)
