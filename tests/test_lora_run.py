"""An adapter-trained organism run through `rankedit run`, end to end.

trl's GRPOTrainer with ``peft_config`` (rank 4 on every projection) trains the micro
organism's base for 4 steps (4 prompts x 4 generations), saving the adapter and two
``checkpoint-N`` adapters as trl's users get them; the plan names the adapter folders as
TUNED and as the run's checkpoints. Cost on the shared, loaded 2-core machine: 20-59 s of
training and 27-47 s of pipeline (29 s of CPU time in all), so it is marked slow. Training on
one torch thread (the organism's own RL setting) took its fixture from 133 s to 24 s there
(side by side, load 8-16).
"""

import json

import pytest
import yaml

from clirun import run_cli


@pytest.fixture(scope="module")
def lora_run(micro_organism, tmp_path_factory):
    from rankedit.core.threads import torch_threads
    from rankedit.organism.model import RECIPES
    from rankedit.organism.rl import train_rl_lora

    out = tmp_path_factory.mktemp("lora-rl") / "run"
    cfg = dict(steps=4, prompts_per_step=4, generations=4, lr=1e-2, max_new_tokens=14, temperature=1.0)
    # the micro organism's own RL threads (one): a 2-thread torch only synchronises on a model this small
    with torch_threads(RECIPES["micro"]["rl"]["threads"]):
        return train_rl_lora(micro_organism / "base", out, cfg, seed=0, r=4, alpha=8, save_steps=[2, 4])


@pytest.mark.slow
def test_an_adapter_trained_run_goes_through_rankedit_run(micro_organism, lora_run, tmp_path, capsys):
    assert (lora_run / "adapter_config.json").is_file() and not list(lora_run.glob("model*.safetensors"))
    plan = {
        "name": "lora-trained",
        "base": str(micro_organism / "base"), "tuned": str(lora_run),
        "checkpoints": {"dir": str(lora_run / "checkpoints")},
        "edits": [{"name": "rank1", "method": "rank-k", "params": {"k": 1}},
                  {"name": "whole", "method": "scale", "params": {"factor": 1.0, "rest": "tuned"}},
                  {"name": "extrapolate", "method": "extrapolate", "params": {"mode": "linear"}, "checkpoints": 1.0}],
        "score": {"tasks": ["organism_id"], "limit": 40, "batch_size": 64, "n_boot": 200},
        "analyze": {"k": 4},
    }
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump(plan))
    code, out, err = run_cli(["run", p, "-o", tmp_path / "o"], capsys)
    assert code == 0, err
    assert "merging LoRA adapter" in err  # once per distinct adapter, saying where
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert set(report["scores"]) == {"base", "tuned", "rank1", "whole", "extrapolate"}
    # the whole update with the tuned rest is the tuned model: the same score on every problem
    assert report["scores"]["whole"]["organism_id"]["value"] == report["scores"]["tuned"]["organism_id"]["value"]
    bound = report["analysis"]["adapters"]["tuned"]
    assert bound["path"] == str(lora_run) and bound["r_max"] == 4 and bound["targeted_matrices"] == 14
    assert bound["bound_holds"]
    rows = [json.loads(x) for x in (tmp_path / "o" / "analysis" / "tuned" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(0 < r["rank"] <= r["lora_r"] == 4 for r in rows)
    md = (tmp_path / "o" / "report.md").read_text()
    assert "tuned is a LoRA adapter" in md and "by construction on its 14 targeted matrices" in md
