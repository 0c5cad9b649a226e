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
- ``computed_ahead`` fills the cache for every matrix of the plan in the
  background while the merge runs, two matrices side by side on one thread each
  where the thread policy leaves a core idle (``rankedit.core.threads.matrices_at_once``):
  mergekit runs its graph one tensor at a time, so inside the merge the second
  core would wait, and its reading and writing now overlap the decompositions.
  The merge waits for its matrix's entry (or, when it has not started, computes
  it itself) and finds it without hashing W0 again.
  Nothing is computed ahead when the cache cannot be written.
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


# The W0 matrices being decomposed ahead of the build under way in this thread: seed -> future of
# (key, k, shape, dtype, sample). The merge waits for its matrix's, then finds the entry without hashing
# W0 a second time; the sample of W0's entries makes sure it is the very matrix (anything else is
# hashed as usual).
_local = threading.local()


def _sample(w0: torch.Tensor) -> torch.Tensor:
    m, n = w0.shape
    return w0[:: max(1, m // 32), :: max(1, n // 32)].to("cpu", copy=True)


def _key(w0: torch.Tensor, k: int, seed: int) -> str:
    pending = getattr(_local, "ahead", {}).get(seed)
    known = None
    if pending is not None and not pending.cancel():  # not started yet: this thread computes it now
        try:
            known = pending.result()
        except Exception:  # noqa: BLE001 - met again, and reported, when the merge computes it itself
            known = None
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
def computed_ahead(plan: "EditPlan", device: str = "cpu") -> Iterator[int]:
    """Run the block (the merge) while W0's decompositions for every matrix of the plan are made in the
    background and stored in the cache, ``matrices_at_once`` side by side; ``base_top_k`` in this thread
    waits for its matrix's. Yields how many were scheduled (0 when the edit needs no W0 decomposition,
    none is large enough or the cache cannot be written)."""
    from concurrent.futures import ThreadPoolExecutor

    from rankedit.core.threads import hot_path_threads, matrices_at_once
    from rankedit.edits.edit_plan import largest_short_side
    from rankedit.edits.registry import matrix_seed

    k = plan.edit.base_svd(plan.params)
    names = [n for n in plan.matrices if k is not None and min(plan.base.info(n).shape) > svd.EXACT_MAX_DIM]
    if not names or not writable(FOLDER):
        yield 0
        return
    short = largest_short_side(plan)
    # the policy's threads for the whole block: the merge sets the same, and restores it, inside
    with hot_path_threads("edit", short), \
            ThreadPoolExecutor(matrices_at_once("edit", short, device), thread_name_prefix="rankedit-w0") as pool:
        _local.ahead = {matrix_seed(plan.params.seed, n): pool.submit(_ahead_one, plan, n, k, device) for n in names}
        try:
            yield len(names)
        finally:
            for pending in _local.ahead.values():
                pending.cancel()
            _local.ahead = {}


def _ahead_one(plan: "EditPlan", name: str, k: int, device: str) -> tuple:
    """Decompose one W0 into the cache (unless it is there); what ``_key`` needs to know it again."""
    from rankedit.core.modules import as_linear, classify
    from rankedit.edits.edit_plan import compute_dtype
    from rankedit.edits.registry import matrix_seed

    # W0 exactly as the mergekit adapter hands it to the edit (rankedit.edits.mergekit_methods.apply_edit)
    info = classify(name, plan.base.info(name).shape, plan.base.model_type)
    w0 = as_linear(plan.base.get(name).to(device=device, dtype=compute_dtype(plan.base.info(name).dtype)), info)
    seed = matrix_seed(plan.params.seed, name)
    key = cache_key(w0, k, seed)
    if not entry_path(FOLDER, key).is_file():  # (an unsound entry is computed again in the merge)
        _compute(key, w0, k, seed)
    return key, k, tuple(w0.shape), w0.dtype, _sample(w0)
