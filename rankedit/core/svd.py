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
carries it to the manifest (``svd_error``, ``svd_identifiable`` per matrix).
The ``principal`` mask is the exception: it is cut from W0's exact
decomposition, the analysis' own (``rankedit.core.masks``), so that the edit
keeps the very entries ``overlap_principal`` counts; ``exact_accuracy`` states
its facts.
"""

from __future__ import annotations

import logging
import math

import torch

from rankedit.core.guarded_svd import GAP_TOL, Accuracy, guarded_top_k
from rankedit.core.linalg import SVD, exact_svd, gram_triplets

# Own threshold (not linalg's, which analysis tunes for accuracy): a 256 x n exact SVD
# costs about what the randomized one does.
EXACT_MAX_DIM = 256
OVERSAMPLE = 10
POWER_ITERS = 4


def edit_svd(A: torch.Tensor, k: int, seed: int = 0) -> tuple[SVD, Accuracy]:
    r = min(A.shape)
    if r <= EXACT_MAX_DIM:
        full = exact_svd(A)  # LAPACK computes every value anyway: the gap comes free
        return SVD(full.U[:, :k], full.S[:k], full.V[:, :k]), exact_accuracy(full.S, k)
    if k > r // 8:
        # the float64 Gram eigendecomposition (every value, k triplets): what the guard falls
        # back to, and 3x faster than LAPACK's full float32 SVD of a 896 x 4864 matrix
        s, top = gram_triplets(A, k)
        return SVD(top.U.to(A.dtype), top.S.to(A.dtype), top.V.to(A.dtype)), exact_accuracy(s, k)
    return guarded_top_k(A, k, seed=seed, oversample=OVERSAMPLE, n_iter=POWER_ITERS)


def exact_accuracy(s: torch.Tensor, k: int) -> Accuracy:
    """The ``Accuracy`` of an exact top-k decomposition, from all its singular values ``s`` (descending)."""
    r = s.numel()
    gap = math.inf if k >= r or float(s[0]) == 0 else float(s[k - 1] - s[k]) / float(s[0])
    return Accuracy(0.0, gap, gap >= GAP_TOL, "exact")


def svd_facts(*accs: Accuracy) -> dict:
    """``EditResult`` fields from the SVDs one edit made for one matrix: the worst of them."""
    return {"svd_error": max(a.edit_error for a in accs), "svd_identifiable": all(a.identifiable for a in accs)}


def unidentifiable_warning(method: str, matrices: list[dict]) -> str | None:
    """One line for the whole edit when the top-k subspace of some matrices it decomposes (dW, or W0
    for the edits on W0's subspaces) is not determined by the matrix."""
    bad = [m["name"] for m in matrices if m.get("svd_identifiable") is False]
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
