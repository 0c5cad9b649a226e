"""Figures read from their own matplotlib objects: no empty panel, axes labelled in words, legends that match
what is drawn. A synthetic report with a task no model solves (as the micro organism's organism_hard)."""

import matplotlib.pyplot as plt
import pytest

from rankedit.report import run_figures as figures, frontier_figure

TASKS = ["t_id", "t_zero", "ctl"]
EDITS = [("rank1", None), ("rank1-random", "rank1"), ("mask", None)]


def _report():
    scores = {m: {"t_id": {"value": v, "stderr": 0.01}, "t_zero": {"value": 0.0, "stderr": 0.0},
                  "ctl": {"value": 0.3, "stderr": 0.02}}
              for m, v in [("base", 0.2), ("tuned", 0.4), ("rank1", 0.35), ("rank1-random", 0.2), ("mask", 0.3)]}
    frontier = []
    for i, (name, ctl) in enumerate(EDITS):
        for task, r in (("t_id", 0.5 + 0.1 * i), ("t_zero", None)):
            frontier.append({"edit": name, "method": "m", "of": "tuned", "control_of": ctl, "control": ctl is not None,
                             "task": task, "storage_bytes": 1000 * (i + 1), "storage_ratio": 0.01 * (i + 1),
                             "retention": r, "ci_low": None if r is None else r - 0.1,
                             "ci_high": None if r is None else r + 0.1, "retention_defined": r is not None,
                             "gain": 0.0, "gain_ci_low": 0.0, "gain_ci_high": 0.0,
                             "forgetting": {"ctl": {"value": -0.01 * i, "ci_low": -0.02 * i - 0.01,
                                                    "ci_high": 0.01}},
                             "pareto": i == 0})
    return {"name": "synthetic", "tasks": TASKS, "control_tasks": ["ctl"], "scores": scores,
            "metrics": {t: "exact_match,extract" for t in TASKS}, "rows": [], "frontier": frontier,
            "edits": [{"name": n, "control_of": c} for n, c in EDITS]}


@pytest.fixture
def kept(monkeypatch):
    """The figures each function made, kept open instead of closed after saving."""
    made, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: made.append(fig))
    yield made
    for fig in made:
        close(fig)


def _drawn_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and (ax.lines or ax.patches or ax.collections or ax.containers)]


def test_scores_figure_drops_a_task_no_model_solves_and_says_so(tmp_path, kept):
    assert figures.scores_per_model(_report(), tmp_path / "scores.png").stat().st_size > 1000
    (fig,) = kept
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["t_id", "ctl"]
    assert "no panel for t_zero: every model scored 0" in fig._suptitle.get_text()
    for ax in panels:
        assert ax.get_xlabel() == "exact-match accuracy (lm-eval exact_match, filter extract)"
        assert len(ax.patches) == 5  # one bar per model, none empty
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["base and whole runs", "edits", "controls"]
    # the legend's three codes are the colours drawn: runs dark, edits filled blue, controls hollow blue
    faces = {tuple(round(c, 3) for c in p.get_facecolor()) for p in panels[0].patches}
    assert len(faces) == 3


def test_frontier_figure_draws_no_flat_panel_and_names_only_drawn_markers(tmp_path, kept):
    assert frontier_figure.frontier_plot(_report(), tmp_path / "frontier.png").stat().st_size > 1000
    (fig,) = kept
    titled = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert [ax.get_title(loc="left") for ax in titled] == ["retention on t_id", "forgetting on the control task ctl"]
    assert all(ax in _drawn_axes(fig) for ax in titled)
    assert "not drawn: t_zero" in fig._suptitle.get_text()
    legend = fig.legends[0]
    assert "square" not in legend.get_title().get_text()  # no edit of SFT, so no square is drawn
    assert {t.get_text() for t in legend.get_texts()} >= {"rank1", "rank1-random (control of rank1)", "mask"}


def test_metric_words():
    assert figures.metric_words("exact_match,extract") == "exact-match accuracy (lm-eval exact_match, filter extract)"
    assert figures.metric_words("acc,none") == "accuracy (lm-eval acc)"
    assert figures.metric_words("brand_new") == "brand new (lm-eval brand_new)"


def test_early_stop_figure_with_one_window_spans_the_run(tmp_path, kept):
    from rankedit.report.early_stop_figure import early_stop_plot

    rows = [{"mode": "linear", "f": 0.4, "weight_error": 0.95, "retention": None},
            {"mode": "window-end", "f": 0.4, "weight_error": 0.62, "retention": None}]
    assert early_stop_plot({"rows": rows, "speedup": {"keep": 0.95}}, tmp_path / "e.png").stat().st_size > 1000
    (fig,) = kept
    for ax in fig.axes:
        assert ax.get_xlim() == (0.0, 1.0) and list(ax.get_xticks()) == [0.0, 0.4, 1.0]
        assert ax.get_xlabel() and ax.get_ylabel()
    assert "retention undefined" in " ".join(t.get_text() for t in fig.axes[1].texts)  # the empty panel says why
