"""W0's top-k triplets for the edits on the base's subspaces: computed ahead, two at a time, and remembered.

off-principal and principal-only (and sub-rank-1 with ``direction: base``) need
W0's top-k singular subspaces of every matrix. That decomposition is most of
their cost, it does not depend on the tuned run, and an edit and its control
(off-principal beside principal-only) need the very same one. So:

- ``base_top_k`` looks it up on disk first, under ``$RANKEDIT_CACHE/edit-base-svd/``,
  keyed by the sha256 of W0's bytes together with everything the result depends
  on (k, seed, dtype, shape, device type, torch version and the guard's
  settings); a miss computes it with ``edit_svd`` and stores it. It is computed
  on a fresh row-major copy of W0 and returned in fresh memory either way
  (BLAS results can depend on alignment), so a cached answer, one computed
  ahead and one computed inside the merge give the edit the same bits. Matrices of at most 256 on the short
  side (the organism's) take LAPACK's exact SVD inline: cheaper than their hash.
- ``prefetch`` runs before the merge and fills the cache for every matrix of the
  plan, two matrices side by side on one thread each where the thread policy
  leaves a core idle (``rankedit.core.threads.matrices_at_once``): mergekit runs
  its graph one tensor at a time, so inside the merge the second core would
  wait. The merge then finds every decomposition on disk, and (``computed_ahead``)
  its key without hashing W0 again. Nothing is computed ahead when the cache
  cannot be written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from typing import TYPE_CHECKING, Iterator

import torch

from rankedit.core import guarded_svd, svd
from rankedit.core.guarded_svd import Accuracy
from rankedit.core.linalg import SVD
from rankedit.core.tensor_cache import entry_path, load_entry, store_entry, tensor_sha256, writable

if TYPE_CHECKING:
    from rankedit.edits.edit_plan import EditPlan

FOLDER = "edit-base-svd"
FORMAT = "1"
NAMES = ("U", "S", "V", "accuracy", "identifiable")
METHODS = ("randomized", "krylov", "exact")


def cached(w0: torch.Tensor, k: int) -> bool:
    """Whether ``base_top_k`` keeps this matrix's decomposition (above the exact SVD's size)."""
    return min(w0.shape) > svd.EXACT_MAX_DIM and k <= min(w0.shape)


def cache_key(w0: torch.Tensor, k: int, seed: int) -> str:
    facts = {"format": FORMAT, "sha256": tensor_sha256(w0), "dtype": str(w0.dtype), "shape": list(w0.shape),
             "k": k, "seed": seed, "device": w0.device.type, "torch": torch.__version__,
             # the guard's settings: another tolerance or budget is another answer
             "guard": [guarded_svd.TOL, guarded_svd.GAP_TOL, guarded_svd.MAX_BLOCKS, svd.OVERSAMPLE,
                       svd.POWER_ITERS, svd.EXACT_MAX_DIM]}
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


# The matrices read ahead for the build under way in this thread: seed -> (key, k, shape, dtype, sample).
# The merge then finds a key without hashing W0 a second time; the sample of W0's entries makes sure
# it is the very matrix (anything else is hashed as usual).
_local = threading.local()


def _sample(w0: torch.Tensor) -> torch.Tensor:
    m, n = w0.shape
    return w0[:: max(1, m // 32), :: max(1, n // 32)].to("cpu", copy=True)


def _key(w0: torch.Tensor, k: int, seed: int) -> str:
    known = getattr(_local, "ahead", {}).get(seed)
    if known is not None and known[1:4] == (k, tuple(w0.shape), w0.dtype) and torch.equal(known[4], _sample(w0)):
        return known[0]
    return cache_key(w0, k, seed)


def base_top_k(w0: torch.Tensor, k: int, seed: int = 0) -> tuple[SVD, Accuracy]:
    """``edit_svd(w0, k, seed)``, from the cache when this very matrix was decomposed before."""
    if not cached(w0, k):
        return svd.edit_svd(w0, k, seed)
    key = _key(w0, k, seed)
    hit = load_entry(FOLDER, key, NAMES)
    out = _from_tensors(hit, w0, k) if hit is not None else None
    return out if out is not None else _compute(key, w0, k, seed)


def _compute(key: str, w0: torch.Tensor, k: int, seed: int) -> tuple[SVD, Accuracy]:
    # on a fresh copy: the merge's W0 and the one read ahead hold the same values at other addresses
    r, acc = svd.edit_svd(_fresh(w0, w0.device), k, seed)
    r = SVD(*(_fresh(t, w0.device) for t in (r.U, r.S, r.V)))
    store_entry(FOLDER, key, _to_tensors(r, acc), FORMAT)
    return r, acc


@contextlib.contextmanager
def computed_ahead(plan: "EditPlan", device: str = "cpu", progress: bool = False) -> Iterator[int]:
    """Run the block (the merge) after ``prefetch``, its matrices' keys known to ``base_top_k``."""
    known = prefetch(plan, device, progress)
    _local.ahead = known
    try:
        yield len(known)
    finally:
        _local.ahead = {}


def prefetch(plan: "EditPlan", device: str = "cpu", progress: bool = False) -> dict[int, tuple]:
    """Decompose W0 for every matrix of the plan into the cache ahead of the merge. Returns what
    ``computed_ahead`` tells ``base_top_k`` (empty when the edit needs no W0 decomposition, none is large
    enough or the cache cannot be written)."""
    from tqdm.auto import tqdm

    from rankedit.core.modules import as_linear, classify
    from rankedit.core.threads import hot_path_threads, matrices_at_once, ordered_map
    from rankedit.edits.edit_plan import compute_dtype, largest_short_side
    from rankedit.edits.registry import matrix_seed

    k = plan.edit.base_svd(plan.params)
    names = [n for n in plan.matrices if k is not None and min(plan.base.info(n).shape) > svd.EXACT_MAX_DIM]
    if not names or not writable(FOLDER):
        return {}

    def one(name: str) -> tuple[int, tuple]:
        # W0 exactly as the mergekit adapter hands it to the edit (rankedit.edits.mergekit_methods.apply_edit)
        info = classify(name, plan.base.info(name).shape, plan.base.model_type)
        w0 = as_linear(plan.base.get(name).to(device=device, dtype=compute_dtype(plan.base.info(name).dtype)), info)
        seed = matrix_seed(plan.params.seed, name)
        key = cache_key(w0, k, seed)
        if not entry_path(FOLDER, key).is_file():  # (an unsound entry is computed again in the merge)
            _compute(key, w0, k, seed)
        return seed, (key, k, tuple(w0.shape), w0.dtype, _sample(w0))

    short = largest_short_side(plan)
    with hot_path_threads("edit", short):
        done = ordered_map(one, names, matrices_at_once("edit", short, device))
        return dict(tqdm(done, desc=f"W0 top-{k}", total=len(names), disable=not progress))
