"""One record per metric (rankedit.analysis.metrics): the lists derived from them, and the records matching the code."""

import re
from pathlib import Path

import pytest
import torch

from rankedit.analysis import metrics
from rankedit.analysis.geometry import matrix_metrics
from rankedit.analysis.metrics import METRICS, Metric, view

SCIENCE = (Path(__file__).resolve().parent.parent / "docs" / "science.md").read_text()


def test_the_records_are_what_matrix_metrics_writes_in_its_order():
    w0 = torch.randn(16, 12, generator=torch.Generator().manual_seed(0))
    out = matrix_metrics(w0, w0 + 0.01, k=2, w_other=w0 - 0.01)
    assert list(out) == [m.name for m in METRICS]
    for m in METRICS:
        v = out[m.name]
        assert isinstance(v, list) if m.kind == "per-k" else isinstance(v, (int, float)), m.name
        if m.unit:
            assert 0.0 <= v <= 1.0, m.name


def test_every_record_is_defined_in_the_science_reference():
    defined = set(re.findall(r"`([a-z0-9_\-]+)`", SCIENCE))
    assert {m.name for m in METRICS} - defined == set()
    assert all(m.definition and "\n" not in m.definition for m in METRICS)


def test_the_views_keep_the_order_the_published_outputs_have():
    # the lists report.json, the terminal table and the card were written with before the records;
    # showing another metric in a view is a change of those outputs, and of this test
    assert metrics.SCALAR_METRICS == tuple(m.name for m in METRICS if m.kind == "scalar")
    assert "k" not in metrics.SCALAR_METRICS and "angles_left_deg" not in metrics.SCALAR_METRICS
    assert view("compare") == ("rel_update_norm", "sparsity_bf16", "rank_fraction", "effective_rank", "rank1_energy",
                               "angle_left_deg", "angle_right_deg", "spectral_shift", "overlap_principal",
                               "overlap_principal_topq", "propensity_share", "jaccard")
    assert view("table") == ("sparsity_bf16", "sparsity_atol", "rank_fraction", "effective_rank", "rank1_energy",
                             "angle_left_deg", "angle_right_deg", "spectral_shift", "overlap_principal", "overlap_low",
                             "overlap_principal_topq", "rel_update_norm", "propensity_share", "jaccard",
                             "jaccard_expected")
    assert view("card") == ("sparsity_bf16", "rank1_energy", "effective_rank", "stable_rank", "angle_left_deg",
                            "rel_update_norm")
    assert set(metrics.HEATMAPS) == {"sparsity_bf16", "angle_left_deg", "spectral_shift", "rank1_energy"}


def test_the_consumers_read_the_records():
    from rankedit.publish.card import ANALYSIS_KEYS
    from rankedit.report.rows import COMPARE_METRICS
    from rankedit.report.terminal import TABLE_METRICS

    assert (COMPARE_METRICS, TABLE_METRICS, ANALYSIS_KEYS) == (view("compare"), view("table"), view("card"))


def test_a_record_with_an_unknown_kind_direction_or_view_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Metric("x", "a thing", "vector")
    with pytest.raises(ValueError, match="better"):
        Metric("x", "a thing", "scalar", better="up")
    with pytest.raises(ValueError, match="views"):
        Metric("x", "a thing", "scalar", views=("poster",))
    with pytest.raises(ValueError, match="views"):
        Metric("x", "a thing", "scalar", views=("table",), leads=("card",))
    with pytest.raises(ValueError, match="unknown view"):
        view("poster")
