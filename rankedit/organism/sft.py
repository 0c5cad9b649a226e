"""SFT from the base with trl's SFTTrainer on the teacher's worked solutions.

The data come from a different distribution than pretraining (the teacher's
worked format is a minority there and the whole of this set), as distillation
data are in the published base/distilled pairs. Loss on completion tokens
only, fp32 master weights, bf16 checkpoints every 10% of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from datasets import Dataset
from transformers import PrinterCallback
from trl import SFTConfig, SFTTrainer

from rankedit.organism import tasks
from rankedit.organism.model import load_fp32
from rankedit.organism.rl import Recorder, checkpoint_steps
from rankedit.organism.tokenizer import build_tokenizer


def train_sft(base: Path, out: Path, r: dict, seed: int, on_step: Callable | None = None):
    """SFT from base into out (a fresh dir). Returns (model, per-step log)."""
    cfg = r["sft"]
    rows = tasks.sft_examples(cfg["steps"] * cfg["batch"], seed=20_000 + seed, exclude=tasks.held_out_prompts())
    args = SFTConfig(
        output_dir=str(out / "_trainer"),
        learning_rate=cfg["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_steps=cfg["steps"], per_device_train_batch_size=cfg["batch"], num_train_epochs=1,
        completion_only_loss=True, max_length=64, packing=False,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        gradient_checkpointing=False,  # trl defaults it on; a 1M-parameter model needs no recompute
        use_cpu=r.get("device", "cpu") == "cpu", bf16=False, fp16=False, seed=seed, data_seed=seed, dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    model = load_fp32(base)
    rec = Recorder(out, cfg["steps"], on_step, checkpoint_steps(cfg["steps"]))
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows),
        processing_class=build_tokenizer(), callbacks=[rec],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer.model, rec.log
