"""LoRA extraction at equal rank: `rankedit edit rank-k --as-lora` against `mergekit-extract-lora`.

Both extract a rank-r adapter of ΔW = W_tuned − W_base from the same pair. Reported per case:

- ``rel_error``: ‖ΔW_lora − ΔW‖_F / ‖ΔW‖_F over the matrices both adapt (sqrt of summed squares), ΔW_lora
  = (alpha / r) · B A as PEFT applies it (``rank_pattern`` / ``alpha_pattern`` honoured), in float64 from
  the factors as stored; ``floor``: the Eckart-Young optimum sqrt(Σ_{j>r} s_j² / Σ s_j²) of the same matrices;
- ``factor_bytes``: bytes of the LoRA factors of those matrices; ``file_bytes``: the whole
  ``adapter_model.safetensors`` (mergekit also stores the embeddings, lm_head and norms in full,
  ``modules_to_save``).

rankedit passes when its error is no larger (to 1e-4 relative: the two round the same truncation to the
same dtype) and its bytes no larger. The pair is a 1-layer Llama built here: a random bf16 or float32
base and a tuned twin whose update puts ``--structured`` of its energy in a rank-8 part (RL-like) or is
pure noise (0).

    python bench/bench_lora.py                          # hidden 512, MLP 1376, ranks 4 and 16
    python bench/bench_lora.py --hidden 1536 --inter 4096 --ranks 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MERGEKIT_EXTRACT = Path(sys.executable).with_name("mergekit-extract-lora")


def build_pair(root: Path, dtype: str, structured: float, hidden: int, inter: int) -> tuple[Path, Path]:
    import torch

    from rankedit.testing import synthetic

    base = synthetic.build_random(root / "base", "llama", seed=0, dtype=getattr(torch, dtype), hidden_size=hidden,
                                  intermediate_size=inter, num_hidden_layers=1, num_attention_heads=8,
                                  num_key_value_heads=4, vocab_size=256)
    tuned = synthetic.perturb(base, root / "tuned", scale=1e-2, seed=1, dtype=getattr(torch, dtype),
                              structured=structured)
    return base, tuned


def adapter_figures(base: Path, tuned: Path, adapter: Path, matrices: set[str] | None = None) -> dict:
    """Error of the adapter against ΔW (and the Eckart-Young floor) and its bytes, over ``matrices`` (module
    names; default: every module with LoRA factors)."""
    import torch
    from safetensors import safe_open

    from rankedit.files.checkpoint import Checkpoint

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    b, t = Checkpoint(base), Checkpoint(tuned)
    err2 = floor2 = total2 = 0.0
    factor_bytes, dtypes, seen = 0, set(), set()
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        for key in sorted(k for k in f.keys() if k.endswith("lora_A.weight")):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            if matrices is not None and module not in matrices:
                continue
            A, B = f.get_tensor(key), f.get_tensor(key.replace("lora_A", "lora_B"))
            r = next((v for k, v in cfg.get("rank_pattern", {}).items() if module.endswith(k)), cfg["r"])
            alpha = next((v for k, v in cfg.get("alpha_pattern", {}).items() if module.endswith(k)), cfg["lora_alpha"])
            dw = t.get(module + ".weight").double() - b.get(module + ".weight").double()
            got = (alpha / r) * (B.double() @ A.double())
            s2 = torch.linalg.svdvals(dw) ** 2
            err2 += float((got - dw).norm() ** 2)
            floor2 += float(s2[A.shape[0]:].sum())
            total2 += float(s2.sum())
            factor_bytes += A.numel() * A.element_size() + B.numel() * B.element_size()
            dtypes.add(str(A.dtype).removeprefix("torch."))
            seen.add(module)
    return {"rel_error": (err2 / total2) ** 0.5, "floor": (floor2 / total2) ** 0.5, "factor_bytes": factor_bytes,
            "file_bytes": (adapter / "adapter_model.safetensors").stat().st_size, "dtype": ",".join(sorted(dtypes)),
            "modules": sorted(seen)}


def run_mergekit(base: Path, tuned: Path, out: Path, rank: int) -> float:
    t0 = time.perf_counter()
    env = dict(os.environ, HF_HUB_OFFLINE="1")  # it looks the base up on the Hub for its model card otherwise
    proc = subprocess.run([str(MERGEKIT_EXTRACT), "--model", str(tuned), "--base-model", str(base), "--out-path",
                           str(out), "--max-rank", str(rank), "--quiet"], capture_output=True, text=True, env=env)
    if not (out / "adapter_model.safetensors").is_file():
        raise SystemExit(f"mergekit-extract-lora failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def run_rankedit(base: Path, tuned: Path, out: Path, rank: int, **params) -> float:
    from rankedit.edits.build import build_edit

    t0 = time.perf_counter()
    build_edit("rank-k", base, tuned, out, k=rank, as_lora=True, **params)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--inter", type=int, default=1376)
    ap.add_argument("--ranks", default="4,16")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--structured", default="0.5,0", help="shares of the update in a rank-8 part (0: pure noise)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        for dtype in args.dtypes.split(","):
            for structured in (float(s) for s in args.structured.split(",")):
                pair = Path(tmp) / f"{dtype}-{structured:g}"
                base, tuned = build_pair(pair, dtype, structured, args.hidden, args.inter)
                for rank in (int(r) for r in args.ranks.split(",")):
                    mk, re_, norm = (pair / f"{n}-r{rank}" for n in ("mergekit", "rankedit", "rankedit-norm"))
                    t_mk = run_mergekit(base, tuned, mk, rank)
                    t_re = run_rankedit(base, tuned, re_, rank)
                    run_rankedit(base, tuned, norm, rank, scale="norm")
                    r = adapter_figures(base, tuned, re_)
                    m = adapter_figures(base, tuned, mk, set(r["modules"]))
                    n = adapter_figures(base, tuned, norm)
                    passed = (r["rel_error"] <= m["rel_error"] * (1 + 1e-4) and r["factor_bytes"] <= m["factor_bytes"]
                              and r["file_bytes"] <= m["file_bytes"] and r["modules"] == m["modules"])
                    ok &= passed
                    rows.append({"dtype": dtype, "structured": structured, "rank": rank, "passed": passed,
                                 "rankedit": {k: v for k, v in r.items() if k != "modules"},
                                 "mergekit": {k: v for k, v in m.items() if k != "modules"},
                                 "rankedit_scale_norm_rel_error": n["rel_error"], "wall_s": {"rankedit": t_re,
                                                                                             "mergekit": t_mk}})
                    print(f"{dtype:>8} structured {structured:<4g} r={rank:<3} error rankedit {r['rel_error']:.5f} "
                          f"mergekit {m['rel_error']:.5f} (floor {r['floor']:.5f}; rankedit --scale norm "
                          f"{n['rel_error']:.5f}) | factor bytes {r['factor_bytes']:,} vs {m['factor_bytes']:,} | "
                          f"file bytes {r['file_bytes']:,} vs {m['file_bytes']:,} | {'ok' if passed else 'FAIL'}",
                          flush=True)
    doc = {"hidden": args.hidden, "inter": args.inter, "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
           "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print("all cases: rankedit no less accurate and no larger" if ok else "SOME CASES FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
