"""`rankedit trajectory`: exact facts on planted trajectories, and the command on tiny checkpoints."""

import json

import numpy as np
import pytest
import torch

from figure_checks import kept_figures, problems
from test_edits_build import cli, write_variant

from rankedit.analysis.trajectory_math import a_final_linearity, gaussian_gram, line_r2, linearity, matrix_trajectory
from rankedit.analysis.trajectory import trajectory
from rankedit.analysis.trajectory_patches import FIG_PATCHES, patch_figure
from rankedit.analysis.trajectory_plots import trajectory_plots
from rankedit.core.figure_list import written_by
from rankedit.core.threads import torch_threads


def _gram(xs):
    return np.array([[float((a * b).sum()) for b in xs] for a in xs])


def test_an_exactly_linear_trajectory_has_r2_one_and_beats_every_null():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(40, 30, generator=g, dtype=torch.float64)
    d = torch.randn(40, 30, generator=g, dtype=torch.float64)
    steps = [10, 20, 30, 50, 80, 130]
    facts, gram = matrix_trajectory(w0, [w0 + t * d for t in steps])
    lin = linearity(steps, gram, d.numel(), seed=0)
    assert lin["r2"] == pytest.approx(1.0, abs=1e-12)
    assert lin["r2_shuffled"] < 0.9 and lin["r2_random"] < 0.5 and lin["r2_walk"] < 0.95
    assert all(lin[f"excess_{k}"] > 0.05 for k in ("shuffled", "random", "walk"))
    a = np.array([f["a_final"] for f in facts])
    np.testing.assert_allclose(a, np.array(steps) * a[-1] / steps[-1], rtol=1e-10)  # a(t) ∝ t, exactly
    la = a_final_linearity(steps, a, (40, 30), seed=0)
    assert la["r2"] == pytest.approx(1.0, abs=1e-12) and la["r2"] >= la["r2_walk_q95"]
    assert all(f["cos_dw_final"] == pytest.approx(1.0) and f["cos_v_final"] == pytest.approx(1.0) for f in facts)


def test_a_random_walk_is_no_more_linear_than_its_null():
    rng = np.random.default_rng(3)
    steps = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    w0 = torch.zeros(200, 150, dtype=torch.float64)
    walk = np.cumsum(rng.standard_normal((len(steps), 200, 150)), axis=0)
    facts, gram = matrix_trajectory(w0, [torch.from_numpy(x) for x in walk])
    lin = linearity(steps, gram, 200 * 150, seed=1)
    # with 30 000 dimensions both R² concentrate: the walk is exactly as "linear" as its null walk ...
    assert abs(lin["excess_walk"]) < 0.05
    assert lin["r2"] <= lin["r2_walk_q95"] + 0.02
    # ... while against independent vectors a walk looks like a trend: why the walk null is reported
    assert lin["r2"] > lin["r2_random_q95"]
    # a(t), projected on the final step's own direction, is near-linear for a random walk (R² ~ 0.999):
    # only the null that picks its direction the same way tells the two apart
    a = np.array([f["a_final"] for f in facts])
    la = a_final_linearity(steps, a, (200, 150), seed=1, n_null=200)
    assert la["r2"] > 0.99 and abs(la["excess_walk"]) < 0.005 and la["r2"] <= la["r2_walk_q95"]


def test_the_walk_null_of_a_t_is_the_law_of_real_walks_on_the_log_scale_the_figure_shows():
    """a(t)'s walk null reads R² 1.00 because a walk's a(t) is a line to within ~1/(√m + √n)²: its 1 − R²,
    drawn from real 30 x 20 walks, has the null's mean; an exactly linear run lies far below it."""
    rng = np.random.default_rng(0)
    steps = np.arange(1.0, 7.0)
    unexplained = []
    for _ in range(100):
        walk = np.cumsum(rng.standard_normal((6, 30, 20)), axis=0)
        u, _, vt = np.linalg.svd(walk[-1])
        a = np.array([u[:, 0] @ x @ vt[0] for x in walk])
        unexplained.append(1 - line_r2(steps, np.outer(a, a)))
    with torch_threads(1):
        null = a_final_linearity(steps, steps, (30, 20), seed=0, n_null=400)
    assert 0.75 < np.mean(unexplained) / (1 - null["r2_walk"]) < 1.33
    assert 1 - null["r2_walk"] < 0.02 and null["r2"] == pytest.approx(1.0, abs=1e-12)  # a line: 1 − R² = 0
    assert null["r2_walk_q05"] < null["r2_walk"] < null["r2_walk_q95"]
    lo, hi = np.quantile(unexplained, [0.05, 0.95])
    assert 0.5 < lo / (1 - null["r2_walk_q95"]) < 2 and 0.5 < hi / (1 - null["r2_walk_q05"]) < 2


def test_random_vector_null_has_its_known_mean():
    """Isotropic vectors: the line's share of the centred variance averages 1/(n-1), drawn or by Bartlett."""
    steps = list(range(6))
    for dim in (3, 10**6):
        rng = np.random.default_rng(0)
        vals = [line_r2(steps, gaussian_gram(6, dim, rng)) for _ in range(3000)]
        assert np.mean(vals) == pytest.approx(1 / 5, abs=0.015)


def test_a_sign_flip_is_aligned_and_a_near_tie_is_flagged():
    g = torch.Generator().manual_seed(1)
    q1, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    u, v = q1[:, 0], q2[:, 0]
    w0 = torch.zeros(30, 20, dtype=torch.float64)
    # the same rank-1 update at two steps; at the last one an orthogonal direction nearly ties with it
    ws = [w0 + 1.0 * torch.outer(u, v), w0 + 2.0 * torch.outer(u, v),
          w0 + 3.0 * torch.outer(u, v) + 2.9 * torch.outer(q1[:, 1], q2[:, 1])]
    facts, _ = matrix_trajectory(w0, ws)
    assert [f["not_identifiable"] for f in facts] == [False, False, True]
    assert facts[2]["top_gap"] == pytest.approx(3.0 / 2.9)
    # the SVD's sign of each step is arbitrary; after the rule both cosines are +1 whatever it returned
    for f in facts[:2]:
        assert f["cos_v_final"] == pytest.approx(1.0) and f["cos_u_final"] == pytest.approx(1.0)
    assert [f["a_final"] for f in facts] == pytest.approx([1.0, 2.0, 3.0])  # u1(T)ᵀ dW_t v1(T): the tie does not leak in


def test_planted_flip_of_the_svd_sign_is_undone(monkeypatch):
    from rankedit.analysis import trajectory_math as tm
    from rankedit.core.linalg import SVD

    real = tm.gram_svd
    calls = []

    def flipping(a, k=0):  # the decomposition answers with the opposite sign at the first step
        s, svd = real(a, k)
        calls.append(1)
        return (s, SVD(-svd.U, svd.S, -svd.V)) if len(calls) == 1 else (s, svd)

    g = torch.Generator().manual_seed(4)
    u, v = torch.randn(12, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    w0 = torch.zeros(12, 8, dtype=torch.float64)
    monkeypatch.setattr(tm, "gram_svd", flipping)
    facts, _ = tm.matrix_trajectory(w0, [w0 + t * torch.outer(u, v) for t in (1, 2, 3)])
    assert facts[0]["cos_v_final"] == pytest.approx(1.0) and facts[0]["cos_u_final"] == pytest.approx(1.0)


def drift(seed: int, bend: float = 0.0):
    """``at(t)``: the weight function of step t for ``write_variant``, W + t·D (+ bend·t²·D rolled one row,
    a curved path), one random direction D per tensor drawn on first use from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    D = {}

    def at(t):
        def fn(n, w):
            if n not in D:
                D[n] = 1e-3 * torch.randn(w.shape, generator=g)
            return w + t * D[n] + (bend * t * t) * D[n].roll(1, 0) if bend else w + t * D[n]
        return fn
    return at


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_pair):
    """A run folder of checkpoint-N dirs, W0 + t·D + noise, as trl writes them."""
    base, _ = tiny_pair
    root = tmp_path_factory.mktemp("run")
    at = drift(seed=7)
    for t in (10, 20, 30, 40):
        write_variant(base, root / "grpo" / f"checkpoint-{t}", at(t))
    return base, root / "grpo"


def test_cli_writes_rows_summary_and_figures(run, tmp_path, capsys):
    base, run_dir = run
    out = tmp_path / "traj"
    code, err = cli(["trajectory", str(base), "--run-dir", str(run_dir), "-o", str(out), "--quiet",
                     "--null-draws", "4"], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (out / "trajectory.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"]["steps"] == [10, 20, 30, 40]
    assert len(rows) == 4 * summary["n_matrices"] and summary["n_matrices"] == 14
    assert {"dw_norm", "sigma1", "rank1_energy", "top_gap", "not_identifiable", "cos_u_final", "cos_v_final",
            "cos_dw_final", "a_final"} <= set(rows[0])
    assert summary["dw_linearity_whole"]["r2"] == pytest.approx(1.0, abs=1e-9)  # planted exactly linear
    for f in ("a_final.png", "cos_dw_final.png", "cos_v_final.png"):
        assert (out / f).stat().st_size > 1000
    # the same through explicit checkpoints and --steps
    cks = [str(run_dir / f"checkpoint-{t}") for t in (10, 20, 30, 40)]
    code, err = cli(["trajectory", str(base), *cks, "--steps", "10,20,30,40", "-o", str(tmp_path / "t2"), "--quiet",
                     "--no-plots", "--null-draws", "4"], capsys)
    assert code == 0, err
    assert (tmp_path / "t2" / "trajectory.jsonl").read_text() == (out / "trajectory.jsonl").read_text()


def test_cli_bad_input_is_one_error_line(run, tmp_path, capsys):
    base, run_dir = run
    cks = [str(run_dir / f"checkpoint-{t}") for t in (10, 20, 30)]
    cases = [
        ([*cks, "--steps", "10,30,20"], "strictly increasing"),
        ([*cks, "--steps", "10,20"], "3 checkpoints"),
        ([*cks[:2], str(tmp_path / "nope"), "--steps", "10,20,30"], "nope"),
        (["--run-dir", str(tmp_path / "missing")], "no such directory"),
        ([*cks, "--steps", "10,x,30"], "integers"),
        ([], "neither was given"),
        ([*cks, "--steps", "10,20,30", "--run-dir", str(run_dir)], "not both"),
        # the folder above the step folders: the error names the one that holds them
        (["--run-dir", str(run_dir.parent)], f"they are in {run_dir}"),
    ]
    for args, needle in cases:
        code, err = cli(["trajectory", str(base), *args, "-o", str(tmp_path / "o"), "--quiet"], capsys)
        assert code == 1 and err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o").exists()
    code, err = cli(["trajectory", str(base), *cks, "--steps", "10,20,30", "-o", cks[1], "--quiet"], capsys)
    assert code == 1 and err.startswith("error: ") and "input" in err, err


def test_alpharl_through_mergekit_matches_the_pure_edit(run, tmp_path, capsys):
    """The accuracies travel per checkpoint, like the steps (a list would be a layer gradient to mergekit)."""
    from safetensors.torch import load_file

    from rankedit.edits import EDITS
    from rankedit.edits.registry import MatrixInputs

    base, run_dir = run
    cks = [run_dir / f"checkpoint-{t}" for t in (10, 20, 30)]
    out = tmp_path / "alpharl"
    code, err = cli(["edit", "extrapolate", str(base), *map(str, cks), "--steps", "10,20,30", "--mode", "alpharl",
                     "--accuracies", "0.1,0.3,0.35", "--target-accuracy", "0.5", "-o", str(out), "--quiet"], capsys)
    assert code == 0, err
    name = "model.layers.1.self_attn.o_proj.weight"
    w = [load_file(str(d / "model.safetensors"))[name] for d in (base, *cks)]
    e = EDITS["extrapolate"]
    p = e.params(mode="alpharl", steps=(10, 20, 30), accuracies=(0.1, 0.3, 0.35), target_accuracy=0.5)
    want = w[0] + e.fn(MatrixInputs(w[0], tuple(w[1:]), steps=(10, 20, 30)), p).delta
    torch.testing.assert_close(load_file(str(out / "model.safetensors"))[name], want, rtol=1e-5, atol=1e-6)


def test_trajectory_figures_pass_the_checks_and_say_which_matrices_they_show(run, tmp_path, monkeypatch):
    base, run_dir = run
    s = trajectory(base, run_dir=run_dir, n_null=4, progress=False)
    with kept_figures(monkeypatch) as kept:
        paths = trajectory_plots(s["rows"], s["matrices"], s["params"]["steps"], tmp_path)
        paths.append(patch_figure(s["patches"], tmp_path / FIG_PATCHES))
        assert [p.name for p in paths] == [f.name for f in written_by("trajectory")]
        for path, fig in zip(paths, kept.made):
            assert problems(fig) == [], path.name
        a_fig = kept.made[0]
        assert "9 of 14 matrices, spread evenly over the model's order" in a_fig._suptitle.get_text()
        panels = [ax for ax in a_fig.axes if ax.get_xlabel() == "training step"]
        below = next(ax for ax in a_fig.axes if ax.get_yscale() == "log")
        assert len(panels) == 9 and len(below.get_xticklabels()) == 14  # every matrix below, nine drawn above
        # the null's band is drawn for every matrix, and no bow tie of shuffled lines is left
        (band,) = [c for c in below.collections if c.get_label().startswith("random-walk null, 5-95%")]
        assert len(band.get_segments()) == 14
        assert not any(c.get_label().startswith("shuffled") for ax in panels for c in ax.collections)


def test_the_report_compares_a_t_with_the_walk_by_the_unexplained_share():
    from rankedit.pipeline.trajectory_stage import trajectory_markdown

    lin = {"r2": 0.986, "r2_shuffled": 0.1, "r2_random": 0.27, "r2_walk": 0.999}
    block = {"dir": "trajectory", "n_matrices": 2, "n_steps": 4, "not_identifiable": {"pairs": 0, "of": 8},
             "a_final_linearity_mean": lin, "dw_linearity_whole": lin, "figures": []}
    line = next(x for x in trajectory_markdown(block) if x.startswith("- a(t)"))
    assert line.endswith("random walk 0.999); unexplained share 1 − R² 1.4e-02 against a random walk's 1.0e-03 "
                         "(below it: more linear than a walk; above: less)")
