"""disjoint-mask: a merge where each run keeps the bf16 entries it changed, averaged where several did.

M_i is run i's bf16 update mask (``rankedit.core.masks.bf16_update_mask``: the entries whose bf16 value
differs from the base's). E = Σ_i M_i ⊙ ΔW_i / max(1, Σ_i M_i): an entry only run i changed takes run i's
update, an entry several runs changed takes their mean, an entry none changed stays at the base. On updates
with disjoint masks the merge is exactly their sum. The Path Not Taken finds RL runs updating sparse,
overlapping regions; this merge never adds two runs' changes of one entry.

The control, random-disjoint-mask, draws each run's mask at random with the same number of entries (seeded).
"""

from __future__ import annotations

import torch

from rankedit.core.masks import bf16_update_mask, count
from rankedit.edits.methods.mask import random_mask
from rankedit.edits.registry import Control, EditParams, EditResult, MatrixInputs, register


def _merge(x: MatrixInputs, random: bool) -> EditResult:
    masks = [bf16_update_mask(x.w0, t) for t in x.tuned]
    if random:
        masks = [random_mask(tuple(m.shape), count(m) / m.numel(), x.seed + i, device=m.device)
                 for i, m in enumerate(masks)]
    hits = torch.stack(masks).sum(dim=0)
    total = sum(torch.where(m, d, torch.zeros((), dtype=d.dtype, device=d.device)) for m, d in zip(masks, x.deltas))
    delta = total / hits.clamp(min=1).to(total.dtype)
    union = hits > 0
    return EditResult(delta=delta, density=count(union) / union.numel())


@register("disjoint-mask", EditParams, inputs="runs", control=Control("random-disjoint-mask"),
          describe=lambda p: "each run's update on the bf16 entries it changed, the mean where several did",
          help="""Merge: each run's update on the bf16 entries only it changed, their mean where several did.""")
def disjoint_mask(x: MatrixInputs, p: EditParams) -> EditResult:
    return _merge(x, random=False)


@register("random-disjoint-mask", EditParams, inputs="runs",
          describe=lambda p: "each run's update on a random mask of its bf16 mask's size (control)",
          help="""Control for disjoint-mask: each run's mask drawn at random with as many entries (seeded).""")
def random_disjoint_mask(x: MatrixInputs, p: EditParams) -> EditResult:
    return _merge(x, random=True)
