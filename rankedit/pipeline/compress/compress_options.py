"""The options of `rankedit compress`, declared once (``rankedit.core.option_rules``): the command's click
options are generated from ``CompressOptions`` (``rankedit.cli.spec_options``) and the API
(``rankedit.pipeline.compress.command.compress``) takes its defaults and checks a value by its field.

The scoring's options are `rankedit score`'s (``rankedit.scoring.score_options.ScoreOptions``): ``--limit`` is its
field, ``--batch-size`` its type with another default (see the field), and ``--seed`` has the bounds of a
plan's ``organism.seed``. ``--family``, ``--tasks``, ``--include-path`` and ``-o`` are the command's own
(repeatable or comma-separated lists, and a path).
"""

from __future__ import annotations

from copy import copy
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from rankedit.pipeline.compress.bisect import MAX_EVALS, TARGETS
from rankedit.scoring.score_options import BatchSize, ScoreOptions


class CompressOptions(BaseModel):
    """Settings of one search (``rankedit.pipeline.compress.command.compress``)."""

    model_config = ConfigDict(extra="forbid")

    keep: float = Field(0.95, gt=0, le=1, description="Share of the tuned gain to keep: retention R must reach it "
                                                      "(0.95 keeps 95%)")
    target: Literal[TARGETS] = Field("point", description="Judge R's point estimate, or the lower bound of its 95% "
                                                          "interval (the gain kept with confidence)")
    organism: Optional[Literal["micro", "small"]] = Field(
        None, description="Use the embedded model organism's base and RL run instead of BASE and TUNED")
    seed: int = Field(0, ge=0, description="The organism's seed (with --organism)")
    suite: Optional[str] = Field(None, description="Named suite of tasks  [default with --organism: organism]")
    limit: Optional[int] = copy(ScoreOptions.model_fields["limit"])
    batch_size: BatchSize = Field(
        64, description="lm-eval batch size (an integer, or 'auto'); 64, not `rankedit score`'s 8: the batch size "
                        "is in every score's cache key and compress has always used 64, so earlier searches stay cached")
    device: Optional[str] = Field(None, description="Scoring device: cpu, cuda or cuda:N  [default: cuda when "
                                                    "available]")
    build_device: str = Field("cpu", description="Where the edits compute their SVDs")
    max_candidates: int = Field(MAX_EVALS, ge=1, description="At most this many candidates scored per family")
