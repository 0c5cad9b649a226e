"""W0's decompositions, remembered across analyses of runs tuned from one base.

A study analyses several runs (RL, SFT, SFT at matched size) against the same
base, and part of each matrix's cost is W0's alone (``rankedit.analysis.geometry.base_parts``):
its top-k triplets, norm and mask cut-offs. (W0's Gram eigendecomposition itself is
made on every analysis, because the propensity share needs all of its vectors.) They are stored under
``$RANKEDIT_CACHE/base-decomp/`` as one safetensors file per matrix (never a
pickle), keyed by the sha256 of the matrix's bytes together with everything
else the result depends on: dtype, shape, k, alpha, the device type, the
torch version and its thread count (another LAPACK, or another split of a
product across threads, may round differently, and a cached result must
equal a fresh one bit for bit). Entries are written and checked by
``rankedit.core.tensor_cache``: one that is truncated, altered or does not fit
is ignored and computed again.
"""

from __future__ import annotations

import hashlib
import json

import torch

from rankedit.analysis.geometry import BaseParts, default_k
from rankedit.core.masks import Cut
from rankedit.core.linalg import SVD
from rankedit.core.tensor_cache import load_entry, store_entry, tensor_sha256

FORMAT = "2"  # 2: the payload sha256 covers the tensors in name order (rankedit.core.tensor_cache)
FOLDER = "base-decomp"
NAMES = ("s", "U", "S", "V", "norm", "thresholds", "ties")


def cache_key(w0: torch.Tensor, k: int, alpha: float, device: str) -> str:
    shape = (int(w0.shape[0]), int(w0.shape[1]))
    facts = {"format": FORMAT, "sha256": tensor_sha256(w0), "dtype": str(w0.dtype), "shape": list(shape),
             "k": default_k(shape, k), "alpha": alpha, "device": torch.device(device).type,
             "torch": torch.__version__, "threads": torch.get_num_threads()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _to_tensors(p: BaseParts) -> dict[str, torch.Tensor]:
    cpu = {"s": p.s, "U": p.svd.U, "S": p.svd.S, "V": p.svd.V}
    out = {n: t.detach().to("cpu").contiguous() for n, t in cpu.items()}
    out["norm"] = torch.tensor([p.norm], dtype=torch.float64)
    out["thresholds"] = torch.tensor([p.principal.threshold, p.low.threshold], dtype=torch.float64)
    out["ties"] = torch.tensor([p.principal.ties, p.low.ties], dtype=torch.int64)
    return out


def _from_tensors(t: dict[str, torch.Tensor], shape: tuple[int, int], kk: int, device: str) -> BaseParts | None:
    """The parts, or None when the entry does not fit this matrix."""
    m, n = shape
    want = {"s": ((min(m, n),), torch.float64), "U": ((m, kk), torch.float32), "S": ((kk,), torch.float32),
            "V": ((n, kk), torch.float32), "norm": ((1,), torch.float64), "thresholds": ((2,), torch.float64),
            "ties": ((2,), torch.int64)}
    for name, (shp, dtype) in want.items():
        if name not in t or tuple(t[name].shape) != shp or t[name].dtype != dtype:
            return None
    thr, ties = t["thresholds"].tolist(), t["ties"].tolist()
    # fresh, aligned, row-major memory, as base_parts leaves it (BLAS results can depend on layout)
    t = {name: x.to(device).clone(memory_format=torch.contiguous_format) for name, x in t.items()}
    return BaseParts(t["s"], SVD(t["U"], t["S"], t["V"]), float(t["norm"][0]),
                     Cut(thr[0], int(ties[0])), Cut(thr[1], int(ties[1])))


def load(key: str, shape: tuple[int, int], kk: int, device: str) -> BaseParts | None:
    tensors = load_entry(FOLDER, key, NAMES)
    return None if tensors is None else _from_tensors(tensors, shape, kk, device)


def store(key: str, parts: BaseParts) -> None:
    """Write the entry atomically; a cache that cannot be written only costs time."""
    store_entry(FOLDER, key, _to_tensors(parts), FORMAT)


def cached_base_parts(w0: torch.Tensor, k: int, alpha: float, device: str = "cpu") -> tuple[str, BaseParts | None]:
    """(key, W0's parts from the cache, or None when this very matrix was not seen before).

    ``w0`` is the matrix in (out, in) layout as the metrics see it (on any device). On a
    miss the caller computes the parts (``matrix_metrics`` does, from the W0 decomposition
    it makes anyway) and hands them to ``store(key, parts)``.
    """
    shape = (int(w0.shape[0]), int(w0.shape[1]))
    key = cache_key(w0, k, alpha, device)
    return key, load(key, shape, default_k(shape, k), device)
