"""What each tensor of a transformer checkpoint is: kind, module, layer, layout.

Covers the Llama, Mistral, Qwen2/Qwen3, Gemma, Phi, GPT-NeoX and GPT-2 families
by name. GPT-2 stores its projections as ``Conv1D`` with weight shape
``(in, out)``, transposed relative to ``nn.Linear``; ``transposed=True`` says so,
and ``as_linear`` turns such a weight into the ``(out, in)`` layout that the
metrics and edits assume (left singular vectors live in the output space).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

ATTENTION = "attention"
MLP = "mlp"
EMBEDDING = "embedding"
LM_HEAD = "lm_head"
NORM = "norm"
BIAS = "bias"
OTHER = "other"
MATRIX_KINDS = (ATTENTION, MLP)

_ATTN = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "c_attn", "wqkv", "wo", "out_proj"}
_MLP = {"gate_proj", "up_proj", "down_proj", "gate_up_proj", "c_fc", "fc1", "fc2", "w1", "w2", "w3",
        "dense_h_to_4h", "dense_4h_to_h"}
_EMBED = {"embed_tokens", "wte", "wpe", "embed_in", "word_embeddings", "embed_positions"}
_LAYER_RE = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")
_GPT2_CONV1D = {"c_attn", "c_proj", "c_fc"}


@dataclass(frozen=True)
class ModuleInfo:
    kind: str  # attention | mlp | embedding | lm_head | norm | bias | other
    module: str  # e.g. q_proj, down_proj, attn.c_proj
    layer: int | None
    transposed: bool = False  # weight stored (in, out), as GPT-2's Conv1D

    @property
    def is_matrix(self) -> bool:
        return self.kind in MATRIX_KINDS


def classify(name: str, shape: tuple[int, ...] = (), model_type: str = "") -> ModuleInfo:
    """Classify one tensor by its name (and shape, for 2-D checks)."""
    parts = name.split(".")
    leaf = parts[-1]
    parent = parts[-2] if len(parts) >= 2 else ""
    grand = parts[-3] if len(parts) >= 3 else ""
    m = _LAYER_RE.search("." + name)
    layer = int(m.group(1)) if m else None
    is_gpt2 = model_type == "gpt2" or (parent in _GPT2_CONV1D and grand in ("attn", "mlp"))

    if parent == "lm_head" or name.startswith("lm_head") or parent in ("embed_out",):
        return ModuleInfo(LM_HEAD, "lm_head", None)
    if parent in _EMBED:
        return ModuleInfo(EMBEDDING, parent, None)
    if "norm" in parent or parent.startswith("ln_") or parent in ("ln_f", "final_layernorm", "q_layernorm", "k_layernorm"):
        return ModuleInfo(NORM, parent, layer)
    if leaf == "bias":
        return ModuleInfo(BIAS, parent, layer)
    if leaf == "weight" and len(shape) in (0, 2):
        if is_gpt2 and parent in _GPT2_CONV1D:
            kind = ATTENTION if grand == "attn" else MLP
            module = f"{grand}.{parent}" if parent == "c_proj" else parent
            return ModuleInfo(kind, module, layer, transposed=True)
        if parent in _ATTN or grand in ("self_attn", "attention", "attn") and parent == "dense":
            return ModuleInfo(ATTENTION, parent, layer)
        if parent in _MLP:
            return ModuleInfo(MLP, parent, layer)
    return ModuleInfo(OTHER, parent or leaf, layer)


def as_linear(t: torch.Tensor, info: ModuleInfo) -> torch.Tensor:
    """View a stored weight in nn.Linear's (out, in) layout."""
    return t.T if info.transposed else t


def from_linear(t: torch.Tensor, info: ModuleInfo) -> torch.Tensor:
    """Inverse of as_linear: back to the stored layout (contiguous)."""
    return t.T.contiguous() if info.transposed else t
