"""orthogonal: a merge that gives each later run only what lies outside the earlier runs' top-k subspaces.

For runs 1..n in the order given: E = ΔW_1 + Σ_{i≥2} (I - Q_i Q_iᵀ) ΔW_i (I - R_i R_iᵀ), where Q_i (R_i) is
an orthonormal basis of the span of the top-k left (right) singular vectors of ΔW_1..ΔW_{i-1}. Two runs:
A's update plus B's with its component in A's top-k subspaces removed, on both sides. Where B's update is
already orthogonal to them, the merge is the plain sum.

The control, random-orthogonal, removes random subspaces of the same dimensions (seeded) instead, so it takes
as many directions out of each later update, chosen without looking at the earlier runs.
"""

from __future__ import annotations

import torch
from pydantic import Field, StrictInt

from rankedit.core.svd import edit_svd, svd_facts
from rankedit.edits.methods.rank_k import random_orthonormal
from rankedit.edits.registry import Control, EditResult, MatrixInputs, SvdParams, generator, register


class OrthogonalParams(SvdParams):
    k: StrictInt = Field(1, ge=1, description="dimension of each earlier run's top-k subspace removed from the later runs")


def remove(dw: torch.Tensor, Q: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """(I - Q Qᵀ) dW (I - R Rᵀ), Q and R with orthonormal columns (possibly none)."""
    left = dw - Q @ (Q.T @ dw) if Q.shape[1] else dw
    return left - (left @ R) @ R.T if R.shape[1] else left


def _basis(vectors: list[torch.Tensor], like: torch.Tensor, side: int) -> torch.Tensor:
    """Orthonormal basis of the columns of ``vectors`` (one earlier run: its singular vectors as they are)."""
    if not vectors:
        return like.new_zeros((like.shape[side], 0))
    if len(vectors) == 1:
        return vectors[0]
    q, _ = torch.linalg.qr(torch.cat(vectors, dim=1))
    return q


def _merge(x: MatrixInputs, p: OrthogonalParams, random: bool) -> EditResult:
    gen = generator(x.seed)
    deltas = x.deltas
    left, right, accs = [], [], []
    total = deltas[0]
    for i, dw in enumerate(deltas):
        if i:
            total = total + remove(dw, _basis(left, dw, 0), _basis(right, dw, 1))
        if i == len(deltas) - 1:
            break
        if random:
            m, n = dw.shape
            left.append(random_orthonormal(m, p.k, gen, dw.dtype).to(dw.device))
            right.append(random_orthonormal(n, p.k, gen, dw.dtype).to(dw.device))
        else:
            svd, acc = edit_svd(dw, p.k, x.seed + i, exact=p.exact_svd, noise=lambda i=i: x.tuned_noise(i))
            left.append(svd.U)
            right.append(svd.V)
            accs.append(acc)
    return EditResult(delta=total, **(svd_facts(*accs) if accs else {}))


@register("orthogonal", OrthogonalParams, inputs="runs", control=Control("random-orthogonal"),
          describe=lambda p: f"each later run's update outside the earlier runs' top-{p.k} subspaces, plus the first's",
          help="""Merge: A's update plus B's with its component in A's top-k subspaces removed (both sides).

    With more runs, each run loses its component in the top-k subspaces of all runs before it.""")
def orthogonal(x: MatrixInputs, p: OrthogonalParams) -> EditResult:
    return _merge(x, p, random=False)


@register("random-orthogonal", OrthogonalParams, inputs="runs",
          describe=lambda p: f"each later run's update outside random {p.k}-dimensional subspaces (control)",
          help="""Control for orthogonal: removes random subspaces of the same dimensions (seeded).""")
def random_orthogonal(x: MatrixInputs, p: OrthogonalParams) -> EditResult:
    return _merge(x, p, random=True)
