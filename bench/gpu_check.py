"""The Python half of bench/gpu_check.sh: build the 7B-shaped pair, compare two runs of the same work.

    python bench/gpu_check.py build WORK [--tiny] [--layers N]
    python bench/gpu_check.py analysis A/metrics.jsonl B/metrics.jsonl       # cuda against cpu, same matrices
    python bench/gpu_check.py weights EDIT_A EDIT_B                          # two edits of the same pair
    python bench/gpu_check.py collect OUT                                    # OUT/*.json -> OUT/gpu_check.json

Each comparison prints one JSON line (what the shell script stores) and exits 1 when the two runs are
not close: analysis metrics within 1e-3 relative (SVD on another device and library: last digits
differ, see docs/science.md on identifiability), edited weights within 2 ulps of their dtype at the
worst entry (the SVD's float rounding moves a few entries across a bf16 rounding boundary; an entry
below 2^-10 of its tensor's largest is measured in ulps of that scale).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

# Llama-2-7B's per-layer shapes (hidden 4096, MLP 11008, 32 heads, vocab 32000); fewer layers, so the CPU
# side of the comparison and the writing of the pair fit the check's 8 minutes.
SEVEN_B = dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
               vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY = dict(hidden_size=64, intermediate_size=176, num_attention_heads=4, num_key_value_heads=4, vocab_size=128,
            max_position_embeddings=128, tie_word_embeddings=False)
ANALYSIS_RTOL = 1e-3
WEIGHT_ULPS = 2


def build(work: Path, tiny: bool, layers: int) -> None:
    import torch

    from rankedit.testing import synthetic

    cfg = dict(TINY if tiny else SEVEN_B, num_hidden_layers=layers)
    base = synthetic.build_random(work / "base", "llama", seed=0, dtype=torch.bfloat16, **cfg)
    # an RL-sized update (1e-3 of each matrix's RMS) with half its energy in a rank-8 part, so the
    # top directions are identifiable and the devices must agree on them
    synthetic.perturb(base, work / "tuned", scale=1e-3, seed=1, dtype=torch.bfloat16, structured=0.5)
    print(json.dumps({"built": str(work), "layers": layers, "hidden": cfg["hidden_size"]}))


def _rows(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["name"]: r for r in rows}


def compare_analysis(a: Path, b: Path) -> bool:
    ra, rb = _rows(a), _rows(b)
    common = sorted(set(ra) & set(rb))
    worst, where = 0.0, None
    for name in common:
        for key, x in ra[name].items():
            y = rb[name].get(key)
            if isinstance(x, (int, float)) and not isinstance(x, bool) and isinstance(y, (int, float)):
                if math.isnan(x) and math.isnan(y):
                    continue
                rel = abs(x - y) / max(abs(x), abs(y), 1e-12)
                if rel > worst:
                    worst, where = rel, f"{name} {key}: {x} vs {y}"
    ok = bool(common) and worst <= ANALYSIS_RTOL
    print(json.dumps({"check": "analysis", "matrices": len(common), "worst_rel_diff": worst, "where": where,
                      "tolerance": ANALYSIS_RTOL, "ok": ok}))
    return ok


def compare_weights(a: Path, b: Path) -> bool:
    import torch

    from rankedit.files.checkpoint import Checkpoint

    ca, cb = Checkpoint(a), Checkpoint(b)
    worst_ulps, equal, total, where = 0.0, 0, 0, None
    for name in ca.names:
        x, y = ca.get(name), cb.get(name)
        if x.dtype != y.dtype or x.shape != y.shape:
            print(json.dumps({"check": "weights", "ok": False, "where": f"{name}: {x.dtype}{list(x.shape)} vs "
                                                                         f"{y.dtype}{list(y.shape)}"}))
            return False
        if not x.is_floating_point():
            continue
        # an ulp at each entry's own scale, floored at 2^-10 of the tensor's largest entry: an entry the
        # update moved across zero has no meaningful ulp of its own
        xf, yf = x.float().abs(), y.float().abs()
        floor = max(float(xf.max()), float(yf.max())) * 2.0 ** -10 + torch.finfo(x.dtype).tiny
        ulp = torch.finfo(x.dtype).eps * torch.maximum(xf, yf).clamp_min(floor)
        diff = ((x.float() - y.float()).abs() / ulp).max().item()
        equal += int((x == y).sum())
        total += x.numel()
        if diff > worst_ulps:
            worst_ulps, where = diff, name
    ok = total > 0 and worst_ulps <= WEIGHT_ULPS
    print(json.dumps({"check": "weights", "edit": Path(a).name, "worst_ulps": worst_ulps, "where": where,
                      "bit_equal_fraction": equal / max(total, 1), "tolerance_ulps": WEIGHT_ULPS, "ok": ok}))
    return ok


def collect(out: Path) -> None:
    parts = {p.stem: json.loads(p.read_text() or "null") for p in sorted(out.glob("*.json")) if p.name != "gpu_check.json"}
    (out / "gpu_check.json").write_text(json.dumps(parts, indent=1) + "\n")


def main(argv: list[str]) -> int:
    cmd, *args = argv
    if cmd == "build":
        work = Path(args[0])
        layers = int(args[args.index("--layers") + 1]) if "--layers" in args else (2 if "--tiny" in args else 4)
        build(work, "--tiny" in args, layers)
        return 0
    if cmd == "analysis":
        return 0 if compare_analysis(Path(args[0]), Path(args[1])) else 1
    if cmd == "weights":
        return 0 if compare_weights(Path(args[0]), Path(args[1])) else 1
    if cmd == "collect":
        collect(Path(args[0]))
        return 0
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
