"""A plan's ``trajectory:`` entry: `rankedit trajectory` on the run's checkpoints, inside `rankedit run`.

The stage is ``rankedit.pipeline.trajectory_stage``; the analysis ``rankedit.analysis.trajectory``; the
settings ``rankedit.analysis.trajectory_options.TrajectoryOptions``, as `rankedit trajectory` takes them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from rankedit.analysis.trajectory_options import TrajectoryOptions


class TrajectorySpec(TrajectoryOptions):
    """`rankedit trajectory` on the run's checkpoints, inside `rankedit run` (its summary and figures in the report)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    of: Literal["tuned", "sft"] = Field("tuned", description="whose checkpoints to follow")
