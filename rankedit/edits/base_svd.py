"""W0's top-k triplets for the edits on the base's subspaces, remembered across builds.

off-principal and principal-only (and sub-rank-1 with ``direction: base``) need
W0's top-k singular subspaces of every matrix. That decomposition is most of
their cost, it does not depend on the tuned run, and an edit and its control
(off-principal beside principal-only) need the very same one. ``base_top_k``
looks it up on disk first, under ``$RANKEDIT_CACHE/edit-base-svd/``, keyed by
the sha256 of W0's bytes together with everything the result depends on (k,
seed, dtype, shape, device type, torch version, thread count and the guard's settings); a
miss computes it with ``edit_svd`` and stores it. It is computed on a fresh
row-major copy of W0 and returned in fresh memory either way (BLAS results can
depend on alignment), so a cached answer, one computed beside the merge
(``rankedit.edits.ahead``) and one computed inside it give the edit the same
bits. Matrices of at most 256 on the short side (the organism's) take LAPACK's
exact SVD inline: cheaper than their hash. A cache that cannot be written only
costs time.
"""

from __future__ import annotations

import hashlib
import json

import torch

from rankedit.core import guarded_svd, near_optimal, svd
from rankedit.core.guarded_svd import Accuracy
from rankedit.core.linalg import SVD
from rankedit.core.tensor_cache import load_entry, store_entry, tensor_sha256

FOLDER = "edit-base-svd"
FORMAT = "1"
NAMES = ("U", "S", "V", "accuracy", "identifiable")
METHODS = ("randomized", "krylov", "exact")


def cached(w0: torch.Tensor, k: int) -> bool:
    """Whether ``base_top_k`` keeps this matrix's decomposition (above the exact SVD's size)."""
    return min(w0.shape) > svd.EXACT_MAX_DIM and k <= min(w0.shape)


def cache_key(w0: torch.Tensor, k: int, seed: int, exact: bool = True) -> str:
    facts = {"format": FORMAT, "sha256": tensor_sha256(w0), "dtype": str(w0.dtype), "shape": list(w0.shape),
             "k": k, "seed": seed, "device": w0.device.type, "torch": torch.__version__,
             "threads": torch.get_num_threads(),  # another count may round a product differently
             # the guard's settings: another tolerance or budget is another answer
             "guard": [guarded_svd.TOL, guarded_svd.GAP_TOL, guarded_svd.MAX_BLOCKS, svd.OVERSAMPLE,
                       svd.POWER_ITERS, svd.EXACT_MAX_DIM]}
    if not exact:  # the default contract's exact path (top k + 1 pairs only) has other bits; keys of exact ones stay
        facts["contract"] = [near_optimal.EPS_MAX, near_optimal.CERT_COLS, near_optimal.CERT_STEPS]
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _fresh(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # aligned, row-major memory, the same whether computed or loaded (BLAS results can depend on layout)
    return t.to(device).clone(memory_format=torch.contiguous_format)


def _to_tensors(r: SVD, acc: Accuracy) -> dict[str, torch.Tensor]:
    return {"U": r.U, "S": r.S, "V": r.V,
            "accuracy": torch.tensor([acc.subspace_error, acc.rel_gap, METHODS.index(acc.method)], dtype=torch.float64),
            "identifiable": torch.tensor([int(acc.identifiable)], dtype=torch.int64)}


def _from_tensors(t: dict[str, torch.Tensor], w0: torch.Tensor, k: int) -> tuple[SVD, Accuracy] | None:
    m, n = w0.shape
    want = {"U": (m, k), "S": (k,), "V": (n, k)}
    if any(tuple(t[name].shape) != shp or t[name].dtype != w0.dtype for name, shp in want.items()):
        return None
    err, gap, method = t["accuracy"].tolist()
    acc = Accuracy(err, gap, bool(t["identifiable"][0]), METHODS[int(method)])
    return SVD(*(_fresh(t[name], w0.device) for name in ("U", "S", "V"))), acc


def base_top_k(w0: torch.Tensor, k: int, seed: int = 0, exact: bool = True) -> tuple[SVD, Accuracy]:
    """``edit_svd(w0, k, seed, exact=exact)``, from the cache when this very matrix was decomposed before.
    W0 is the reference, exact data (no storage noise): never near-optimal."""
    if not cached(w0, k):
        return svd.edit_svd(w0, k, seed, exact=exact)
    key = cache_key(w0, k, seed, exact)
    hit = load_entry(FOLDER, key, NAMES)
    out = _from_tensors(hit, w0, k) if hit is not None else None
    return out if out is not None else _compute(key, w0, k, seed, exact)


def _compute(key: str, w0: torch.Tensor, k: int, seed: int, exact: bool) -> tuple[SVD, Accuracy]:
    # on a fresh copy: the merge's W0 and the one read ahead hold the same values at other addresses
    r, acc = svd.edit_svd(_fresh(w0, w0.device), k, seed, exact=exact)
    r = SVD(*(_fresh(t, w0.device) for t in (r.U, r.S, r.V)))
    store_entry(FOLDER, key, _to_tensors(r, acc), FORMAT)
    return r, acc
