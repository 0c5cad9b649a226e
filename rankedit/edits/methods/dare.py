"""dare: drop a random fraction of the update and rescale the rest (DARE, "Language Models are
Super Mario").

``W0 + M ⊙ dW / (1 - p)``, M a seeded random mask keeping exactly ``round((1 - p) · mn)``
entries: the very mask ``mask --source random --density 1-p`` draws with the same seed
(``rankedit.edits.methods.mask.random_mask``; an exact count where DARE's paper draws each entry
independently, so two runs of one recipe keep the same number of entries).

Its control is that mask without the rescale: the same entries, so the pair isolates what
the 1/(1-p) rescale does. The magnitude mask of the same density (``mask --source magnitude
--density 1-p``) is the other comparison: which entries, rather than how scaled.
"""

from __future__ import annotations

from pydantic import Field

from rankedit.core.masks import fraction
from rankedit.edits.methods.mask import random_mask
from rankedit.edits.registry import Control, EditParams, EditResult, MatrixInputs, register
from rankedit.edits.storage import MatrixSize, Storage, sparse


class DareParams(EditParams):
    drop: float = Field(0.9, ge=0, lt=1, description="p: the fraction of dW's entries dropped at random")


def dare_cost(p: DareParams, size: MatrixSize) -> Storage:
    """The kept values and their positions, as a mask's."""
    return sparse(size, size.density if size.density is not None else 1 - p.drop)


@register("dare", DareParams, help="""Drop a random fraction p of dW and rescale the rest by 1/(1-p) (DARE).

    New matrix: W0 + M ⊙ dW / (1 - p), M a seeded random mask keeping 1 - p of the
    entries (--drop p, default 0.9). Control: the same mask without the rescale.""",
          card_text="keeps a random share of the update's entries, rescaled by the inverse of that share "
                    "(W_base + M ⊙ dW / (1 - p))",
          describe=lambda p: f"random {1 - p.drop:.0%} of ΔW, ×1/(1-p) (DARE)",
          # the same random entries (same seed, same density) without the rescale
          control=lambda p: Control("mask", {"source": "random", "density": 1 - p.drop}), storage=dare_cost,
          artifact="sparse")
def dare(x: MatrixInputs, p: DareParams) -> EditResult:
    m = random_mask(tuple(x.w0.shape), 1 - p.drop, x.seed, x.w0.device)
    c = 1.0 / (1.0 - p.drop)
    # (dW c) ⊙ M, in place: the same bits as dW ⊙ M · c (c > 0 keeps each dropped entry's signed zero)
    return EditResult(delta=(x.dw * c).mul_(m), density=fraction(m), rescale=c, parts={"kept": m})
