"""W0's decompositions, one cache for the analysis and the edits.

A study analyses several runs tuned from one base and edits them; W0's share of that work is the same for
all of them. Two tiers keep it:

- **On disk**, under ``$RANKEDIT_CACHE/base-decomp/``, one safetensors file per matrix and use (never a
  pickle), written and checked by ``rankedit.core.tensor_cache`` (an entry that is truncated, altered or does
  not fit is ignored and computed again). Keys are the sha256 of the matrix's bytes together with everything
  else the result depends on: dtype, shape, the device type, the torch version and its thread count (another
  LAPACK, or another split of a product across threads, may round differently, and a cached result must
  equal a fresh one bit for bit), and the use's own settings:

  * ``parts_key``: the analysis's parts of W0 at (k, alpha): every singular value, the top-k triplets, the
    norm and the two mask cut-offs (``rankedit.analysis.geometry.base_parts``);
  * ``cache_key``: the edits' top-k triplets (off-principal, principal-only, sub-rank-1 with ``direction:
    base``) as ``rankedit.core.svd.edit_svd`` computes them, with their ``Accuracy``; k, seed and the guard's
    settings are in the key. Matrices of at most 256 on the short side (the organism's) take LAPACK's exact
    SVD inline and are not kept on disk.

- **For one run** (``one_run()``, which ``rankedit run`` opens): in memory, W0's float64 Gram
  eigendecomposition as the analysis makes it (the propensity share needs all of its vectors, too large to
  keep on disk), and the edits' top-k of the small matrices. The run analyses first; each later analysis of
  the same base (SFT, SFT at matched size) takes W0's eigenpairs from here, and an edit on W0's top-k takes
  its top-k triplets from them: exact (``Accuracy.subspace_error`` 0 in theory), so within the guard's
  tolerance of any answer the guard gives. ``rankedit run`` so decomposes each base matrix once at most
  (``decompositions`` counts them), as long as the eigenpairs fit in ``RUN_MEMORY`` bytes (past that they
  are not kept and a later use decomposes again) and the edits run in this process (an edit on a Ray
  worker decomposes W0 there, and keeps large matrices' top-k in the disk cache). ``--exact-svd`` edits never take them (that contract is the
  guard's answer bit for bit).

Every answer is handed out in fresh, aligned, row-major memory, the same whether computed or loaded (BLAS
results can depend on layout). A cache that cannot be written only costs time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import torch

from rankedit.core import guarded_svd, near_optimal, svd
from rankedit.core.guarded_svd import Accuracy
from rankedit.core.linalg import SVD, triplets_from_eigh
from rankedit.core.tensor_cache import load_entry, store_entry, tensor_sha256

FOLDER = "base-decomp"
PARTS_FORMAT = "2"  # 2: the payload sha256 covers the tensors in name order (rankedit.core.tensor_cache)
TOP_K_FORMAT = "1"
PARTS_NAMES = ("s", "U", "S", "V", "norm", "thresholds", "ties")
TOP_K_NAMES = ("U", "S", "V", "accuracy", "identifiable")
METHODS = ("randomized", "krylov", "exact")
RUN_MEMORY = 2 << 30  # bytes of W0 eigenpairs one run keeps in memory

decompositions: Counter[str] = Counter()  # W0's sha256 -> decompositions made of it (what the tests count)


def _machine_facts(w: torch.Tensor, device: str | torch.device) -> dict:
    return {"sha256": tensor_sha256(w), "dtype": str(w.dtype), "shape": [int(d) for d in w.shape],
            "device": torch.device(device).type, "torch": torch.__version__,
            "threads": torch.get_num_threads()}  # another count may round a product differently


def _key(facts: dict) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def fresh(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device`` in aligned, row-major memory of its own (BLAS results can depend on layout)."""
    return t.to(device).clone(memory_format=torch.contiguous_format)


# ---- the analysis's parts of W0 ------------------------------------------------------------------

def parts_key(w0: torch.Tensor, kk: int, alpha: float, device: str) -> str:
    """Key of the analysis's parts of ``w0`` (in (out, in) layout) at ``kk`` = ``default_k(shape, k)``."""
    return _key({"format": PARTS_FORMAT, **_machine_facts(w0, device), "k": kk, "alpha": alpha})


def load_parts(key: str, shape: tuple[int, int], kk: int, device: str) -> dict[str, torch.Tensor] | None:
    """The parts' tensors (``PARTS_NAMES``) on ``device``, or None when there is no entry that fits."""
    t = load_entry(FOLDER, key, PARTS_NAMES)
    if t is None:
        return None
    m, n = shape
    want = {"s": ((min(m, n),), torch.float64), "U": ((m, kk), torch.float32), "S": ((kk,), torch.float32),
            "V": ((n, kk), torch.float32), "norm": ((1,), torch.float64), "thresholds": ((2,), torch.float64),
            "ties": ((2,), torch.int64)}
    for name, (shp, dtype) in want.items():
        if tuple(t[name].shape) != shp or t[name].dtype != dtype:
            return None
    return {name: fresh(x, device) for name, x in t.items()}


def store_parts(key: str, tensors: dict[str, torch.Tensor]) -> None:
    store_entry(FOLDER, key, tensors, PARTS_FORMAT)


# ---- one run's memory ------------------------------------------------------------------------------

class _RunMemory:
    def __init__(self) -> None:
        self.items: dict[str, tuple[torch.Tensor, ...]] = {}
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key: str) -> tuple[torch.Tensor, ...] | None:
        with self.lock:
            return self.items.get(key)

    def put(self, key: str, value: tuple[torch.Tensor, ...]) -> None:
        size = sum(t.numel() * t.element_size() for t in value)
        with self.lock:
            if key not in self.items and self.bytes + size <= RUN_MEMORY:
                # copies in the tensors' own layout (LAPACK's eigenvectors are column-major): a product
                # on them rounds as on the originals
                self.items[key] = tuple(t.detach().to("cpu").clone() for t in value)
                self.bytes += size


_run: _RunMemory | None = None


@contextmanager
def one_run() -> Iterator[None]:
    """W0's decompositions are shared in memory by every analysis and edit inside (``rankedit run``)."""
    global _run
    outer, _run = _run, _RunMemory() if _run is None else _run
    try:
        yield
    finally:
        _run = outer


def _eigh_key(w0: torch.Tensor, device: str | torch.device) -> str:
    return _key({"use": "gram-eigh", **_machine_facts(w0.float(), device)})


def run_eigh(w0: torch.Tensor, device: str) -> tuple[str, tuple[torch.Tensor, torch.Tensor] | None]:
    """(key, W0's Gram eigenpairs as ``rankedit.core.linalg.gram_eigh`` gives them for ``w0.float()``, or
    None): from this run's memory. Outside a run: ("", None)."""
    if _run is None:
        return "", None
    key = _eigh_key(w0, device)
    hit = _run.get(key)
    return key, None if hit is None else tuple(t.to(device).clone() for t in hit)


def keep_eigh(key: str, w0: torch.Tensor, eig: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Note a decomposition of W0 made by the analysis, and keep it for the rest of the run."""
    decompositions[tensor_sha256(w0.float())] += 1
    if _run is not None and key:
        _run.put(key, eig)


# ---- the edits' top-k of W0 ------------------------------------------------------------------------

def cached(w0: torch.Tensor, k: int) -> bool:
    """Whether ``base_top_k`` keeps this matrix's decomposition on disk (above the exact SVD's size)."""
    return min(w0.shape) > svd.EXACT_MAX_DIM and k <= min(w0.shape)


def cache_key(w0: torch.Tensor, k: int, seed: int, exact: bool = True) -> str:
    facts = {"format": TOP_K_FORMAT, **_machine_facts(w0, w0.device), "k": k, "seed": seed,
             # the guard's settings: another tolerance or budget is another answer
             "guard": [guarded_svd.TOL, guarded_svd.GAP_TOL, guarded_svd.MAX_BLOCKS, svd.OVERSAMPLE,
                       svd.POWER_ITERS, svd.EXACT_MAX_DIM]}
    if not exact:  # the default contract's exact path (top k + 1 pairs only) has other bits; keys of exact ones stay
        facts["contract"] = [near_optimal.EPS_MAX, near_optimal.CERT_COLS, near_optimal.CERT_STEPS]
    return _key(facts)


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
    return SVD(*(fresh(t[name], w0.device) for name in ("U", "S", "V"))), acc


def _from_eigh(w0: torch.Tensor, k: int) -> tuple[SVD, Accuracy] | None:
    """W0's top-k from the analysis's eigenpairs of this run, when it made them (exact, in W0's dtype)."""
    if w0.dtype != torch.float32 or not 1 <= k <= min(w0.shape):
        return None  # the analysis decomposes w0.float(): another dtype is another matrix to the edit
    key, eig = run_eigh(w0, w0.device)
    if eig is None:
        return None
    s, vecs = eig
    top = triplets_from_eigh(w0.double(), s, vecs, k)
    return SVD(*(fresh(t.to(w0.dtype), w0.device) for t in top)), svd.exact_accuracy(s, k)


def base_top_k(w0: torch.Tensor, k: int, seed: int = 0, exact: bool = True) -> tuple[SVD, Accuracy]:
    """``edit_svd(w0, k, seed, exact=exact)``, from the cache when this very matrix was decomposed before
    (for the default contract, also from the analysis's exact eigenpairs of this run).
    W0 is the reference, exact data (no storage noise): never near-optimal."""
    if not exact:
        shared = _from_eigh(w0, k)
        if shared is not None:
            return shared
    key = cache_key(w0, k, seed, exact)
    if _run is not None:
        hit = _run.get("top-k:" + key)
        if hit is not None:
            out = _from_tensors(dict(zip(TOP_K_NAMES, hit)), w0, k)
            if out is not None:
                return out
    out = None
    if cached(w0, k):
        hit = load_entry(FOLDER, key, TOP_K_NAMES)
        out = _from_tensors(hit, w0, k) if hit is not None else None
    return out if out is not None else _compute(key, w0, k, seed, exact)


def _compute(key: str, w0: torch.Tensor, k: int, seed: int, exact: bool) -> tuple[SVD, Accuracy]:
    decompositions[tensor_sha256(w0.float())] += 1
    # on a fresh copy: the merge's W0 and the one read ahead hold the same values at other addresses
    r, acc = svd.edit_svd(fresh(w0, w0.device), k, seed, exact=exact)
    r = SVD(*(fresh(t, w0.device) for t in (r.U, r.S, r.V)))  # as a hit hands it out
    if cached(w0, k):
        store_entry(FOLDER, key, _to_tensors(r, acc), TOP_K_FORMAT)
    if _run is not None:
        _run.put("top-k:" + key, tuple(_to_tensors(r, acc)[n] for n in TOP_K_NAMES))
    return r, acc
