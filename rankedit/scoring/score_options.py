"""The options `rankedit score` and `rankedit kl` share with a plan's ``score:`` and ``kl:`` sections, declared
once: each field's type, default, bounds and help. The commands' click options are generated from them
(``rankedit.cli.spec_options``), the plan's sections extend them (``rankedit.pipeline.plan``), and the API
checks a value it is handed by the same field (``rankedit.core.option_rules.check_value``).

Defaults where the command and the plan used to differ: lm-eval's batch size is 8 and the KL sampler's 32
(the command's and the API's), values a 7B model generating on one GPU survives; the organism's plans ask
for 64 themselves.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


# lm-eval's batch size: an integer, or 'auto' (`rankedit score` and `rankedit compress` take it)
BatchSize = Union[Annotated[int, Field(ge=1)], Literal["auto"]]


class ScoreOptions(BaseModel):
    """lm-eval settings of one scoring (``rankedit.scoring.score.score``)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["hf", "vllm"] = Field(
        "hf", description="lm-eval model backend: hf (transformers; CPU or GPU) or vllm (GPU; install vllm yourself)")
    batch_size: BatchSize = Field(8, description="Batch size passed to lm-eval (an integer, or 'auto')")
    limit: Optional[int] = Field(None, ge=1, description="Score only the first N problems of each task")
    max_gen_toks: Optional[int] = Field(
        None, ge=1, description="Override the maximum number of generated tokens of every task (long RL reasoning "
                                "needs thousands)")
    num_fewshot: Optional[int] = Field(None, ge=0, description="Override the tasks' few-shot count")
    samples: Optional[int] = Field(
        None, ge=1, description="Sample N generations per problem (lm-eval repeats) and report avg@N, pass@k, maj@k")
    temperature: Optional[float] = Field(None, gt=0, description="Sampling temperature  [default with --samples: 1]")
    top_p: Optional[float] = Field(None, gt=0, le=1, description="Nucleus sampling top_p  [default with --samples: 1]")
    seed: Optional[int] = Field(None, description="Seed of the sampler  [default with --samples: 0]")


class KLOptions(BaseModel):
    """Settings of the KL sampler (``rankedit.scoring.kl.kl``)."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(4, ge=1, description="Completions sampled from MODEL per prompt, at temperature 1")
    seed: int = Field(0, ge=0, description="Seed of the sampler (and of the bootstrap)")
    batch_size: int = Field(32, ge=1, description="Completions per forward pass")
    dtype: str = Field("float32", description="torch dtype both models are loaded in")
