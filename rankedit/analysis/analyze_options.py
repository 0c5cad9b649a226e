"""The options of `rankedit analyze` and a plan's ``analyze:`` section, declared once (``rankedit.core.option_rules``):
the command's click options are generated from ``AnalyzeCommandOptions``, the plan's section extends
``AnalyzeOptions`` (the part a plan sets), and ``validate_params`` checks a value by its field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from rankedit.analysis.geometry import DEFAULT_ALPHA, DEFAULT_ATOL, DEFAULT_K, DEFAULT_Q


class AnalyzeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(DEFAULT_K, ge=1, description="Size of the top-k principal subspaces (capped at min(m,n)/4)")
    device: str = Field("cpu", description="cpu or cuda: where the SVDs run")


class AnalyzeCommandOptions(AnalyzeOptions):
    alpha: float = Field(DEFAULT_ALPHA, gt=0, lt=1, description="Fraction of entries in the principal / "
                                                               "low-magnitude masks")
    atol: float = Field(DEFAULT_ATOL, description="Absolute tolerance for `sparsity_atol` (a finite number >= 0)")
    q: float = Field(DEFAULT_Q, gt=0, le=1, description="Top-q fraction of |dW| for the precision-free overlap "
                                                       "control")
