"""One decomposition of each base matrix in `rankedit run` (rankedit.core.base_decomp): the analyses and the
edits on W0's top-k share it, counted by the cache module and by the decomposition functions themselves."""

import pytest
import torch

import rankedit
from rankedit.analysis import geometry
from rankedit.core import base_decomp, svd as core_svd
from rankedit.core.guarded_svd import TOL
from rankedit.files.checkpoint import Checkpoint


@pytest.fixture()
def counted(monkeypatch):
    """(the cache module's counter, cleared; calls of the edits' decomposition; W0 Gram eigendecompositions
    the analysis made)."""
    base_decomp.decompositions.clear()
    edit_calls, eighs = [], []
    real_svd, real_keep = core_svd.edit_svd, base_decomp.keep_eigh

    def svd_counted(A, *a, **k):
        edit_calls.append(tuple(A.shape))
        return real_svd(A, *a, **k)

    def keep_counted(key, w0, eig):
        eighs.append(tuple(w0.shape))
        return real_keep(key, w0, eig)

    monkeypatch.setattr(core_svd, "edit_svd", svd_counted)
    monkeypatch.setattr(base_decomp, "keep_eigh", keep_counted)
    return base_decomp.decompositions, edit_calls, eighs


def _plan(organism, edits_only=False) -> dict:
    plan = {"name": "decompositions", "organism": {"size": "micro", "seed": 0},
            "edits": [{"name": "off", "method": "off-principal", "params": {"k": 4}},
                      {"name": "on", "method": "principal-only", "params": {"k": 4}, "control_of": "off"}],
            "score": {"suite": "organism", "limit": 2, "n_boot": 100}, "analyze": {"k": 4}}
    if edits_only:
        plan["analyze"] = {"enabled": False}
    return plan


def _base_matrices(organism) -> int:
    ck = Checkpoint(organism / "base")
    return sum(1 for n in ck.names if ck.info(n).shape and len(ck.info(n).shape) == 2
               and not n.endswith(("embed_tokens.weight", "lm_head.weight")))


def test_run_decomposes_each_base_matrix_once(micro_organism, tmp_path, counted):
    from rankedit.pipeline.plan import parse_plan

    seen, edit_calls, eighs = counted
    rankedit.run(parse_plan(_plan(micro_organism), "p.yaml"), tmp_path / "o", quiet=True)
    # three analyses of one base (RL, SFT, SFT at matched size) and two edits on W0's top-4
    assert seen and set(seen.values()) == {1}, seen
    assert edit_calls == []  # the edits took W0's top-k from the analysis's decomposition
    assert len(eighs) == len(seen) == _base_matrices(micro_organism)


def test_edits_alone_decompose_each_base_matrix_once(micro_organism, tmp_path, counted):
    from rankedit.pipeline.plan import parse_plan

    seen, edit_calls, eighs = counted
    rankedit.run(parse_plan(_plan(micro_organism, edits_only=True), "p.yaml"), tmp_path / "o", quiet=True)
    assert eighs == [] and seen and set(seen.values()) == {1}, seen
    assert len(edit_calls) == len(seen)  # off-principal computed, its control principal-only reused


def test_the_analysis_top_k_is_exact_within_the_guard():
    """W0's top-k from the analysis's eigenpairs (what an edit takes in a run) against the edit's own."""
    w0 = torch.randn(96, 160, generator=torch.Generator().manual_seed(0))
    s, vecs = geometry.gram_eigh(geometry._short_side_grams(w0, w0)[0])
    with base_decomp.one_run():
        key, eig = base_decomp.run_eigh(w0, "cpu")
        assert eig is None
        base_decomp.keep_eigh(key, w0, (s, vecs))
        shared, acc = base_decomp.base_top_k(w0, 6, exact=False)
    own, _ = core_svd.edit_svd(w0, 6)
    assert acc.method == "exact" and acc.subspace_error == 0.0
    # ||sin Θ||_F between the two top-6 subspaces, within the guard's tolerance
    sin = (shared.U - own.U @ (own.U.T @ shared.U)).double().norm()
    assert float(sin) < TOL
    assert torch.allclose(shared.S, own.S, rtol=1e-5)
    assert shared.U.dtype == w0.dtype and shared.U.is_contiguous()


def test_an_analysis_on_shared_eigenpairs_equals_one_alone(micro_organism, counted):
    """The SFT analysis of a run takes W0's eigenpairs from the RL analysis before it: the same bits as
    its own (they are kept in LAPACK's own layout, so a product on them rounds the same)."""
    from rankedit.analysis.analyze import analyze

    _, _, eighs = counted
    o = micro_organism
    alone = analyze(o / "base", o / "sft", progress=False, k=8, base_cache=False)
    with base_decomp.one_run():
        eighs.clear()
        analyze(o / "base", o / "rl", progress=False, k=8, base_cache=False)
        made = len(eighs)
        shared = analyze(o / "base", o / "sft", progress=False, k=8, base_cache=False)
        assert made == _base_matrices(o) and len(eighs) == made  # the second analysis decomposed no W0
    assert shared == alone
