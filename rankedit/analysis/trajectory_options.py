"""The options of `rankedit trajectory` and a plan's ``trajectory:`` section, declared once
(``rankedit.core.option_rules``): the command's click options are generated from ``TrajectoryOptions``
(``rankedit.cli.spec_options``), the plan's section extends it (``rankedit.pipeline.trajectory_spec``), and
the API (``rankedit.analysis.trajectory.trajectory``) takes its defaults and checks a value by its field.

The API spells ``null_draws`` ``n_null`` (``API_NAMES``), as the null functions of
``rankedit.analysis.trajectory_math`` do.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from rankedit.analysis.trajectory_math import GAP_THRESHOLD, N_NULL

# spec field -> the API parameter that takes it, where the names differ
API_NAMES = {"null_draws": "n_null"}


class TrajectoryOptions(BaseModel):
    """Settings of one trajectory (``rankedit.analysis.trajectory.trajectory``)."""

    model_config = ConfigDict(extra="forbid")

    gap_threshold: float = Field(GAP_THRESHOLD, ge=1, allow_inf_nan=False,
                                 description="Flag a (matrix, step) whose s1/s2 is below this: its top direction "
                                             "is not identifiable")
    null_draws: int = Field(N_NULL, ge=1, description="Draws of each null (shuffles, random vectors, walks)")
    seed: int = Field(0, ge=0, description="Seed of the nulls")
    device: str = Field("cpu", description="cpu or cuda: where the decompositions run")
    modules: Optional[str] = Field(None, description="Only tensors whose name matches this regular expression")
    plots: bool = Field(True, description="Draw the PNG figures (--no-plots skips them)")
