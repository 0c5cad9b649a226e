"""propensity-only and its control lability-only: dW split in W0's own singular basis.

With W0 = U0 S0 V0ᵀ (full thin SVD) and C = U0ᵀ dW V0:

- propensity-only: ``W0 + U0 diag(diag(C)) V0ᵀ`` (W0's singular values changed
  as dW changes them, its singular vectors kept);
- lability-only:   ``W0 + dW - U0 diag(diag(C)) V0ᵀ`` (exactly the rest:
  rotations, and for a rectangular W0 the part outside span(U0) ⊗ span(V0)).

The two deltas sum to dW. The split is ``rankedit.core.propensity_basis``'s, the one
the analysis' ``propensity_share`` measures.
"""

from __future__ import annotations

from rankedit.core.propensity_basis import propensity_delta
from rankedit.edits.registry import Control, EditParams, EditResult, MatrixInputs, register
from rankedit.edits.storage import MatrixSize, Storage


def diagonal_cost(p: EditParams, size: MatrixSize) -> Storage:
    """min(m, n) values per matrix: diag(C); U0 and V0 are rebuilt from the base."""
    k = min(size.shape)
    return Storage(k, k * size.itemsize)


@register("propensity-only", EditParams, help="""Keep only the update's change of W0's singular values.

    New matrix: W0 + U0 diag(diag(C)) V0ᵀ with C = U0ᵀ dW V0 in the base matrix's
    full singular basis: W0's singular vectors kept, its singular values moved as
    dW moves them ("propensity"); rotations and new directions dropped.""",
          card_text="keeps only the update's change of the base weights' singular values, their singular "
                    "vectors fixed (W_base + U0 diag(diag(U0ᵀ dW V0)) V0ᵀ)",
          describe=lambda p: "diagonal of ΔW in W0's singular basis (singular values only)",
          control=Control("lability-only"), storage=diagonal_cost)
def propensity_only(x: MatrixInputs, p: EditParams) -> EditResult:
    return EditResult(delta=propensity_delta(x.w0, x.dw).to(x.dw.dtype))


@register("lability-only", EditParams, help="""Control for propensity-only: keep only what propensity-only drops.

    New matrix: W0 + dW - U0 diag(diag(C)) V0ᵀ (rotations of W0's singular
    vectors and new directions); its delta and propensity-only's sum to dW.""",
          card_text="control: keeps only the part of the update off the diagonal of the base weights' "
                    "singular basis (rotations and new directions)",
          describe=lambda p: "ΔW off the diagonal of W0's singular basis (rotations, new directions)")
def lability_only(x: MatrixInputs, p: EditParams) -> EditResult:
    dw = x.dw
    return EditResult(delta=dw - propensity_delta(x.w0, dw).to(dw.dtype))
