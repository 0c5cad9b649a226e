"""sub-rank-1: one scalar per matrix on one fixed direction pair, and its control random-sub-rank-1.

``W0 + c · u vᵀ`` with (u, v) a unit direction pair per matrix and c one number:

- ``direction: delta``: u1, v1, the top singular pair of dW; the least-squares c is then
  ``u1ᵀ dW v1 = s1``. The pair comes from the update, so the artifact stores it: the
  rank-1 LoRA factors, m + n values (it is rank-k with k = 1 and another scale).
- ``direction: base``: u1, v1 of the base matrix W0, which whoever has the base already
  holds; the least-squares c is ``u1ᵀ dW v1`` (of either sign) and the artifact is that one
  number per matrix (TinyLoRA's question: how far does a handful of scalars go).

``scale``: ``fit`` (the least-squares c, the default: s1 for the update's own direction),
``norm`` (``c = ±‖dW‖_F``, the sign of the fit: AlphaRL's rescale) or a given number. The
recorded rescale is c / fit: the kept part is the least-squares term ``fit · u vᵀ``.

random-sub-rank-1 is the control: a seeded random unit pair per matrix with the very same c.
"""

from __future__ import annotations

from typing import Literal, Union

import torch
from pydantic import Field

from rankedit.core.linalg import bilinear64, norm64
from rankedit.core.svd import edit_svd, svd_facts
from rankedit.core.base_decomp import base_top_k
from rankedit.edits.methods.rank_k import noise_of, random_orthonormal
from rankedit.edits.registry import Control, EditResult, MatrixInputs, SvdParams, generator, register
from rankedit.edits.storage import MatrixSize, Storage, low_rank, scalar_bytes


class SubRank1Params(SvdParams):
    direction: Literal["delta", "base"] = Field(
        "delta", description="delta: dW's top singular pair (stored); base: W0's top pair (free given the base)")
    scale: Union[Literal["fit", "norm"], float] = Field(
        "fit", description="fit: least-squares c (s1 for dW's own pair), norm: ±‖dW‖_F, or a number c")


def scalar_and_facts(x: MatrixInputs, p: SubRank1Params) -> tuple[torch.Tensor, torch.Tensor, float, float, dict]:
    """(u, v, c, fit, SVD facts): the edit's unit pair, its scalar and the least-squares scalar."""
    svd, acc = x.ahead if x.ahead is not None else _top_pair(p)(x)
    u, v = svd.U[:, 0], svd.V[:, 0]
    dw = x.dw
    fit = bilinear64(u, dw, v)
    if p.scale == "fit":
        c = fit
    elif p.scale == "norm":
        c = norm64(dw) * (-1.0 if fit < 0 else 1.0)
    else:
        c = float(p.scale)
    return u, v, c, fit, svd_facts(acc)


def _top_pair(p: SubRank1Params):
    """The pair's SVD, a function of one matrix's inputs (done beside the merge where it can be: dW is a fresh
    difference, and base_top_k decomposes a fresh copy of W0, so it has the same bits there)."""
    if p.direction == "delta":
        return lambda x: edit_svd(x.dw, 1, x.seed, exact=p.exact_svd, noise=noise_of(x))
    return lambda x: base_top_k(x.w0, 1, x.seed, exact=p.exact_svd)  # W0's top pair, cached on disk across builds


def _rescale(c: float, fit: float) -> float:
    return c / fit if fit != 0 else 1.0


def _result(u: torch.Tensor, v: torch.Tensor, c: float, fit: float, facts: dict) -> EditResult:
    B, A = (u * c)[:, None], v[None, :]  # B @ A is the outer product, entry for entry (one product each)
    return EditResult(delta=torch.outer(u * c, v), rank_kept=1 if c != 0 else 0, rescale=_rescale(c, fit),
                      parts={"B": B, "A": A}, **facts)


def _artifact(p: SubRank1Params) -> str:
    # the base's own pair is rebuilt from the base; its artifact would be one number (not written yet)
    return "lora" if p.direction == "delta" else "scalar"


def sub_rank_1_cost(p: SubRank1Params, size: MatrixSize) -> Storage:
    """dW's own pair is stored (rank-1 factors, c folded in); the base's pair is not: one number."""
    return low_rank(size, 1) if p.direction == "delta" else Storage(1, scalar_bytes(size.itemsize))


def _describe(p: SubRank1Params, on: str = "") -> str:
    how = {"fit": "least-squares c", "norm": "c = ±‖ΔW‖"}.get(str(p.scale), f"c = {p.scale}")
    on = on or f"{'ΔW' if p.direction == 'delta' else 'W0'}'s top singular pair"
    return f"one scalar per matrix on {on}, {how}"


@register("sub-rank-1", SubRank1Params, help="""One scalar per matrix on one direction pair: W0 + c·u vᵀ.

    --direction delta: dW's top singular pair (c = s1 by default); base: W0's top
    pair, c = u1ᵀ dW v1 (one number per matrix to store). --scale fit (least
    squares), norm (±‖dW‖_F) or a number. Control: a random unit pair, same c.""",
          card_text="keeps one number per matrix: the update's size along one fixed rank-1 direction",
          describe=_describe, control=Control("random-sub-rank-1"), storage=sub_rank_1_cost, artifact=_artifact,
          ahead=_top_pair)
def sub_rank_1(x: MatrixInputs, p: SubRank1Params) -> EditResult:
    u, v, c, fit, facts = scalar_and_facts(x, p)
    return _result(u, v, c, fit, facts)


@register("random-sub-rank-1", SubRank1Params, help="""Control for sub-rank-1: a random unit direction pair, same c.

    New matrix: W0 + c·q_u q_vᵀ, q_u and q_v seeded random unit vectors, c exactly sub-rank-1's.""",
          card_text="control: one random rank-1 direction per matrix, with the same scalar",
          describe=lambda p: f"one scalar per matrix on a random unit pair, sub-rank-1's c on "
                             f"{'ΔW' if p.direction == 'delta' else 'W0'}'s pair (control)",
          storage=sub_rank_1_cost, artifact=_artifact, ahead=_top_pair)
def random_sub_rank_1(x: MatrixInputs, p: SubRank1Params) -> EditResult:
    _, _, c, fit, facts = scalar_and_facts(x, p)
    gen = generator(x.seed)
    m, n = x.dw.shape
    u = random_orthonormal(m, 1, gen, x.dw.dtype)[:, 0].to(x.dw.device)
    v = random_orthonormal(n, 1, gen, x.dw.dtype)[:, 0].to(x.dw.device)
    return _result(u, v, c, fit, facts)
