"""rankedit compress: the bisection on constructed retention curves, and the search on a planted pair.

The planted pair (``rankedit.testing.planted``) is a tiny Llama whose gain on its own
lm-eval task is carried by r = 4 orthogonal rank-1 components of down_proj's update,
with singular values 8, 4, 2, 1; component i alone fixes block i of the problems.
rank-k's retention is therefore exactly k/4, and the search must find exactly the k
that the target asks for.
"""

import json
import math
import shutil

import pytest

import rankedit
from rankedit.core.errors import RankeditError
from rankedit.files.patch import write_patch
from rankedit.pipeline.compress import bisect
from rankedit.pipeline.compress.writing import exact_line, frontier_doc
from rankedit.testing.planted import TASK, build_pair
from tests.clirun import run_cli


# ---- the pure search ------------------------------------------------------------------------
def _curve(threshold: int, width: float = 0.0):
    """A monotone retention: 0 below ``threshold``, 1 from it on; lower bound ``width`` below."""
    calls = []

    def f(k):
        calls.append(k)
        v = 1.0 if k >= threshold else k / (2 * threshold)
        return v, v - width

    return f, calls


@pytest.mark.parametrize("n", [1, 2, 7, 8, 20])
def test_bisection_finds_every_threshold_exactly(n):
    for t in range(1, n + 1):
        f, calls = _curve(t)
        s = bisect.smallest_meeting(range(1, n + 1), f, keep=0.9, max_evals=100)
        assert s.winner.budget == t and s.resolved
        assert len(calls) == len(set(calls)) == s.evals  # no budget evaluated twice
        assert s.evals <= 2 * math.ceil(math.log2(n)) + 1


def test_bisection_gallops_from_the_small_end_then_bisects():
    f, calls = _curve(3)
    s = bisect.smallest_meeting(range(1, 9), f, keep=0.9)
    assert calls == [1, 2, 4, 3] and s.winner.budget == 3
    assert [p.meets for p in s.probes] == [False, False, True, True]


def test_bisection_on_the_lower_bound():
    # R = k/40 with an interval 0.1 wide below it: the point meets 0.5 from k = 20, the lower bound from k = 24
    def f(k):
        return k / 40, k / 40 - 0.1

    grid = range(1, 41)
    assert bisect.smallest_meeting(grid, f, 0.5, "point", max_evals=100).winner.budget == 20
    assert bisect.smallest_meeting(grid, f, 0.5, "lower", max_evals=100).winner.budget == 24


def test_bisection_cap_none_meeting_and_undefined():
    f, calls = _curve(19)
    s = bisect.smallest_meeting(range(1, 101), f, keep=0.9, max_evals=8)
    assert s.evals == 8 and s.winner.meets and s.winner.budget >= 19 and not s.resolved
    f, calls = _curve(1000)  # never reached: the last budget is probed and fails
    s = bisect.smallest_meeting(range(1, 9), f, keep=0.9)
    assert s.winner is None and calls == [1, 2, 4, 8]
    s = bisect.smallest_meeting([1, 2], lambda k: (math.nan, None), keep=0.1)
    assert s.winner is None and not bisect.judged(None, None, 0.1, "lower")
    assert bisect.judged(0.5, 0.2, 0.5, "point") and not bisect.judged(0.5, 0.2, 0.5, "lower")


# ---- the planted pair ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RANKEDIT_CACHE", str(root / "cache"))  # a cache of its own: "scored now" counts are exact
        base, tuned, task = build_pair(root)
        yield root, base, tuned, task


def _logits(path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.arange(1, 9).unsqueeze(0)).logits


def _scores_cached(root):
    return sorted(p.name for p in (root / "cache" / "scores").iterdir())


def _run(planted, out, **kw):
    root, base, tuned, task = planted
    kw.setdefault("families", ["rank-k"])
    return rankedit.compress(base, tuned, root / out, tasks=[TASK], include_paths=[task], device="cpu",
                             n_boot=500, quiet=True, **kw)


def test_compress_finds_the_planted_rank(planted):
    root = planted[0]
    doc = _run(planted, "keep70", keep=0.7)
    fam = doc["families"]["rank-k"]
    assert doc["winner"]["family"] == "rank-k" and doc["winner"]["budget"] == 3 and fam["resolved"]
    assert fam["evaluated"] == 4 < 8 and fam["grid"] == [1, 8]  # k = 1, 2, 4, then 3
    got = {c["budget"]: c["criterion"]["value"] for c in doc["candidates"]}
    assert got == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}  # k/r exactly
    w = doc["winner"]
    # LoRA factors of rank 3 on every edited matrix, in float32 (4 bytes a value)
    assert w["stored_bytes"] == 3 * 4 * sum(m + n for m, n in [(16, 16), (8, 16), (8, 16), (16, 16), (8, 16),
                                                                 (8, 16), (16, 8)])
    assert w["bytes_ratio"] == pytest.approx(w["stored_bytes"] / w["bf16_delta_bytes"])
    assert (root / "keep70" / "artifact").is_dir() and w["artifact"]["path"]
    on_disk = json.loads((root / "keep70" / "compress.json").read_text())
    assert on_disk["winner"]["label"] == "rank-k k=3" and on_disk["target"] == "point"
    assert (root / "keep70" / "frontier.png").is_file()
    # the lossless point: the exact patch's bytes, R = 1 from the tuned model's own scores (not scored again)
    e = doc["exact_patch"]
    assert e["stored_bytes"] == write_patch(planted[1], planted[2], root / "keep70-patch", progress=False)["patch_bytes"]
    assert e["scored_as"] == "tuned" and e["retention"][TASK] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0,
                                                                  "gain": doc["tuned_gain"][TASK]["value"]}
    assert e["bytes_ratio"] == pytest.approx(e["stored_bytes"] / w["bf16_delta_bytes"])
    assert e["stored_bytes"] > 0 and e["checkpoint_ratio"] == pytest.approx(e["stored_bytes"] / e["checkpoint_bytes"])
    assert [r["retention"] for r in frontier_doc(doc)["frontier"] if r["edit"] == "exact patch"] == [1.0]
    assert exact_line(doc) in (root / "keep70" / "compress.md").read_text()
    assert "rank-k k=3" in (root / "keep70" / "compress.md").read_text()
    # the winner's artifact rebuilds the very edit that was scored: apply it, build the edit, compare logits
    applied = rankedit.apply(root / "keep70" / "artifact", planted[1], root / "keep70-applied", progress=False)
    # compress's rank family is the truncated SVD (scale none), an extraction
    built = rankedit.build_edit("rank-k", planted[1], planted[2], root / "keep70-built", k=3, scale="none", progress=False)
    assert _logits(applied).sub(_logits(built)).abs().max() <= 1e-5

    # a second call, and other targets whose probes were all scored before: nothing is built or scored
    before = _scores_cached(root)
    again = _run(planted, "keep70", keep=0.7)
    assert again["winner"]["budget"] == 3 and all(c["cached"] for c in again["candidates"])
    all95 = _run(planted, "keep95", keep=0.95)
    assert all95["winner"]["budget"] == 4 and all95["families"]["rank-k"]["scored_now"] == 0
    # k = 3 has R = 0.75 but its interval's lower bound is under 0.7: only k = 4 keeps 0.7 with confidence
    lower = _run(planted, "lower", keep=0.7, target="lower")
    assert lower["winner"]["budget"] == 4 and lower["target"] == "lower"
    assert [c for c in lower["candidates"] if c["budget"] == 3][0]["criterion"]["ci_low"] < 0.7
    assert _scores_cached(root) == before


def test_compress_cli_prints_the_winner_and_fixed_families(planted, capsys):
    root, base, tuned, task = planted
    code, out, err = run_cli(["compress", base, tuned, "--keep", "0.95", "--family", "rank-k", "--family",
                              "sub-rank-1", "--tasks", TASK, "--include-path", task, "--device", "cpu",
                              "-o", root / "cli"], capsys)
    assert code == 0, err
    assert "winner: rank-k k=4, 2,944 bytes = " in out
    assert "× the bf16 delta; R rankedit_planted = 1.00 [1.00, 1.00] (target: keep ≥ 0.95 of the gain on the " \
           "point estimate of R)" in out
    assert "\nexact patch: " in out and "R = 1 (its rebuild is the tuned model bit for bit" in out
    assert "; winner: 0.00294 MB, R rankedit_planted = 1.00 [1.00, 1.00] (the exact patch is " in out
    doc = json.loads((root / "cli" / "compress.json").read_text())
    sub = doc["families"]["sub-rank-1"]
    assert sub["fixed"] and sub["evaluated"] == 1  # one size, one candidate
    one = [c for c in doc["candidates"] if c["family"] == "sub-rank-1"][0]
    assert one["criterion"]["value"] == 0.25 and not one["meets"]  # the top component alone: block 1


def test_compress_resumes_after_an_interrupt(planted, monkeypatch):
    import rankedit.scoring.score as scoring

    root = planted[0]
    real, calls = scoring.score, []

    def interrupted(*a, **kw):  # base/tuned, then three candidates, then Ctrl-C during the fourth's scoring
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(scoring, "score", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(planted, "mask", keep=0.7, families=["mask"])
    monkeypatch.setattr(scoring, "score", real)
    assert not [p for p in (root / "cache" / "compress").iterdir() if p.is_dir()]  # its build was removed
    doc = _run(planted, "mask", keep=0.7, families=["mask"])
    # the magnitude mask keeping 3 entries of down_proj's 128 (round(0.02·128)) holds the top three components
    assert doc["winner"]["budget"] == 0.02 and doc["winner"]["criterion"]["value"] == 0.75
    assert doc["families"]["mask"]["evaluated"] == 6 and doc["families"]["mask"]["scored_now"] == 3


def test_compress_bad_input_is_one_line_and_writes_nothing(planted, capsys, tmp_path):
    root, base, tuned, task = planted
    for args, msg in [(["--keep", "0"], "--keep must be"), (["--keep", "1.5"], "--keep must be"), ([], "give the tasks that hold the gain"),
                      (["--family", "rank-k", "--tasks", TASK, "--include-path", task, "--max-candidates", "0"],
                       "--max-candidates must be at least 1")]:
        code, out, err = run_cli(["compress", base, tuned, *args, "-o", tmp_path / "x"], capsys)
        assert code == 1 and err.startswith("error: ") and msg in err and err.count("\n") == 1
    code, _, err = run_cli(["compress", base, "-o", tmp_path / "x"], capsys)
    assert code == 1 and "give BASE and TUNED, or --organism" in err
    assert not (tmp_path / "x").exists()
    twin = tmp_path / "twin"  # the base again, elsewhere: no gain to keep
    shutil.copytree(base, twin)
    with pytest.raises(RankeditError, match="gain over base is not significant on any trained task "
                                            r"\(rankedit_planted: \+0.0 points"):
        rankedit.compress(base, twin, tmp_path / "y", tasks=[TASK], include_paths=[task], device="cpu", quiet=True)
    assert not (tmp_path / "y").exists()
