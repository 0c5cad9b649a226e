"""The organism's model and checkpoint I/O; its architecture and recipe per size are in
rankedit.organism.recipes (re-exported here).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from rankedit.organism.recipes import ARCH, RECIPES, SIZES, SKILL_PRETRAIN, recipe  # noqa: F401 (re-exported)
from rankedit.organism.tokenizer import VOCAB, build_tokenizer
from rankedit.core.names import HF_CONFIG

def new_model(r: dict, seed: int) -> LlamaForCausalLM:
    tok = build_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(VOCAB), max_position_embeddings=64, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        **r["arch"],
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).float()


def save_checkpoint(model, out: str | Path) -> Path:
    """Save as real runs store checkpoints: bf16 safetensors from the fp32 master weights,
    with config, tokenizer and a greedy generation_config."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    sd = {k: v.detach().to("cpu", torch.bfloat16).contiguous().clone() for k, v in model.state_dict().items()}
    model.save_pretrained(out, state_dict=sd, safe_serialization=True)
    cfg = json.loads((out / HF_CONFIG).read_text())
    cfg["dtype"] = "bfloat16"
    (out / HF_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        do_sample=False, max_new_tokens=16,
    ).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def load_fp32(path: str | Path) -> LlamaForCausalLM:
    """Load a checkpoint as fp32 master weights for further training or evaluation."""
    return LlamaForCausalLM.from_pretrained(path, dtype=torch.float32)
