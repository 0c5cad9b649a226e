"""off-principal and its complement principal-only (Path Not Taken).

With ``P_U = U0ₖU0ₖᵀ`` and ``P_V = V0ₖV0ₖᵀ`` built from the top-k singular
vectors of the *base* matrix W0 (only W0's top-k is ever computed):

- off-principal:  ``W0 + (I - P_U) dW (I - P_V)``  (the update with every
  component touching W0's principal subspaces removed)
- principal-only: ``W0 + dW - (I - P_U) dW (I - P_V)``  (exactly the rest)

so the two deltas sum to dW. The projection is applied as thin products,
never as m x m or n x n matrices.
"""

from __future__ import annotations

import torch
from pydantic import Field, StrictInt

from rankedit.edits.registry import Control, EditResult, MatrixInputs, SvdParams, register
from rankedit.core.guarded_svd import Accuracy
from rankedit.core.linalg import SVD
from rankedit.core.svd import svd_facts
from rankedit.core.base_decomp import base_top_k


class PrincipalParams(SvdParams):
    k: StrictInt = Field(16, ge=1, description="size of W0's principal subspaces (top-k singular vectors)")


def off_principal_delta(w0: torch.Tensor, dw: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """``(I - P_U) dW (I - P_V)`` with P_U, P_V from W0's top-k singular vectors."""
    return off_principal_parts(w0, dw, k, seed)[0]


def off_principal_parts(w0: torch.Tensor, dw: torch.Tensor, k: int, seed: int = 0,
                        top: tuple[SVD, Accuracy] | None = None, exact: bool = True) -> tuple[torch.Tensor, dict]:
    """``off_principal_delta`` and the accuracy facts of W0's top-k SVD (``top``: done beside the merge;
    ``exact``: ``--exact-svd``)."""
    # cached on disk: the control needs the very same decomposition
    svd, acc = top if top is not None else base_top_k(w0, k, seed, exact=exact)
    U, V = svd.U, svd.V
    left = dw - U @ (U.T @ dw)  # (I - P_U) dW
    return left - (left @ V) @ V.T, svd_facts(acc)  # ... (I - P_V)


def _w0_top_k(p: PrincipalParams):
    """The work done beside the merge (rankedit.edits.ahead): W0's top-k, computed on a fresh copy."""
    return lambda x: base_top_k(x.w0, p.k, x.seed, exact=p.exact_svd)


@register("off-principal", PrincipalParams, help="""Remove the part of dW inside W0's top-k singular subspaces.

    New matrix: W0 + (I - P_U) dW (I - P_V) with P_U = U0ₖU0ₖᵀ, P_V = V0ₖV0ₖᵀ from
    the base matrix's top-k singular vectors (Path Not Taken).""",
          card_text="keeps only the part of the update outside the top-k singular subspaces of the base "
                    "weights (W_base + (I - P_U) dW (I - P_V))",
          describe=lambda p: f"ΔW outside W0's top-{p.k} singular subspaces", control=Control("principal-only"),
          ahead=_w0_top_k)
def off_principal(x: MatrixInputs, p: PrincipalParams) -> EditResult:
    delta, facts = off_principal_parts(x.w0, x.dw, p.k, x.seed, x.ahead, p.exact_svd)
    return EditResult(delta=delta, **facts)


@register("principal-only", PrincipalParams, help="""Control for off-principal: keep only what off-principal removes.

    New matrix: W0 + dW - (I - P_U) dW (I - P_V); its delta and off-principal's sum to dW.""",
          card_text="control: keeps only the part of the update inside the top-k singular subspaces of "
                    "the base weights",
          describe=lambda p: f"ΔW inside W0's top-{p.k} singular subspaces", ahead=_w0_top_k)
def principal_only(x: MatrixInputs, p: PrincipalParams) -> EditResult:
    dw = x.dw
    off, facts = off_principal_parts(x.w0, dw, p.k, x.seed, x.ahead, p.exact_svd)
    return EditResult(delta=dw - off, **facts)
