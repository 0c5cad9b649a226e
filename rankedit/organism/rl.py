"""RLVR: GRPO from the base with trl's GRPOTrainer and the exact 0/1 reward.

fp32 master weights on the CPU; every 10% of training a bf16 checkpoint is
written, as real runs store them. The mean reward of every step is recorded
(trl logs it as ``reward``) so organism.json shows it rising.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.trainer import utils as trl_utils

from rankedit.organism import tasks
from rankedit.organism.model import load_fp32, save_checkpoint
from rankedit.organism.tokenizer import build_tokenizer


def exact_reward(prompts, completions, answer, **_):
    """trl reward function: 1.0 for an exactly right extracted answer, else 0.0."""
    return [tasks.reward(c, a) for c, a in zip(completions, answer)]


def checkpoint_steps(total: int) -> list[int]:
    """Steps at every 10% of training (the last one is the final model)."""
    return sorted({max(1, math.ceil(total * i / 10)) for i in range(1, 11)})


class Recorder(TrainerCallback):
    """Records per-step mean reward / loss, saves bf16 checkpoints, reports progress."""

    def __init__(self, out: Path, total: int, on_step: Callable | None, save_steps: list[int]):
        self.out, self.total, self.on_step, self.save_steps = out, total, on_step, set(save_steps)
        self.log: list[dict] = []

    KEEP = ("loss", "reward", "reward_std", "frac_reward_zero_std", "entropy", "completions/mean_length", "grad_norm")

    def on_log(self, args, state, control, logs=None, **kw):
        # trl logs numbers as strings in this version; keep the ones worth recording per step
        row = {k: float(logs[k]) for k in self.KEEP if logs and k in logs and _num(logs[k])}
        if row and "train_runtime" not in (logs or {}):
            self.log.append({"step": state.global_step, **row})

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step in self.save_steps:
            save_checkpoint(model, self.out / "checkpoints" / f"step-{state.global_step}")
        if self.on_step:
            self.on_step(state.global_step, self.total, None)


def _num(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _grpo_args(out: Path, cfg: dict, device: str, seed: int) -> GRPOConfig:
    return GRPOConfig(
        output_dir=str(out / "_trainer"),
        learning_rate=cfg["lr"], weight_decay=0.0,
        lr_scheduler_type=cfg.get("schedule", "constant"), warmup_steps=cfg.get("warmup", 0),
        loss_type=cfg.get("loss_type", "dapo"), beta=cfg.get("beta", 0.0), scale_rewards=cfg.get("scale_rewards", "group"),
        max_steps=cfg["steps"], per_device_train_batch_size=cfg["prompts_per_step"] * cfg["generations"],
        num_generations=cfg["generations"], max_completion_length=cfg["max_new_tokens"],
        temperature=cfg["temperature"], top_p=1.0, top_k=0,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        gradient_checkpointing=False,  # trl defaults it on; a 1M-parameter model needs no recompute
        use_cpu=device == "cpu", bf16=False, fp16=False, seed=seed, data_seed=seed,
        dataloader_num_workers=0, remove_unused_columns=False,
    )


def _prompts(cfg: dict, seed: int, skill: str = "id") -> Dataset:
    n_prompts = cfg["steps"] * cfg["prompts_per_step"]
    return Dataset.from_list(tasks.rl_prompts(n_prompts, seed=10_000 + seed, exclude=tasks.held_out_prompts(),
                                              skill=skill))


@contextmanager
def _logprob_chunk(width: int | None):
    """trl's fused LM head allocates a [tokens, 32768] buffer per forward and backward whatever the vocabulary;
    on the CPU, faulting in those pages was half of a micro GRPO run's CPU (48 tokens used of 32768). A recipe's
    rl.logprob_chunk narrows it for its runs only: recipes without the key keep trl's width and their bytes."""
    old = getattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", None)
    if width is None or old is None:  # not asked, or a trl without the fused head: nothing to narrow
        yield
        return
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = width
    try:
        yield
    finally:
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = old


def train_rl(base: Path, out: Path, r: dict, seed: int, on_step: Callable | None = None, skill: str = "id"):
    """GRPO on one skill's prompts from base into out (a fresh dir). Returns (model, per-step log)."""
    cfg = r["rl"]
    args = _grpo_args(out, cfg, r.get("device", "cpu"), seed)
    model = load_fp32(base)
    rec = Recorder(out, cfg["steps"], on_step, checkpoint_steps(cfg["steps"]))
    trainer = GRPOTrainer(
        model=model, reward_funcs=exact_reward, args=args, train_dataset=_prompts(cfg, seed, skill),
        processing_class=build_tokenizer(), callbacks=[rec],
    )
    trainer.remove_callback(PrinterCallback)  # our bars and organism.json replace its stdout dicts
    with _logprob_chunk(cfg.get("logprob_chunk")):
        trainer.train()
    return trainer.model, rec.log


class AdapterSaver(TrainerCallback):
    """Saves the LoRA adapter as trl's trainer does at its save steps: ``checkpoint-N/`` folders."""

    def __init__(self, out: Path, save_steps: list[int]):
        self.out, self.save_steps = out, set(save_steps)

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step in self.save_steps:
            model.save_pretrained(self.out / "checkpoints" / f"checkpoint-{state.global_step}")


def train_rl_lora(base: Path, out: Path, cfg: dict, seed: int, *, r: int = 4, alpha: int = 8,
                  save_steps: list[int] = (), device: str = "cpu") -> Path:
    """A LoRA-trained RLVR run as practitioners run it: the same GRPO as ``train_rl`` with trl's
    ``peft_config`` (rank ``r`` on every attention and MLP projection). Writes the adapter as
    PEFT saves it (adapter_config.json + adapter_model.safetensors) into ``out`` and, at
    ``save_steps``, ``out/checkpoints/checkpoint-N`` adapters; returns ``out``."""
    from peft import LoraConfig

    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    trainer = GRPOTrainer(
        model=load_fp32(base), reward_funcs=exact_reward, args=_grpo_args(out, cfg, device, seed),
        train_dataset=_prompts(cfg, seed), processing_class=build_tokenizer(), peft_config=lora,
        callbacks=[AdapterSaver(out, list(save_steps))],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.model.save_pretrained(out)
    return out
