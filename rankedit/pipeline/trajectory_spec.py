"""A plan's ``trajectory:`` entry: `rankedit trajectory` on the run's checkpoints, inside `rankedit run`.

The stage is ``rankedit.pipeline.trajectory_stage``; the analysis ``rankedit.analysis.trajectory``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class TrajectorySpec(BaseModel):
    """`rankedit trajectory` on the run's checkpoints, inside `rankedit run` (its summary and figures in the report)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    of: Literal["tuned", "sft"] = Field("tuned", description="whose checkpoints to follow")
    device: str = "cpu"
    gap_threshold: float = Field(1.05, ge=1, allow_inf_nan=False,
                                 description="flag a (matrix, step) whose s1/s2 is below this")
    null_draws: int = Field(32, ge=1, description="draws of each null (shuffles, random vectors, walks)")
    seed: int = Field(0, ge=0, description="seed of the nulls")
    modules: Optional[str] = Field(None, description="only tensors whose name matches this regular expression")
    plots: bool = True
