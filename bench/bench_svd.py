"""Per-matrix decomposition time of the SVD edits: the default contract against ``--exact-svd`` (the guarded
SVD as it was), on bf16 updates of three kinds, and the steps of the exact path side by side.

One thread (the thread policy's choice on 2 cores), cases interleaved in one process, min of ``--repeat``.
Matrices are built here: a random-init W0 (std 0.02, bf16), an update of 1e-3 of its RMS, W1 stored in bf16.

    python bench/bench_svd.py                 # Qwen2.5-0.5B shapes (4864 x 896, 896 x 896) and 1536 x 4224
    python bench/bench_svd.py --repeat 3
"""

from __future__ import annotations

import argparse
import time

import torch

from rankedit.core import near_optimal
from rankedit.core.guarded_svd import exact_top_k
from rankedit.core.linalg import gram64, gram_eigh
from rankedit.core.svd import edit_svd, storage_noise


def update(kind: str, m: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``bench/harness.py``'s UPDATES, one matrix: rl (10% sparse + a rank-1 with 20% of the norm), structured
    (half the energy in a halving rank-8 part), noise (dense Gaussian)."""
    d = torch.randn(m, n, generator=gen)
    if kind == "rl":
        d = d * (torch.rand(m, n, generator=gen) < 0.1)
        one = torch.outer(torch.randn(m, generator=gen), torch.randn(n, generator=gen))
        d = 0.2 * one / one.norm() + 0.96 ** 0.5 * d / d.norm()
    elif kind == "structured":
        low = (torch.randn(m, 8, generator=gen) * 0.5 ** torch.arange(8.0)) @ torch.randn(8, n, generator=gen)
        d = 0.5 ** 0.5 * low / low.norm() + 0.5 ** 0.5 * d / d.norm()
    return d


def pair(kind: str, shape: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w0 = (torch.randn(*shape, generator=gen) * 0.02).bfloat16().float()
    d = update(kind, *shape, gen)
    w1 = (w0 + d * (1e-3 * 0.02 / d.pow(2).mean().sqrt())).bfloat16().float()
    return w0, w1


def timed(cases: dict, repeat: int) -> dict:
    times, facts = {c: [] for c in cases}, {}
    for _ in range(repeat):
        for c, f in cases.items():  # interleaved: drift in machine load hits every case alike
            t0 = time.perf_counter()
            out = f()
            times[c].append(time.perf_counter() - t0)
            if isinstance(out, tuple) and len(out) == 2 and hasattr(out[1], "method"):
                facts[c] = out[1].method + (f", eps {out[1].residual_bound:.1e}" if out[1].residual_bound else "")
    return {c: (min(t), facts.get(c, "")) for c, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'matrix':<42}{'--exact-svd s':>15}{'default s':>11}{'x':>7}  paths")
    for shape in [(4864, 896), (896, 896)]:
        for kind in ["rl", "structured", "noise"]:
            w0, w1 = pair(kind, shape)
            dw = w1 - w0
            r = timed({"exact": lambda: edit_svd(dw, 1, exact=True),
                       "default": lambda: edit_svd(dw, 1, noise=lambda: storage_noise(w1))}, args.repeat)
            print(f"{f'dW {kind} {shape}, k=1':<42}{r['exact'][0]:>15.3f}{r['default'][0]:>11.3f}"
                  f"{r['exact'][0] / r['default'][0]:>7.1f}  {r['exact'][1]} / {r['default'][1]}", flush=True)
        r = timed({"exact": lambda: edit_svd(w0.clone(), 16, exact=True),
                   "default": lambda: edit_svd(w0.clone(), 16)}, args.repeat)
        print(f"{f'W0 (random init) {shape}, k=16':<42}{r['exact'][0]:>15.3f}{r['default'][0]:>11.3f}"
              f"{r['exact'][0] / r['default'][0]:>7.1f}  {r['exact'][1]} / {r['default'][1]}", flush=True)
    w0, w1 = pair("rl", (1536, 4224))
    dw = w1 - w0
    print("\nthe exact path's steps on a 1536 x 4224 rl update (s, min of repeats):")
    steps = {
        "float64 Gram + full eigh (the old exact core)": lambda: gram_eigh(gram64(dw)[1]),
        "float64 Gram + subset evr, top 2": lambda: near_optimal.top_triplets(dw, 2, float32_gram=False),
        "float32 Gram + subset evr, top 2": lambda: near_optimal.top_triplets(dw, 2, float32_gram=True),
        "exact_top_k (float32 Gram, a posteriori check)": lambda: exact_top_k(dw, 1),
        "default edit_svd": lambda: edit_svd(dw, 1, noise=lambda: storage_noise(w1)),
        "--exact-svd edit_svd": lambda: edit_svd(dw, 1, exact=True),
    }
    for c, (t, fact) in timed(steps, args.repeat).items():
        print(f"  {c:<50}{t:>8.3f}  {fact}")


if __name__ == "__main__":
    main()
