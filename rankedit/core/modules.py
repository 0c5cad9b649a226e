"""What each tensor of a transformer checkpoint is: kind, module, layer, expert, layout.

Tensors are placed by structure and by the model's own config, not by a list of
leaf names alone:

- **expert**: a routed expert's matrix, with its index: per-expert 2-D tensors
  (``experts.3.down_proj.weight``) and fused 3-D stacks ``[E, out, in]`` (``experts.gate_up_proj``,
  Granite's ``block_sparse_moe.input_linear.weight``), whose first axis is the config's
  expert count, so a stack is E matrices (``experts`` says E; GPT-OSS stores each
  slice ``(in, out)``, ``transposed``);
- **router**: the ``E × d`` gate of an MoE block (``mlp.gate``, ``router``), its rows one per expert;
- **shared_expert**: an always-on expert (``shared_expert``, ``shared_experts``,
  ``shared_mlp``) and its gate (``shared_expert_gate``);
- **mixer**: the projections of a linear-attention or state-space block
  (``linear_attn.in_proj_qkvz``, ``mamba.in_proj``, ``mixer.out_proj``), never
  "attention" because one of them is called ``out_proj``;
- **attention** (MLA's ``q_a_proj``/``q_b_proj``/``kv_a_proj_with_mqa``/``kv_b_proj``
  among them), **mlp**, **embedding**, **lm_head**, **norm**, **bias**;
- **param**: a mixer's or an attention block's own vectors and convolution (``A_log``, ``D``,
  ``dt_bias``, ``conv1d.weight``, GPT-OSS's ``sinks``), copied as they are;
- **vision**: a multimodal checkpoint's vision (or audio) tower and projector, left alone
  and named as such; the language model is found under its prefix (``model.language_model.``);
- **other**: what none of these place. Callers report it, never drop it in silence.

GPT-2 stores its projections as ``Conv1D`` with weight shape ``(in, out)``,
transposed relative to ``nn.Linear``; ``transposed=True`` says so, and
``as_linear`` turns such a weight into the ``(out, in)`` layout that the
metrics and edits assume (left singular vectors live in the output space).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

import torch

ATTENTION = "attention"
MLP = "mlp"
EXPERT = "expert"
ROUTER = "router"
SHARED_EXPERT = "shared_expert"
MIXER = "mixer"
EMBEDDING = "embedding"
LM_HEAD = "lm_head"
NORM = "norm"
BIAS = "bias"
VISION = "vision"
PARAM = "param"
OTHER = "other"
MATRIX_KINDS = (ATTENTION, MLP, EXPERT, ROUTER, SHARED_EXPERT, MIXER)
KINDS = MATRIX_KINDS + (EMBEDDING, LM_HEAD, NORM, BIAS, PARAM, VISION, OTHER)

_ATTN = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "c_attn", "wqkv", "wo", "out_proj",
         "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "kv_a_proj"}  # the last four: MLA
_MLP = {"gate_proj", "up_proj", "down_proj", "gate_up_proj", "c_fc", "fc1", "fc2", "w1", "w2", "w3",
        "dense_h_to_4h", "dense_4h_to_h", "input_linear", "output_linear"}
_EMBED = {"embed_tokens", "wte", "wpe", "embed_in", "word_embeddings", "embed_positions", "embeddings"}
_LAYER_RE = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")
_GPT2_CONV1D = {"c_attn", "c_proj", "c_fc"}
# the blocks whose in/out projections are a mixer's: gated delta-net, Mamba, and Nemotron-H's "mixer" slot
_MIXER_BLOCKS = {"linear_attn", "mamba", "mixer", "ssm", "mamba2", "linear_attention"}
_ATTN_BLOCKS = {"self_attn", "attention", "attn"}
_SHARED = {"shared_expert", "shared_experts", "shared_mlp"}
_ROUTERS = {"gate", "router"}
# prefixes of a multimodal checkpoint's non-language parts (left alone) and of its language model
_VISION = {"visual", "vision_tower", "vision_model", "vision", "multi_modal_projector", "mm_projector",
           "audio_tower", "vision_embed_tokens"}
LANGUAGE_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.")
# families whose fused expert stacks hold each expert as (in, out): transformers computes x @ W[e]
_STACKS_IN_OUT = {"gpt_oss"}
_EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")


@dataclass(frozen=True)
class ModuleInfo:
    kind: str  # one of KINDS
    module: str  # e.g. q_proj, down_proj, attn.c_proj, experts.gate_up_proj
    layer: int | None
    transposed: bool = False  # weight (or each expert slice) stored (in, out), as GPT-2's Conv1D
    expert: int | None = None  # a per-expert tensor's expert index
    experts: int = 0  # a fused stack's expert count E (its first axis): E matrices in one tensor

    @property
    def is_matrix(self) -> bool:
        return self.kind in MATRIX_KINDS


def expert_count(config: Optional[Mapping]) -> int:
    """The number of routed experts per MoE layer the config declares (0: not an MoE)."""
    for cfg in (config or {}, (config or {}).get("text_config") or {}):
        for key in _EXPERT_COUNT_KEYS:
            v = cfg.get(key) if isinstance(cfg, Mapping) else None
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return 0


def _language_name(name: str) -> str:
    """The name as a text-only model of the family has it (multimodal prefixes stripped)."""
    for p in LANGUAGE_PREFIXES:
        if name.startswith(p):
            return "model." + name[len(p):] if p != "language_model." else name[len(p):]
    return name


def classify(name: str, shape: tuple[int, ...] = (), model_type: str = "",
             config: Optional[Mapping] = None) -> ModuleInfo:
    """Place one tensor by its name, its shape and the model's config (``config.json`` as a dict)."""
    shape = tuple(shape)
    parts = name.split(".")
    if any(p in _VISION for p in parts[:-1]):
        return ModuleInfo(VISION, parts[-2] if len(parts) >= 2 else parts[-1], None)
    parts = _language_name(name).split(".")
    leaf = parts[-1]
    parent = parts[-2] if len(parts) >= 2 else ""
    grand = parts[-3] if len(parts) >= 3 else ""
    m = _LAYER_RE.search("." + ".".join(parts))
    layer = int(m.group(1)) if m else None
    is_gpt2 = model_type == "gpt2" or (parent in _GPT2_CONV1D and grand in ("attn", "mlp"))
    n_experts = expert_count(config)

    if parent == "lm_head" or parts[0] == "lm_head" or parent in ("embed_out",):
        return ModuleInfo(LM_HEAD, "lm_head", None)
    if parent in _EMBED and layer is None:
        return ModuleInfo(EMBEDDING, parent, None)
    if "norm" in parent or parent.startswith("ln_") or parent in ("ln_f", "final_layernorm", "q_layernorm", "k_layernorm"):
        return ModuleInfo(NORM, parent, layer)
    if leaf == "bias" or leaf.endswith("_bias"):
        return ModuleInfo(BIAS, parent if leaf == "bias" else leaf, layer)
    # routed experts: a per-expert tensor (experts.<i>.<proj>.weight) or a fused stack [E, out, in]
    if "experts" in parts:
        i = parts.index("experts")
        if i + 1 < len(parts) and parts[i + 1].isdigit() and len(shape) in (0, 2) and leaf == "weight":
            return ModuleInfo(EXPERT, parent, layer, expert=int(parts[i + 1]))
    if len(shape) == 3 and n_experts and shape[0] == n_experts and min(shape[1:]) > 1 and layer is not None \
            and not any(p in _SHARED for p in parts):
        module = leaf if leaf != "weight" else f"{grand}.{parent}" if grand == "experts" else parent
        return ModuleInfo(EXPERT, module, layer, transposed=model_type in _STACKS_IN_OUT, experts=n_experts)
    if leaf != "weight" or len(shape) not in (0, 2):
        if {parent, grand} & (_MIXER_BLOCKS | _ATTN_BLOCKS):  # a block's own vectors and convolution
            return ModuleInfo(PARAM, f"{parent}.{leaf}" if parent in _MIXER_BLOCKS | _ATTN_BLOCKS else parent, layer)
        return ModuleInfo(OTHER, parent or leaf, layer)
    if any(p in _SHARED for p in parts) or parent == "shared_expert_gate":
        module = parent if parent == "shared_expert_gate" else next(p for p in parts if p in _SHARED) + "." + parent
        return ModuleInfo(SHARED_EXPERT, module, layer)
    # a router: gate/router (or Granite's router.layer) with one row per expert
    if (parent in _ROUTERS or (parent == "layer" and grand == "router")) and (not shape or not n_experts
                                                                            or shape[0] == n_experts):
        if n_experts or parent == "router" or grand == "router":
            return ModuleInfo(ROUTER, "router" if grand == "router" else parent, layer)
    if is_gpt2 and parent in _GPT2_CONV1D:
        kind = ATTENTION if grand == "attn" else MLP
        module = f"{grand}.{parent}" if parent == "c_proj" else parent
        return ModuleInfo(kind, module, layer, transposed=True)
    if grand in _MIXER_BLOCKS and (parent.startswith("in_proj") or parent == "out_proj"):
        return ModuleInfo(MIXER, f"{grand}.{parent}", layer)
    if parent in _ATTN or grand in ("self_attn", "attention", "attn") and parent == "dense":
        return ModuleInfo(ATTENTION, parent, layer)
    if parent in _MLP:
        return ModuleInfo(MLP, parent, layer)
    return ModuleInfo(OTHER, parent or leaf, layer)


def loaded_names(module: str) -> list[str]:
    """The names a module saved as ``module`` may have in the model transformers loads: itself, without
    a multimodal checkpoint's language-model prefix, Nemotron-H's ``backbone.`` as ``model.``."""
    out = [module]
    for p in LANGUAGE_PREFIXES:
        if module.startswith(p):
            out.append(("model." if p != "language_model." else "") + module[len(p):])
    if module.startswith("backbone."):
        out.append("model." + module[len("backbone."):])
    return out


# ---- matrices: a 2-D tensor is one, a fused expert stack is E ------------------------------------

def matrix_key(name: str, expert: int | None = None) -> str:
    """The name of one matrix: the tensor's, with ``[e]`` for expert e of a fused stack."""
    return name if expert is None else f"{name}[{expert}]"


def split_key(key: str) -> tuple[str, int | None]:
    """Inverse of ``matrix_key``: (tensor name, expert index of a fused stack or None)."""
    if key.endswith("]") and "[" in key:
        name, idx = key[:-1].rsplit("[", 1)
        if idx.isdigit():
            return name, int(idx)
    return key, None


def matrix_keys(name: str, shape: tuple[int, ...], info: ModuleInfo) -> list[str]:
    """The matrices a tensor holds: itself (2-D), its E experts (a fused stack), or none."""
    if not info.is_matrix:
        return []
    if info.experts and len(shape) == 3:
        return [matrix_key(name, e) for e in range(shape[0])]
    return [name] if len(shape) == 2 else []


def expert_of(key: str, info: ModuleInfo) -> int | None:
    """The expert index of a matrix (per-expert tensor or stack slice), None for a non-expert."""
    return info.expert if info.expert is not None else split_key(key)[1]


def as_linear(t: torch.Tensor, info: ModuleInfo) -> torch.Tensor:
    """View a stored weight (or one expert's slice of a stack) in nn.Linear's (out, in) layout."""
    return t.T if info.transposed else t


def from_linear(t: torch.Tensor, info: ModuleInfo) -> torch.Tensor:
    """Inverse of as_linear: back to the stored layout (contiguous)."""
    return t.T.contiguous() if info.transposed else t
