"""Tiny checkpoints of the model families RL is run on beyond dense Llama shapes, built offline from
transformers' own config classes: MoE (Qwen3-MoE, DeepSeek-V3 with MLA, GPT-OSS's fused experts),
gated delta-net linear attention (Qwen3-Next, Qwen3.5 in its vision-language layout) and Mamba
hybrids (Granite-4.0-H, Falcon-H1, Nemotron-H). Hidden 64, 2 layers, 4 experts, bf16, a
character tokenizer saved beside each; ``plant`` writes a tuned twin with a planted update.
"""

from __future__ import annotations

import shutil
import string
from pathlib import Path
from typing import Iterable, Optional

import torch
from rankedit.core.modules import EXPERT, classify
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.validate import quiet_transformers
from rankedit.testing.char_tokenizer import char_tokenizer

H = 64
_COMMON = dict(hidden_size=H, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
               max_position_embeddings=128)
_LINEAR = dict(linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
               layer_types=["linear_attention", "full_attention"])
_MAMBA = dict(mamba_n_heads=4, mamba_d_head=32, mamba_d_state=16, mamba_n_groups=1, mamba_expand=2,
              mamba_chunk_size=16)

# family -> (transformers config class name, its keyword arguments, the model class that writes it)
FAMILIES = {
    "qwen3_moe": ("Qwen3MoeConfig", dict(_COMMON, intermediate_size=128, moe_intermediate_size=32, num_experts=4,
                                         num_experts_per_tok=2, head_dim=16, decoder_sparse_step=1, mlp_only_layers=[]),
                  "AutoModelForCausalLM"),
    "deepseek_v3": ("DeepseekV3Config", dict(_COMMON, intermediate_size=128, moe_intermediate_size=32, n_routed_experts=4,
                                             num_experts_per_tok=2, n_shared_experts=1, q_lora_rank=32, kv_lora_rank=16,
                                             qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
                                             first_k_dense_replace=1, n_group=1, topk_group=1,
                                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
                    "AutoModelForCausalLM"),
    "gpt_oss": ("GptOssConfig", dict(_COMMON, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
                                     head_dim=16, layer_types=["sliding_attention", "full_attention"], sliding_window=16),
                "AutoModelForCausalLM"),
    "qwen3_next": ("Qwen3NextConfig", dict(**_COMMON, **_LINEAR, intermediate_size=128, moe_intermediate_size=32,
                                           shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                                           head_dim=16), "AutoModelForCausalLM"),
    "qwen3_5": ("Qwen3_5Config", dict(text_config=dict(**_COMMON, **_LINEAR, intermediate_size=128, head_dim=16),
                                      vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                                                         out_hidden_size=H, patch_size=4, spatial_merge_size=2,
                                                         temporal_patch_size=2)),
                "AutoModelForImageTextToText"),  # the vision-language layout RL checkpoints are published in
    "granitemoehybrid": ("GraniteMoeHybridConfig", dict(**_COMMON, **_MAMBA, intermediate_size=32, shared_intermediate_size=32,
                                                        num_local_experts=4, num_experts_per_tok=2,
                                                        layer_types=["mamba", "attention"]), "AutoModelForCausalLM"),
    "falcon_h1": ("FalconH1Config", dict(**_COMMON, **_MAMBA, intermediate_size=128, head_dim=16, mamba_d_ssm=128),
                  "AutoModelForCausalLM"),
    "nemotron_h": ("NemotronHConfig", dict(hidden_size=H, num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                           max_position_embeddings=128, intermediate_size=128, head_dim=16,
                                           hybrid_override_pattern="M*-", mamba_num_heads=4, mamba_head_dim=32,
                                           ssm_state_size=16, n_groups=1, expand=2, chunk_size=16),
                   "AutoModelForCausalLM"),
}


def build(out: str | Path, family: str, seed: int = 0) -> Path:
    """Save a random-init bf16 model of ``family`` with a character tokenizer beside it."""
    import transformers as tf

    cls, kw, model_cls = FAMILIES[family]
    torch.manual_seed(seed)
    with quiet_transformers():
        config = getattr(tf, cls)(**kw)
        model = getattr(tf, model_cls).from_config(config, dtype=torch.bfloat16)
    out = Path(out)
    model.save_pretrained(out)
    tok, _ = char_tokenizer(string.ascii_lowercase + string.digits + " .,+=?")
    tok.save_pretrained(out)
    return out


def plant(base: str | Path, out: str | Path, seed: int = 1, experts: Optional[Iterable[int]] = None,
          low: float = 1e-2, noise: float = 1e-3) -> Path:
    """A tuned twin of ``base``: every floating weight of two or more axes (each expert of a fused stack
    on its own) gets ``W + low·a bᵀ + noise·N(0,1)``. ``experts``: only the routed experts with these
    indices change (per-expert tensors and stack slices), every other tensor is copied as it is."""
    from safetensors.torch import load_file, save_file

    base, out = Path(base), Path(out)
    shutil.copytree(base, out, dirs_exist_ok=True)
    ck = Checkpoint(base)
    g = torch.Generator().manual_seed(seed)
    keep = None if experts is None else set(experts)
    for f in ck.weight_files:
        tensors = load_file(str(f))
        for name, w in tensors.items():
            if w.ndim < 2 or not w.is_floating_point():
                continue
            info = classify(name, tuple(w.shape), ck.model_type, ck.config)
            wf = w.float()
            a = torch.randn(*wf.shape[:-1], 1, generator=g)
            b = torch.randn(*wf.shape[:-2], 1, wf.shape[-1], generator=g)
            d = low * a @ b + noise * torch.randn(wf.shape, generator=g)
            if keep is not None:
                if info.kind != EXPERT:
                    continue
                if info.experts:  # a fused stack: only the chosen slices
                    d[[e for e in range(wf.shape[0]) if e not in keep]] = 0
                elif info.expert not in keep:
                    continue
            tensors[name] = (wf + d).to(w.dtype)
        save_file(tensors, str(out / f.name), metadata={"format": "pt"})
    return out
