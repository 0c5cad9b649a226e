"""A plan's demands on the machine (scoring backend, devices) fail before any work, naming the plan key."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml

import clirun  # tests/ is on sys.path (no package)
from rankedit.core.errors import RankeditError
from rankedit.pipeline.plan import parse_plan
from rankedit.pipeline.requirements import check_requirements

HAS_VLLM = importlib.util.find_spec("vllm") is not None
EDITS = [{"name": "r1", "method": "rank-k", "params": {"k": 1}}]


def _problem(data: dict) -> str:
    with pytest.raises(RankeditError) as e:
        check_requirements(parse_plan(data, "p.yaml"), "p.yaml")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_vllm_backend_names_the_plan_key():
    msg = _problem({"organism": {}, "edits": EDITS, "score": {"backend": "vllm", "device": "cuda:99"}})
    if HAS_VLLM:  # installed: the missing device is what fails
        assert msg.startswith("p.yaml: score.device: vllm needs a CUDA GPU")
    else:
        assert msg.startswith("p.yaml: score.backend: vllm is not installed in this environment")
        assert "Scoring with vllm" in msg and "--backend" not in msg


@pytest.mark.parametrize("key, data", [
    ("device", {"device": "cuda:99"}),
    ("analyze.device", {"analyze": {"device": "cuda:99"}}),
    ("organism.device", {"organism": {"device": "cuda"}}),
    ("score.device", {"score": {"device": "cuda:99"}}),
])
def test_missing_devices_name_their_key(key, data):
    if key == "organism.device" and torch.cuda.is_available():
        data = {"organism": {}, "device": "cuda:99"}  # a real GPU: ask for one it does not have
        key = "device"
    msg = _problem({"organism": {}, "edits": EDITS, **data})
    assert msg.startswith(f"p.yaml: {key}: 'cuda")
    why = "asks for a CUDA GPU, but none is available" if not torch.cuda.is_available() else "CUDA device(s)"
    assert why in msg


def test_unused_devices_and_hf_on_cpu_pass():
    check_requirements(parse_plan({"organism": {}, "analyze": {"enabled": False, "device": "cuda:99"}}, "p.yaml"))
    check_requirements(parse_plan({"organism": {}, "edits": EDITS, "score": {"device": "cpu"}}, "p.yaml"))
    assert "must be cpu, cuda or cuda:N" in _problem({"organism": {}, "edits": EDITS, "device": "tpu"})


def test_run_with_unusable_backend_does_no_work(tiny_pair, tmp_path, capsys):
    plan = tmp_path / "p.yaml"
    plan.write_text(yaml.safe_dump({"base": str(tiny_pair[0]), "tuned": str(tiny_pair[1]), "edits": EDITS,
                                    "score": {"backend": "vllm", "device": "cuda:99"}}))
    code, out, err = clirun.run_cli(["run", plan, "-o", tmp_path / "o"], capsys)
    lines = [x for x in (out + err).splitlines() if x.startswith("error: ")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in out + err
    assert lines[0].startswith(f"error: {plan}: score.")
    assert not (tmp_path / "o").exists()  # no edits, no analysis, not even OUT
