"""Plans and edit recipes are read strictly, and their errors come one line at a time in the plan's order.

Each case failed before: a repeated key was accepted (the last one won), `off`/`on` became YAML booleans
("Input should be a valid string"), a UTF-16 file ended in UnicodeDecodeError, `k:
99999999999999999999999999` failed only after the models were resolved and checked, and "(and N more)"
reported score.n_boot before an edit's `k: two` given lines earlier. No model is read here.
"""

from __future__ import annotations

import time

import pytest
import yaml

from clirun import run_cli  # tests/ is on sys.path (no package)
from rankedit.core.errors import RankeditError
from rankedit.files.yaml_text import StrictLoader, load_yaml
from rankedit.pipeline.plan import load_plan, parse_plan

HEAD = "base: b\ntuned: t\n"


def _plan(tmp_path, text: str, name: str = "plan.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_repeated_key_names_the_key_and_both_lines(tmp_path):
    p = _plan(tmp_path, HEAD + "edits:\n  - name: a\n    method: scale\n    name: b\n")
    with pytest.raises(RankeditError) as e:
        load_plan(p)
    assert str(e.value) == f"{p}: duplicate key 'name' at line 6 (first given at line 4); give each key once"
    with pytest.raises(RankeditError, match="duplicate key 'base' at line 3"):
        load_plan(_plan(tmp_path, HEAD + "base: c\n"))


def test_merge_keys_may_be_overridden():
    """`<<: *anchor` then a key of the anchor is YAML's override, not a repeat."""
    data = yaml.load("a: &x {k: 1, m: 2}\nb:\n  <<: *x\n  k: 3\n", Loader=StrictLoader)  # noqa: S506
    assert data["b"] == {"k": 3, "m": 2}


@pytest.mark.parametrize("word", ["off", "on", "yes", "no", "y", "n", "Off", "ON"])
def test_yaml_1_1_words_are_names_not_booleans(tmp_path, word):
    plan = load_plan(_plan(tmp_path, HEAD + f"edits:\n  - {{name: {word}, method: scale, params: {{factor: 1}}}}\n"))
    assert plan.edits[0].name == word


def test_yaml_1_2_booleans_stay_booleans():
    assert yaml.load("a: true\nb: False\nc: TRUE\nd: ~", Loader=StrictLoader) == {  # noqa: S506
        "a": True, "b": False, "c": True, "d": None}


@pytest.mark.parametrize("raw,needle", [
    (b"\xff\xfeb\x00a\x00", "not UTF-8 text, byte 0xff at offset 0 (it looks like UTF-16)"),
    (b"base: caf\xe9\n", "not UTF-8 text, byte 0xe9 at offset 9"),
])
def test_undecodable_plans_are_one_line(tmp_path, capsys, raw, needle):
    p = tmp_path / "plan.yaml"
    p.write_bytes(raw)
    code, _, err = run_cli(["run", p, "-o", tmp_path / "o"], capsys)
    assert code == 1 and err.strip() == f"error: {p}: {needle}; save it as UTF-8"
    cfg = tmp_path / "edit.yaml"
    cfg.write_bytes(raw)
    code, _, err = run_cli(["edit", "--config", cfg, "-o", tmp_path / "o"], capsys)
    assert code == 1 and needle in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_a_fifo_plan_is_refused_without_reading(tmp_path):
    import os

    os.mkfifo(tmp_path / "plan.yaml")
    with pytest.raises(RankeditError, match="not a regular file"):
        load_yaml(tmp_path / "plan.yaml")


def test_a_huge_integer_fails_at_once(tmp_path, capsys):
    p = _plan(tmp_path, HEAD + "edits:\n  - {name: r, method: rank-k, params: {k: 99999999999999999999999999}}\n")
    t = time.perf_counter()
    code, _, err = run_cli(["run", p, "-o", tmp_path / "o"], capsys)
    assert time.perf_counter() - t < 5
    assert code == 1 and err.strip() == (f"error: {p}: edits.0.params.k: 99999999999999999999999999 is out of range "
                                         "(no count rankedit takes reaches 2^63)")


def test_errors_are_reported_in_plan_order():
    data = {"base": "b", "tuned": "t", "edits": [{"name": "r", "method": "rank-k", "params": {"k": "two"}}],
            "score": {"n_boot": 5}}
    with pytest.raises(RankeditError) as e:
        parse_plan(data, "p.yaml")
    assert str(e.value).startswith("p.yaml: edits.0 (r): params.k: Input should be a valid integer (and 1 more)")
    data = {"score": {"n_boot": 5}, **{k: v for k, v in data.items() if k != "score"}}
    with pytest.raises(RankeditError) as e:
        parse_plan(data, "p.yaml")
    assert str(e.value).startswith("p.yaml: score.n_boot: Input should be greater than or equal to 100 (and 1 more)")


def test_k_above_the_matrices_fails_before_the_weights_are_read(tiny_pair, tmp_path, capsys, monkeypatch):
    """The bound comes from the headers: no weight file is checked (the finiteness check is never reached)."""
    import rankedit.files.validate as validate

    def never(*a, **k):
        raise AssertionError("weights read before the plan's bounds were checked")

    monkeypatch.setattr(validate, "check_finite", never)
    base, tuned = tiny_pair
    p = _plan(tmp_path, f"base: {base}\ntuned: {tuned}\nedits:\n  - {{name: r, method: rank-k, params: {{k: 1000}}}}\n"
                        "score: {suite: organism, limit: 2}\n")
    code, _, err = run_cli(["run", p, "-o", tmp_path / "o", "--quiet"], capsys)
    assert code == 1 and "edit r: k=1000 is above the rank of" in err and "(at most 32)" in err, err
    assert not (tmp_path / "o").exists()
