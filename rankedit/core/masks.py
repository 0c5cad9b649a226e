"""The masks of docs/science.md, one implementation each, for the analysis and the edits alike.

A mask is a boolean tensor of a matrix's shape. The tie rule, the same for every
mask cut from scores (top-fraction, principal, low, magnitude, random): a top
(or bottom) fraction f keeps exactly ``round(f · numel)`` entries, all those
strictly beyond the threshold value plus, among the entries equal to it, the
ones with the lowest flat (row-major) indices. The mask is thus a function of
the scores alone (``torch.topk``'s choice among ties is the implementation's,
and bf16 weights tie a lot); it is the order a stable sort gives.

The principal mask M_p is cut from ``abs(W0_k)``, W0_k the rank-k reconstruction
of W0 from its exact decomposition: ``rankedit.core.linalg.gram_svd(w0.float(), k)``
(float64 Gram eigendecomposition, float32 triplets). The analysis (through
``rankedit.analysis.geometry.base_parts``) and the ``principal`` mask edit
(through ``principal_mask_of``) both pass that decomposition to
``principal_parts``, so ``overlap_principal`` measures the very mask the edit keeps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from rankedit.core.linalg import SVD, gram_svd


def bf16_unchanged(w0: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """Boolean mask of entries whose bf16 values are bitwise equal in w0 and w1."""
    a = w0.to(torch.bfloat16).view(torch.int16)
    b = w1.to(torch.bfloat16).view(torch.int16)
    return a == b


def bf16_update_mask(w0: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """The bf16 update mask M: entries that changed when both sides are stored in bf16."""
    return ~bf16_unchanged(w0, w1)


class Cut(NamedTuple):
    """A top-fraction mask in two numbers: the entries beyond ``threshold``, plus the
    first ``ties`` entries (in flat index order) equal to it."""
    threshold: float
    ties: int


def top_fraction_cut(scores: torch.Tensor, fraction: float, largest: bool = True) -> Cut:
    """The cut selecting exactly round(fraction * numel) entries with the largest (or smallest) scores.

    The threshold is the n-th value found by selection (``kth_smallest``), and ties
    at it go to the lowest indices (the module's tie rule).
    """
    return _cut_and_beyond(scores, fraction, largest)[0]


def _cut_and_beyond(scores: torch.Tensor, fraction: float, largest: bool) -> tuple[Cut, torch.Tensor | None]:
    """``top_fraction_cut`` and the mask of the entries strictly beyond its threshold (None: no entry kept)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    flat = scores.reshape(-1)
    total = flat.numel()
    n = int(round(fraction * total))
    if n == 0:
        return Cut(math.inf if largest else -math.inf, 0), None
    pos = total - n if largest else n - 1  # 0-based position of the threshold in ascending order
    threshold = kth_smallest(flat, pos)
    beyond = flat > threshold if largest else flat < threshold
    return Cut(threshold, n - count(beyond)), beyond


# Above this many entries ``kth_smallest`` first tries a window guessed from a sample.
WINDOW_MIN = 1 << 16
SAMPLE = 16384


def kth_smallest(flat: torch.Tensor, pos: int) -> float:
    """The value at 0-based position ``pos`` of the ascending order of a 1-D tensor.

    Large tensors: a seeded sample of 16384 entries guesses a window of values around
    the position; one pass counts the entries below it and keeps those inside, and the
    answer is selected among the few inside (about 3x faster than the radix selection,
    which needs several passes and a 65536-bin histogram of every entry). The counts
    prove the answer lies in the window; when the sample misled (it cannot make the
    answer wrong, only slower), the radix selection runs.
    """
    n = flat.numel()
    if n >= WINDOW_MIN and flat.dtype in (torch.float32, torch.bfloat16, torch.float16):
        found = _kth_in_window(flat, pos)
        if found is not None:
            return found
    return _kth_radix(flat, pos)


def _kth_in_window(flat: torch.Tensor, pos: int) -> float | None:
    n = flat.numel()
    gen = torch.Generator().manual_seed(n)  # any sample is correct; a seeded one makes the speed repeatable
    sample = flat[torch.randint(0, n, (SAMPLE,), generator=gen).to(flat.device)].float().sort().values
    # the sample's rank of ``pos``, +-5 binomial standard deviations (and a few entries for ties)
    at = pos / n * SAMPLE
    margin = 5.0 * (SAMPLE * (pos / n) * (1 - pos / n)) ** 0.5 + 4
    lo = sample[max(0, int(at - margin))]
    hi = sample[min(SAMPLE - 1, int(at + margin) + 1)]
    ge = flat >= lo
    below = n - count(ge)
    inside = flat[ge & (flat <= hi)]
    if not below <= pos < below + inside.numel():
        return None
    if bool(lo == hi):
        return float(lo)  # every entry inside equals it (e.g. the unchanged zeros of a bf16 |dW|)
    if inside.numel() > n // 16:
        return None  # a crowded window (heavy ties): selection among it costs what the radix pass does
    return float(torch.kthvalue(inside.float(), pos - below + 1).values)


def _kth_radix(flat: torch.Tensor, pos: int) -> float:
    """``kth_smallest`` by radix selection.

    float32 bits reinterpreted as int32, with the negative ones' magnitude bits
    flipped, sort like the floats; two 16-bit histograms then find the value in
    two passes over the data (about 60 ms for 4.3M entries on one core, where
    torch.topk takes 350 ms and numpy's introselect up to 1.8 s on |dW|, whose
    many equal values defeat its pivots). float64 goes through torch.kthvalue.
    """
    if flat.dtype == torch.float64:
        return float(torch.kthvalue(flat, pos + 1).values)
    bits = flat.float().contiguous().view(torch.int32)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    high = (key >> 16) + 32768  # 0..65535, in key order
    pos_high, before = _bucket(high, pos)
    low = key[high == pos_high] & 0xFFFF
    pos_low, _ = _bucket(low, pos - before)
    k = torch.tensor([((pos_high - 32768) << 16) | pos_low], dtype=torch.int32)
    return float((k ^ ((k >> 31) & 0x7FFFFFFF)).view(torch.float32))


def _bucket(values: torch.Tensor, pos: int) -> tuple[int, int]:
    """(the 16-bit bucket holding ascending position ``pos`` of ``values``, how many lie in buckets below it)."""
    cum = torch.bincount(values, minlength=65536).cumsum(0)
    b = int(torch.searchsorted(cum, torch.tensor([pos], dtype=cum.dtype, device=cum.device), right=True))
    return b, int(cum[b - 1]) if b > 0 else 0


def count(mask: torch.Tensor) -> int:
    """True entries of a boolean tensor (count_nonzero: 10x faster than a sum, which widens to int64)."""
    return int(torch.count_nonzero(mask))


def cut_mask(scores: torch.Tensor, cut: Cut, largest: bool = True) -> torch.Tensor:
    """The boolean mask a ``Cut`` of these scores stands for."""
    flat = scores.reshape(-1)
    return _with_ties(flat > cut.threshold if largest else flat < cut.threshold, flat, cut).reshape(scores.shape)


def _with_ties(mask: torch.Tensor, flat: torch.Tensor, cut: Cut) -> torch.Tensor:
    """``mask`` (the entries beyond the threshold) plus the cut's ties, lowest flat indices first."""
    if cut.ties > 0:
        at = flat == cut.threshold
        if cut.ties >= count(at):
            mask |= at
        else:
            mask[at.nonzero()[: cut.ties, 0]] = True
    return mask


def top_fraction_mask(scores: torch.Tensor, fraction: float, largest: bool = True) -> torch.Tensor:
    """Mask of exactly round(fraction * numel) entries with the largest (or smallest) scores
    (ties at the threshold: lowest indices first)."""
    cut, beyond = _cut_and_beyond(scores, fraction, largest)
    if beyond is None:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return _with_ties(beyond, scores.reshape(-1), cut).reshape(scores.shape)


def fraction(mask: torch.Tensor) -> float:
    """Exact fraction of True entries (integer count, not a float32 mean)."""
    return count(mask) / mask.numel() if mask.numel() else float("nan")


# ---- masks defined by the base weights ------------------------------------------------------

def principal_scores(svd: SVD) -> torch.Tensor:
    """abs(W0_k), W0_k = U S Vᵀ the rank-k reconstruction: the scores M_p is cut from."""
    return ((svd.U * svd.S) @ svd.V.T).abs()


def principal_mask(w0_k: torch.Tensor, alpha: float) -> torch.Tensor:
    """M_p: the top-alpha fraction of entries by |W0_k| (W0's rank-k reconstruction)."""
    return top_fraction_mask(w0_k.abs(), alpha, largest=True)


def principal_parts(decomposition: tuple[torch.Tensor, SVD], alpha: float) -> tuple[torch.Tensor, SVD, Cut]:
    """(every singular value, the top-k triplets in row-major memory, M_p's cut) from
    ``gram_svd(w0.float(), k)``: the one decomposition every principal mask comes from.

    Row-major, as a cached copy is: BLAS may round a product differently for
    another memory layout, and the mask must not depend on where W0_k came from.
    """
    s, svd = decomposition
    svd = SVD(*(t.contiguous() for t in svd))
    return s, svd, top_fraction_cut(principal_scores(svd), alpha)


def principal_mask_of(w0: torch.Tensor, alpha: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M_p of W0 at rank k, W0's singular values): what the ``principal`` mask edit keeps.

    The exact decomposition, as the analysis makes it, whatever the size of W0
    (no randomized SVD): the edit's mask is the one ``overlap_principal`` scores.
    """
    s, svd, cut = principal_parts(gram_svd(w0.float(), k), alpha)
    return cut_mask(principal_scores(svd), cut), s


def low_cut(w0: torch.Tensor, alpha: float) -> Cut:
    """M_low's cut: the bottom-alpha fraction of entries by |W0|."""
    return top_fraction_cut(w0.float().abs(), alpha, largest=False)


def low_mask(w0: torch.Tensor, alpha: float) -> torch.Tensor:
    """M_low: the bottom-alpha fraction of entries by |W0|."""
    return cut_mask(w0.float().abs(), low_cut(w0, alpha), largest=False)
