"""A plan's ``kl:`` entry: KL travelled from the base for base, tuned, SFT and every edit.

``kl: true`` takes the defaults. The estimate is ``rankedit.scoring.kl.sampler``; the
prompts and the stage are ``rankedit.pipeline.kl_stage``.
"""

from __future__ import annotations

from typing import Optional

from pydantic import ConfigDict, Field, model_validator

from rankedit.scoring.score_options import KLOptions


class KLSpec(KLOptions):
    """KL travelled from the base on the RL task's prompts, from each model's own samples (the sampler's
    settings: ``rankedit.scoring.score_options.KLOptions``, as `rankedit kl` takes them)."""

    model_config = ConfigDict(extra="forbid")

    prompts: Optional[int] = Field(64, ge=1, description="use the first N prompts")
    prompts_file: Optional[str] = Field(None, description="a .jsonl or text file of prompts")
    task: Optional[str] = Field(None, description="an lm-eval task whose documents give the prompts "
                                                  "(default: the organism's RL prompts, else the suite's first "
                                                  "task that is not a control task)")
    max_tokens: Optional[int] = Field(None, ge=1, description="default: score.max_gen_toks, else 16 for the "
                                                               "organism, else 256")
    device: Optional[str] = Field(None, description="default: score.device, else cpu")

    @model_validator(mode="after")
    def _one_source(self):
        if self.prompts_file is not None and self.task is not None:
            raise ValueError("give 'prompts_file' or 'task', not both")
        return self
