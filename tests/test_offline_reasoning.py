"""The reasoning suite offline: lm-eval's real task configs (prompts, filters, metrics,
math_verify) on local copies of each dataset, in its own format (tests/reasoning_data.py),
scoring the micro organism; and --include-path folders overriding lm-eval's built-ins.

Cost: lm-eval indexes its ~15k built-in task configs (~10 s on an idle core), once for the
whole test process (rankedit.scoring.task_index: the suite test, the include-path override and
every other test that needs lm-eval's own tasks share it), and prepares 11 small datasets; the
generations are a few tokens. Measured side by side on the shared 2-core machine (load 8-16):
the suite test 335 s -> 187 s, the include-path override 169 s -> 3 s (it no longer indexes),
so the suite test stays marked slow.
"""

import json

import pytest

from clirun import run_cli
from reasoning_data import MATH_SUBJECTS, write_reasoning_data


def _samples(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.slow
def test_reasoning_suite_runs_offline_on_local_copies(micro_organism, tmp_path, capsys):
    data = write_reasoning_data(tmp_path / "data", n=3)
    code, out, err = run_cli(["score", micro_organism / "base", "--suite", "reasoning", "--data-dir", data,
                              "--limit", "2", "--max-gen-toks", "6", "--batch-size", "32", "-o", tmp_path / "s"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "s" / "scores.json").read_text())
    got = {(r["task"], r["metric"]) for r in doc["scores"]}
    minerva = [f"minerva_math_{s}" for s in ("algebra", "counting_and_prob", "geometry", "intermediate_algebra",
                                              "num_theory", "prealgebra", "precalc")]
    assert len(minerva) == len(MATH_SUBJECTS)
    for task in ("minerva_math500", *minerva):  # lm-eval's math tasks, math_verify included
        assert {(task, "exact_match,none"), (task, "math_verify,none")} <= got
    assert {("gsm8k_cot_zeroshot", "exact_match,strict-match"), ("gsm8k_cot_zeroshot", "exact_match,flexible-extract")} <= got
    # AIME: 16 samples per problem by default, scored as avg@16 (the greedy run's other tasks stay greedy)
    for task in ("aime24", "aime25"):
        assert (task, "avg@16_exact_match,none") in got
    lines = _samples(tmp_path / "s" / "base" / "samples_aime24.jsonl")
    assert len(lines) == 2 and all(len(s["resps"][0]) == 16 for s in lines)
    prompt, gen = lines[0]["arguments"][0]
    assert prompt == "Question: Find 2+1.\nAnswer:"  # upstream's prompt
    assert (gen["do_sample"], gen["temperature"], gen["top_p"], gen["max_gen_toks"]) == (True, 0.6, 0.95, 6)
    # the problems are the local copies' own (AIME 2024's parquet columns, its lone file as the train split)
    assert {s["doc"]["Problem"] for s in lines} == {"Find 2+1.", "Find 3+4."}
    g = _samples(tmp_path / "s" / "base" / "samples_gsm8k_cot_zeroshot.jsonl")
    assert g[0]["doc"]["question"].startswith("Tom has 2 apples") and len(g[0]["resps"][0]) == 1
    assert g[0]["arguments"][0][1]["do_sample"] is False


def test_local_copies_are_found_in_each_dataset_s_layout(tmp_path):
    from rankedit.core.errors import RankeditError
    from rankedit.scoring.data_dir import local_copy

    data = write_reasoning_data(tmp_path / "data", n=1)
    # a config folder (GSM8K's main, a MATH subject), else the copy itself with no config name
    assert local_copy(data, "openai/gsm8k", "main", "t") == (str(data / "openai" / "gsm8k" / "main"), None)
    assert local_copy(data, "EleutherAI/hendrycks_math", "algebra", "t")[0].endswith("hendrycks_math/algebra")
    assert local_copy(data, "HuggingFaceH4/MATH-500", "default", "t") == (str(data / "HuggingFaceH4" / "MATH-500"), None)
    # a copy whose README declares its configs keeps the config name (datasets reads the README)
    (data / "openai" / "gsm8k" / "README.md").write_text("---\nconfigs:\n- config_name: socratic\n---\n")
    assert local_copy(data, "openai/gsm8k", "socratic", "t") == (str(data / "openai" / "gsm8k"), "socratic")
    with pytest.raises(RankeditError, match=r"no local copy of math-ai/aime26 for task aime26 \(expected the "
                                            r"dataset's files in .*/math-ai/aime26/, e.g. hf download math-ai/aime26"):
        local_copy(data, "math-ai/aime26", None, "aime26")


@pytest.mark.slow
def test_include_path_overrides_a_builtin_task_as_lm_eval_does(micro_organism, tmp_path, capsys):
    """A local group entry overriding gsm8k_cot_zeroshot's dataset (the issue's folder): the override
    keeps the built-in's prompt, filters and metric, read from a local json file."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [{"question": "What is 2+3?", "answer": "2+3=5\n#### 5"}, {"question": "What is 4+4?", "answer": "#### 8"}]
    (tasks / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "local_gsm8k.yaml").write_text(
        "group: local_gsm8k\ntask:\n  - task: gsm8k_cot_zeroshot\n    dataset_path: json\n    dataset_name: null\n"
        f"    dataset_kwargs:\n      data_files:\n        train: {tasks / 'gsm8k.jsonl'}\n"
        f"        test: {tasks / 'gsm8k.jsonl'}\n")
    code, out, err = run_cli(["score", micro_organism / "base", "--tasks", "local_gsm8k", "--include-path", tasks,
                              "--max-gen-toks", "4", "-o", tmp_path / "s"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "s" / "scores.json").read_text())
    got = {(r["task"], r["metric"]): r for r in doc["scores"]}
    assert got["gsm8k_cot_zeroshot", "exact_match,flexible-extract"]["n"] == 2
    first = _samples(tmp_path / "s" / "base" / "samples_gsm8k_cot_zeroshot.jsonl")[0]
    assert first["arguments"][0][0] == "Q: What is 2+3?\nA: Let's think step by step."  # the built-in's prompt
