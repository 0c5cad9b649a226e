"""Many small matrices: rankedit on a Qwen3-30B-A3B-shaped slice, as whole processes side by side.

A 30B-A3B MoE holds about 18,000 expert matrices, so any per-matrix overhead (hashing, thread
hand-off, checks, cache lookups) is multiplied. The slice: ``--layers`` decoder layers (default 2)
of Qwen3-30B-A3B's shapes (hidden 2048, 32 query heads and 4 key/value heads of 128, 128 experts of
768 x 2048 each, one 2-D tensor per expert as transformers saves them, the 128 x 2048 router), a
4096-token vocabulary (the embeddings are not what is measured), random bf16 weights written
locally one tensor at a time (about 1.2 GB per layer and checkpoint), and a tuned twin with an
RL-sized update (1e-3 of each matrix's RMS, a rank-8 part carrying half its energy).

Cases, each in its own process (peak RSS per case):

- ``cli: mergekit-yaml``: mergekit's task_arithmetic, weight 1 (the peer; it writes the experts fused);
- ``cli: rankedit edit rank-k --k 1``: the whole command, written tensor by tensor (mergekit's
  qwen3_moe definition names fused stacks, not the per-expert tensors on disk);
- ``cli: rankedit analyze``: the whole command (k=16, no figures);
- ``decomposition floor``: only the three ``gram_svd`` calls per matrix analyze makes.

Targets (issue 26): analyze within 1.3x its decomposition floor, rank-k within 1.2x mergekit-yaml.

    python bench/bench_moe.py --repeat 1                # 2 layers, about 2.5 GB per checkpoint
    python bench/bench_moe.py --layers 1 --repeat 1     # half of it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

CASES = {
    "cli: mergekit-yaml": "whole process: mergekit-yaml with a task_arithmetic config, weight 1",
    "cli: rankedit edit rank-k --k 1": "whole process: rankedit edit rank-k BASE TUNED -o OUT --k 1",
    "cli: rankedit analyze": "whole process: rankedit analyze BASE TUNED -o OUT --no-plots",
    "decomposition floor": "the gram_svd calls alone (3 per matrix), same matrices and threads",
}
SHAPE = dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=4, head_dim=128, moe_intermediate_size=768,
             intermediate_size=6144, num_experts=128, num_experts_per_tok=8, vocab_size=4096, decoder_sparse_step=1,
             mlp_only_layers=[], max_position_embeddings=4096, tie_word_embeddings=False)


def _tensors(layers: int):
    """(name, shape) of the slice, in transformers' own order and per-expert layout."""
    h, e, i, d = SHAPE["hidden_size"], SHAPE["num_experts"], SHAPE["moe_intermediate_size"], SHAPE["head_dim"]
    q, kv = SHAPE["num_attention_heads"] * d, SHAPE["num_key_value_heads"] * d
    yield "model.embed_tokens.weight", (SHAPE["vocab_size"], h)
    for layer in range(layers):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", (h,)
        yield p + "post_attention_layernorm.weight", (h,)
        for name, shape in (("q_proj", (q, h)), ("k_proj", (kv, h)), ("v_proj", (kv, h)), ("o_proj", (h, q)),
                            ("q_norm", (d,)), ("k_norm", (d,))):
            yield p + f"self_attn.{name}.weight", shape
        yield p + "mlp.gate.weight", (e, h)
        for x in range(e):
            for name, shape in (("gate_proj", (i, h)), ("up_proj", (i, h)), ("down_proj", (h, i))):
                yield p + f"mlp.experts.{x}.{name}.weight", shape
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (SHAPE["vocab_size"], h)


def build(work: Path, layers: int, checkpoints: int = 0, structured: float = 0.5, base_decay: float = 0.0) -> dict:
    """Write the base and its tuned twin, one tensor at a time (no model is ever held in memory)."""
    import torch
    import transformers as tf

    from rankedit.files.shards import write_shards

    structured = structured or 0.5
    work.mkdir(parents=True, exist_ok=True)
    shapes = dict(_tensors(layers))
    sizes = [(n, 2 * int(torch.Size(s).numel())) for n, s in shapes.items()]
    for side in ("base", "tuned"):
        out = work / side
        if (out / "config.json").exists():
            continue
        out.mkdir(parents=True, exist_ok=True)

        def tensor(name: str, side=side) -> torch.Tensor:
            shape = shapes[name]
            g = torch.Generator().manual_seed(sum(name.encode()) * 7919 + len(name))
            if len(shape) == 1:
                return torch.ones(shape, dtype=torch.bfloat16)
            w = torch.randn(shape, generator=g) * 0.02
            if side == "tuned":
                low = (torch.randn(shape[0], 8, generator=g) * 0.5 ** torch.arange(8.0)) @ torch.randn(8, shape[1], generator=g)
                noise = torch.randn(shape, generator=g)
                d = structured ** 0.5 * low / low.norm() + (1 - structured) ** 0.5 * noise / noise.norm()
                w = w + d * (1e-3 * 0.02 / d.pow(2).mean().sqrt())
            return w.to(torch.bfloat16)

        write_shards(out, sizes, tensor, 1_000_000_000)
        tf.Qwen3MoeConfig(num_hidden_layers=layers, architectures=["Qwen3MoeForCausalLM"], **SHAPE).save_pretrained(out)
    return {"base": work / "base", "tuned": work / "tuned"}


def run_case(case: str, work: Path, out: Path) -> dict:
    from bench_analyze import _floor
    from bench_edits import run_cli

    b, t = work / "base", work / "tuned"
    bindir = Path(sys.executable).parent
    if case == "cli: mergekit-yaml":
        yml = work / "task_arithmetic.yml"
        yml.write_text(json.dumps({"merge_method": "task_arithmetic", "base_model": str(b), "dtype": "bfloat16",
                                   "models": [{"model": str(t), "parameters": {"weight": 1.0}}]}))
        return run_cli([str(bindir / "mergekit-yaml"), str(yml), str(out)], case)
    if case == "cli: rankedit edit rank-k --k 1":
        return run_cli([str(bindir / "rankedit"), "edit", "rank-k", str(b), str(t), "-o", str(out), "--k", "1",
                        "--quiet"], case)
    if case == "cli: rankedit analyze":
        return run_cli([str(bindir / "rankedit"), "analyze", str(b), str(t), "-o", str(out), "--no-plots"], case)
    if case == "decomposition floor":
        return {"case": case, "wall_s": _floor(b, t), "peak_rss_mb": harness.peak_rss_mb(),
                "rss_after_imports_mb": harness.peak_rss_mb()}
    raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    harness.main(__file__, __doc__, CASES, run_case, reference="cli: mergekit-yaml", work_name="bench-moe",
                 checkpoints=0, also_vs="decomposition floor", build=build,
                 title="Qwen3-30B-A3B-shaped slice (128 experts of 768 x 2048)", default_layers=2)
