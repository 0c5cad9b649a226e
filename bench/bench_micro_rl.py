"""Does a changed micro recipe give GRPO a gain? Pretrain (or reuse) a micro base, run GRPO, score both.

    python bench/bench_micro_rl.py OUT [--change JSON] [--base DIR] [--seed 0] [--n 1000]

--change updates the micro recipe per section, e.g.
'{"pretrain": {"batch": 32, "steps": 1000}, "rl": {"lr": 3e-5, "steps": 200}}'; --base reuses a
base checkpoint (the pretraining is skipped). Prints the base's greedy and sampled (T=1) accuracy on
the first N organism_id problems, the tuned run's, the paired gain with a bootstrap 95% interval,
the mean GRPO reward over the first and the last 20% of steps, and the CPU seconds of each phase.
Runs pinned as a build does (one thread, rankedit.organism.pinning). Numbers: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from rankedit.organism import pinning

pinning.apply_in_process()  # before torch loads, as in a build's worker

import torch  # noqa: E402

from rankedit.organism import tasks  # noqa: E402
from rankedit.organism.greedy_eval import greedy_completions  # noqa: E402
from rankedit.organism.model import load_fp32, recipe, save_checkpoint  # noqa: E402
from rankedit.organism.tokenizer import build_tokenizer  # noqa: E402


def rewards(model, rows) -> list[float]:
    return [tasks.reward(c, r["answer"]) for c, r in zip(greedy_completions(model, [r["prompt"] for r in rows]), rows)]


@torch.no_grad()
def sampled(model, rows) -> float:
    tok = build_tokenizer()
    enc = tok([r["prompt"] for r in rows], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    g = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=14,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    comps = tok.batch_decode(g[:, enc["input_ids"].shape[1]:], skip_special_tokens=False)
    return sum(tasks.reward(c, r["answer"]) for c, r in zip(comps, rows)) / len(rows)


def paired_interval(d: list[float], n_boot: int = 500) -> tuple[float, float]:
    rng = random.Random(0)
    boots = sorted(sum(d[rng.randrange(len(d))] for _ in d) / len(d) for _ in range(n_boot))
    return boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--change", default="{}")
    ap.add_argument("--base", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=1000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    r = recipe("micro", 0)
    for k, v in json.loads(a.change).items():
        r[k].update(v) if isinstance(v, dict) else r.__setitem__(k, v)
    rows = tasks.eval_sets()["organism_id"][: a.n]
    base_dir = a.base or a.out / "base"
    if a.base is None:
        from rankedit.organism.pretrain import pretrain

        t = time.process_time()
        model, _ = pretrain(r, 0)
        print(f"pretrain: {time.process_time() - t:.1f} CPU s")
        save_checkpoint(model, base_dir)
    base = load_fp32(base_dir)
    rb = rewards(base, rows)
    print(f"base: greedy {100 * sum(rb) / len(rb):.1f}%  sampled {100 * sampled(base, rows[:256]):.1f}%")
    from rankedit.organism.rl import train_rl

    t = time.process_time()
    model, log = train_rl(base_dir, a.out / f"rl-seed{a.seed}", r, a.seed)
    cpu = time.process_time() - t
    save_checkpoint(model, a.out / f"rl-seed{a.seed}")
    tuned = load_fp32(a.out / f"rl-seed{a.seed}")
    rt = rewards(tuned, rows)
    d = [y - x for x, y in zip(rb, rt)]
    lo, hi = paired_interval(d)
    rw = [e["reward"] for e in log if "reward" in e]
    k = max(1, len(rw) // 5)
    print(f"rl: {cpu:.1f} CPU s  greedy {100 * sum(rt) / len(rt):.1f}%  gain {100 * sum(d) / len(d):+.1f} "
          f"[{100 * lo:+.1f}, {100 * hi:+.1f}]  sampled {100 * sampled(tuned, rows[:256]):.1f}%  "
          f"reward {sum(rw[:k]) / k:.3f} -> {sum(rw[-k:]) / k:.3f}")


if __name__ == "__main__":
    main()
