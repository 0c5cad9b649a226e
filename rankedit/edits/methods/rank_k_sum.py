"""rank-k-sum: a merge of several runs keeping each update's top-k part, and its control.

AlphaRL finds an RL run's gain in the top singular direction of its update, so a merge may keep just that
part of each run: E = Σ_i U_k^i S_k^i V_k^iᵀ, the plain truncation of every ΔW_i (no rescale), their sum.
The control, random-rank-k-sum, puts each run's top-k singular values on k random orthonormal directions
per side (seeded), so the two edits have equal norms per run and differ only in the directions.
"""

from __future__ import annotations

import torch
from pydantic import Field, StrictInt

from rankedit.core.linalg import low_rank_product, numerical_rank
from rankedit.core.svd import edit_svd, svd_facts
from rankedit.edits.methods.rank_k import random_orthonormal
from rankedit.edits.registry import Control, EditResult, MatrixInputs, SvdParams, generator, register
from rankedit.edits.storage import MatrixSize, Storage, low_rank


class RankKSumParams(SvdParams):
    k: StrictInt = Field(1, ge=1, description="singular directions of each run's update kept")


def _parts(x: MatrixInputs, p: RankKSumParams, random: bool) -> EditResult:
    gen = generator(x.seed)
    Bs, As, accs, kept = [], [], [], 0
    for i, dw in enumerate(x.deltas):
        svd, acc = edit_svd(dw, p.k, x.seed + i, exact=p.exact_svd, noise=lambda i=i: x.tuned_noise(i))
        U, V = svd.U, svd.V
        if random:
            m, n = dw.shape
            U = random_orthonormal(m, p.k, gen, dw.dtype).to(dw.device)
            V = random_orthonormal(n, p.k, gen, dw.dtype).to(dw.device)
        root = svd.S.sqrt()
        Bs.append(U * root)
        As.append((V * root).T)
        accs.append(acc)
        kept += numerical_rank(svd.S, tuple(dw.shape), dw.dtype)
    B, A = torch.cat(Bs, dim=1), torch.cat(As, dim=0)
    return EditResult(delta=low_rank_product(B, A), rank_kept=kept, parts={"B": B, "A": A}, **svd_facts(*accs))


def _cost(p: RankKSumParams, size: MatrixSize) -> Storage:
    return low_rank(size, p.k)  # per run; the manifest's rank_kept counts every run's


@register("rank-k-sum", RankKSumParams, inputs="runs", control=Control("random-rank-k-sum"), storage=_cost,
          artifact="lora", describe=lambda p: f"the sum of each run's top-{p.k} part of ΔW",
          help="""Merge: the sum of each run's top-k singular part, Σ U_k S_k V_kᵀ of every ΔW_i.""")
def rank_k_sum(x: MatrixInputs, p: RankKSumParams) -> EditResult:
    return _parts(x, p, random=False)


@register("random-rank-k-sum", RankKSumParams, inputs="runs", storage=_cost, artifact="lora",
          describe=lambda p: f"each run's top-{p.k} singular values on random directions (control)",
          help="""Control for rank-k-sum: each run's top-k singular values on k random directions, summed.""")
def random_rank_k_sum(x: MatrixInputs, p: RankKSumParams) -> EditResult:
    return _parts(x, p, random=True)
