"""`rankedit merge`: every method bit-equal to its pure function per matrix, exact facts on planted updates,
mergekit's own methods equal to a plain mergekit merge, one-line refusals."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rankedit.core.errors import RankeditError
from rankedit.core.modules import classify
from rankedit.core.threads import hot_path_threads
from rankedit.edits.manifest import read_manifest
from rankedit.edits.matrix_edit import edit_matrix
from rankedit.edits.merge import build_merge, merge_methods
from rankedit.edits.registry import MatrixInputs, get_edit
from rankedit.files.checkpoint import Checkpoint
from rankedit.testing import families, synthetic

from clirun import run_cli  # tests/ is on sys.path (no package)

METHODS = ["task-arithmetic", "ties", "dare-ties", "rank-k-sum", "random-rank-k-sum", "orthogonal",
           "random-orthogonal", "disjoint-mask", "random-disjoint-mask"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A float32 tiny Llama base and two sparse runs of it."""
    root = tmp_path_factory.mktemp("merge")
    base = synthetic.build_random(root / "base", "llama", seed=0)
    a = synthetic.perturb(base, root / "a", scale=1e-2, seed=1, density=0.3)
    b = synthetic.perturb(base, root / "b", scale=1e-2, seed=2, density=0.3)
    return base, a, b


def _tensors(path):
    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def test_the_merge_methods_are_the_registered_runs_edits():
    assert list(merge_methods()) == [m for m in merge_methods()]  # registry order
    assert set(METHODS) == set(merge_methods())


@pytest.mark.parametrize("method", METHODS)
def test_each_merge_is_its_pure_function_matrix_by_matrix(runs, method, tmp_path):
    base, a, b = runs
    params = {"weights": [0.7, 0.4]} if method == "task-arithmetic" else ({"k": 2} if "k" in get_edit(method).params.model_fields else {})
    out = build_merge(method, base, [a, b], tmp_path / method, **params)
    man = read_manifest(out)
    assert man["method"] == method and len(man["matrices"]) == 14
    edit = get_edit(method)
    p = edit.params(**params)
    cks = [Checkpoint(x) for x in (base, a, b)]
    got = _tensors(out)
    short = max(min(cks[0].info(n).shape) for n in cks[0].names if len(cks[0].info(n).shape) == 2)
    for name in cks[0].names:
        info = classify(name, tuple(cks[0].info(name).shape), cks[0].model_type, cks[0].config)
        if not info.is_matrix:
            assert torch.equal(got[name], cks[0].get(name))
            continue
        with hot_path_threads("edit", short):  # the writers' thread policy: BLAS sums in the same order
            want = edit_matrix(edit, p, name, info, cks[0].get(name), [cks[1].get(name), cks[2].get(name)]).weight
        assert torch.equal(got[name], want), name


def _inputs(w0, *tuned, seed=0):
    return MatrixInputs(w0=w0, tuned=tuple(tuned), seed=seed, merge=True)


def test_orthogonal_on_exactly_orthogonal_updates_is_their_sum():
    w0 = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    e = torch.eye(6), torch.eye(5)
    da = 0.3 * torch.outer(e[0][0], e[1][0]) + 0.1 * torch.outer(e[0][1], e[1][1])  # A's update: rank 2
    db = 0.2 * torch.outer(e[0][3], e[1][3])  # outside A's top-2 subspaces on both sides
    x = _inputs(w0, w0 + da, w0 + db)
    for k in (1, 2):
        got = get_edit("orthogonal").run(x, get_edit("orthogonal").params(k=k)).delta
        assert torch.allclose(got, x.deltas[0] + x.deltas[1], atol=0, rtol=1e-6)
    # B inside A's top-1 subspace (same left and right vectors): all of B's update is removed
    inside = _inputs(w0, w0 + da, w0 + 0.5 * torch.outer(e[0][0], e[1][0]))
    got = get_edit("orthogonal").run(inside, get_edit("orthogonal").params(k=1)).delta
    assert torch.allclose(got, inside.deltas[0], atol=1e-7)
    # the control removes as many directions, at random: B's update loses a part it kept before
    ctrl = get_edit("random-orthogonal").run(x, get_edit("random-orthogonal").params(k=2)).delta
    assert not torch.allclose(ctrl, x.deltas[0] + x.deltas[1], atol=1e-4)


def test_disjoint_mask_on_disjoint_updates_is_their_sum_and_averages_shared_entries():
    w0 = torch.zeros(4, 4)
    da, db = torch.zeros(4, 4), torch.zeros(4, 4)
    da[0, :2], db[1, 2:] = 0.5, -0.25
    x = _inputs(w0, w0 + da, w0 + db)
    got = get_edit("disjoint-mask").run(x, get_edit("disjoint-mask").params()).delta
    assert torch.equal(got, da + db)
    db[0, 1] = 0.25  # one entry both runs changed: their mean
    y = _inputs(w0, w0 + da, w0 + db)
    res = get_edit("disjoint-mask").run(y, get_edit("disjoint-mask").params())
    want = da + db
    want[0, 1] = (0.5 + 0.25) / 2
    assert torch.equal(res.delta, want)
    assert res.density == 4 / 16  # the union of the two masks: (0,0), (0,1), (1,2), (1,3)


def test_rank_k_sum_of_rank_one_updates_is_their_sum():
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(8, 6, generator=g)
    da = torch.outer(torch.randn(8, generator=g), torch.randn(6, generator=g))
    db = torch.outer(torch.randn(8, generator=g), torch.randn(6, generator=g))
    x = _inputs(w0, w0 + da, w0 + db)
    res = get_edit("rank-k-sum").run(x, get_edit("rank-k-sum").params(k=1))
    assert torch.allclose(res.delta, da + db, atol=1e-5)
    assert res.rank_kept == 2


def test_task_arithmetic_is_the_weighted_sum_and_ties_is_mergekits_own(runs, tmp_path):
    base, a, b = runs
    out = build_merge("task-arithmetic", base, [a, b], tmp_path / "ta", weights=[0.7, 0.4])
    cks = [Checkpoint(x) for x in (base, a, b)]
    got = _tensors(out)
    name = "model.layers.0.mlp.down_proj.weight"
    w0, wa, wb = (c.get(name) for c in cks)
    assert torch.allclose(got[name], w0 + 0.7 * (wa - w0) + 0.4 * (wb - w0), atol=1e-6, rtol=0)
    # ties through rankedit = a plain mergekit-yaml ties merge computing in float32, bit for bit
    ours = _tensors(build_merge("ties", base, [a, b], tmp_path / "ties", density=0.3))
    plain = {"merge_method": "ties", "base_model": str(base), "dtype": "float32", "out_dtype": "float32",
             "parameters": {"density": 0.3},
             "models": [{"model": str(p), "parameters": {"weight": 1.0}} for p in (a, b)]}
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    run_merge(MergeConfiguration.model_validate(plain), str(tmp_path / "plain"), options=MergeOptions(copy_tokenizer=False))
    theirs = _tensors(tmp_path / "plain")
    for n in cks[0].names:
        assert torch.equal(ours[n], theirs[n]), n


def test_merge_on_a_moe_family_streams_every_expert(tmp_path):
    base = families.build(tmp_path / "base", "qwen3_moe")
    a = families.plant(base, tmp_path / "a", seed=1, experts=[0])
    b = families.plant(base, tmp_path / "b", seed=2, experts=[1])
    out = build_merge("disjoint-mask", base, [a, b], tmp_path / "out")
    man = read_manifest(out)
    assert man["writer"]["route"] == "streamed"
    got, cks = _tensors(out), [Checkpoint(x) for x in (base, a, b)]
    name = next(n for n in cks[0].names if ".experts.0." in n and n.endswith("down_proj.weight"))
    w0, wa, wb = (c.get(name).float() for c in cks)
    # expert 0 changed only in run A: the merge holds A's update there (stored back in bf16)
    assert torch.equal(got[name], wa.to(got[name].dtype))
    assert torch.equal(wb, w0)


def test_merge_cli_and_its_refusals(runs, tmp_path, capsys):
    base, a, b = runs
    code, out, err = run_cli(["merge", base, a, b, "--method", "orthogonal", "--k", "1", "-o", tmp_path / "o"],
                             capsys)
    assert code == 0, err
    assert "coverage: 14 matrices" in out and "written to" in out
    for args, msg in [((base, a, "--method", "ties", "-o", tmp_path / "x"), "at least two tuned runs"),
                      ((base, a, b, "--method", "ties", "--k", "2", "-o", tmp_path / "x"), "--k does not apply to --method ties"),
                      ((base, a, b, "--method", "task-arithmetic", "--weights", "1,2,3", "-o", tmp_path / "x"),
                       "3 weights for 2 runs"),
                      ((base, a, a, "--method", "ties", "-o", tmp_path / "x"), "are the same checkpoint")]:
        code, out, err = run_cli(["merge", *args], capsys)
        assert code != 0 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x").exists()
    with pytest.raises(RankeditError, match="unknown merge method"):
        build_merge("rank-k", base, [a, b], tmp_path / "y")


def test_merges_are_not_edits_of_one_run():
    from click.testing import CliRunner

    from rankedit.cli.edit import edit

    listed = CliRunner().invoke(edit, ["--help"]).output
    assert "ties" not in listed and "rank-k" in listed
