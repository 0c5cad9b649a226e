"""extrapolate's rank-1 modes named for what they do: rank1-step (and its old name) and AlphaRL's PLS."""

import logging

import numpy as np
import pytest
import torch

from rankedit.edits import EDITS
from rankedit.edits.methods import extrapolate as ex
from rankedit.core.linalg import SVD


def _run(x, **params):
    e = EDITS["extrapolate"]
    return e.fn(x, e.params(**params))


def _run_of(seed=0, n=5, m=24, k=16):
    """A run whose rank-1 part wanders: dW_t = outer(a_t, v_t) + small noise, a_t drifting with t."""
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(m, k, generator=g, dtype=torch.float64)
    a0, a1 = torch.randn(m, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)
    v0, v1 = torch.randn(k, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
    tuned = []
    for i in range(n):
        t = (i + 1) / n
        d = 3 * torch.outer(a0 + t * a1, v0 + 0.2 * t * v1) + 0.05 * torch.randn(m, k, generator=g, dtype=torch.float64)
        tuned.append(w0 + t * d)
    return ex.MatrixInputs(w0, tuple(tuned), steps=tuple(10 * (i + 1) for i in range(n)))


def _pls_numpy(x, y, target):
    """AlphaRL's prediction written out independently: NIPALS on standardised x and y
    (scikit-learn's PLSRegression(n_components=1)), then the score regressed on y and inverted."""
    mu, sd = x.mean(0), x.std(0, ddof=1)
    sd[sd == 0] = 1.0
    xs = (x - mu) / sd
    ys = (y - y.mean()) / y.std(ddof=1)
    u = ys.copy()
    for _ in range(500):  # NIPALS' inner loop; with one y column it settles at once
        w = xs.T @ u / (u @ u)
        w /= np.linalg.norm(w)
        t = xs @ w
        u = ys * (ys @ t) / (ys @ ys)
    p = xs.T @ t / (t @ t)
    slope, intercept = np.polyfit(t, y, 1)
    t_star = (target - intercept) / slope
    return t_star * p * sd + mu


def _aligned_au_numpy(run):
    """s1 u1 of each dW_t, walked back from the last, flipped when its cosine with the next is negative."""
    au = []
    for w in run.tuned:
        U, S, Vt = np.linalg.svd((w - run.w0).numpy())
        au.append(U[:, 0] * S[0])
    for i in range(len(au) - 2, -1, -1):
        if au[i] @ au[i + 1] < 0:
            au[i] = -au[i]
    last = np.linalg.svd((run.tuned[-1] - run.w0).numpy())
    return np.array(au), last[0][:, 0], last[2][0]


def test_alpharl_reproduces_an_independent_pls_prediction():
    run = _run_of()
    acc = [0.20, 0.31, 0.35, 0.44, 0.47]
    res = _run(run, mode="alpharl", steps=run.steps, accuracies=acc, target_accuracy=0.6)
    x, u_last, v_last = _aligned_au_numpy(run)
    sign = 1.0 if x[-1] @ u_last > 0 else -1.0  # numpy's and torch's SVD may pick opposite signs: undo it
    want = (run.tuned[-1] - run.w0).numpy() + np.outer(_pls_numpy(x, np.array(acc), 0.6), v_last * sign)
    np.testing.assert_allclose(res.delta.numpy(), want, rtol=1e-8, atol=1e-10)
    assert res.sign_ambiguous == 0
    # at the last checkpoint's own accuracy the PLS line predicts about that checkpoint's a: not zero
    assert float((res.delta - (run.tuned[-1] - run.w0)).norm()) > 0


def test_alpharl_does_not_depend_on_the_svd_signs(monkeypatch):
    run = _run_of(seed=1)
    acc = [0.1, 0.2, 0.25, 0.4, 0.42]
    want = _run(run, mode="alpharl", steps=run.steps, accuracies=acc, target_accuracy=0.5).delta
    real, calls = ex.edit_svd, []

    def flipping(a, k, seed=0, **kw):  # the decomposition answers with the opposite sign at steps 2 and 4
        svd, acc_ = real(a, k, seed, **kw)
        calls.append(1)
        return (SVD(-svd.U, svd.S, -svd.V), acc_) if len(calls) in (2, 4) else (svd, acc_)

    monkeypatch.setattr(ex, "edit_svd", flipping)
    got = _run(run, mode="alpharl", steps=run.steps, accuracies=acc, target_accuracy=0.5).delta
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    calls.clear()
    monkeypatch.setattr(ex, "edit_svd", real)
    want1 = _run(run, mode="rank1-step", steps=run.steps, target_step=80).delta
    monkeypatch.setattr(ex, "edit_svd", flipping)
    torch.testing.assert_close(_run(run, mode="rank1-step", steps=run.steps, target_step=80).delta, want1)


def test_a_near_tie_makes_the_sign_alignment_ambiguous_and_warns_once(caplog):
    q1, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    w0 = torch.zeros(20, 12, dtype=torch.float64)
    top = lambda i: torch.outer(q1[:, i], q2[:, i])  # noqa: E731
    tuned = (w0 + 1.0 * top(0), w0 + 2.0 * top(0) + 1.95 * top(1), w0 + 3.0 * top(0))  # step 2: s1/s2 = 1.026
    x = ex.MatrixInputs(w0, tuned, steps=(1, 2, 3))
    res = _run(x, mode="alpharl", steps=(1, 2, 3), accuracies=(0.1, 0.2, 0.3), target_accuracy=0.4)
    assert res.sign_ambiguous == 1
    assert _run(x, mode="rank1-step", steps=(1, 2, 3), target_step=4).sign_ambiguous == 1
    clean = ex.MatrixInputs(w0, (w0 + top(0), w0 + 2 * top(0), w0 + 3 * top(0)), steps=(1, 2, 3))
    assert _run(clean, mode="rank1-step", steps=(1, 2, 3), target_step=4).sign_ambiguous == 0
    from rankedit.core.svd import warn_unidentifiable

    with caplog.at_level(logging.WARNING, logger="rankedit"):
        warn_unidentifiable("extrapolate", [{"name": "a", "sign_ambiguous": 1}, {"name": "b", "sign_ambiguous": 0}])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "1 (matrix, checkpoint) pairs in 1 of 2 matrices is ambiguous" in lines[0]


def test_rank1_is_the_deprecated_name_of_rank1_step(caplog, monkeypatch):
    monkeypatch.setattr(ex, "_warned_alias", [])
    run = _run_of(seed=3)
    with caplog.at_level(logging.WARNING, logger="rankedit"):
        old = EDITS["extrapolate"].params(mode="rank1", steps=run.steps, target_step=80)
        EDITS["extrapolate"].params(mode="rank1", steps=run.steps, target_step=80)
    assert old.mode == "rank1-step"
    assert [r.getMessage() for r in caplog.records] == [
        "extrapolate: mode 'rank1' is now called 'rank1-step' (a fit in training step, not AlphaRL's)"]
    new = _run(run, mode="rank1-step", steps=run.steps, target_step=80)
    assert torch.equal(EDITS["extrapolate"].fn(run, old).delta, new.delta)


@pytest.mark.parametrize("params, needle", [
    ({"target_accuracy": 0.5}, "needs --accuracies"),
    ({"accuracies": (0.1, 0.2), "target_accuracy": 0.5}, "2 accuracies for 3"),
    ({"accuracies": (0.2, 0.2, 0.2), "target_accuracy": 0.5}, "do not vary"),
])
def test_alpharl_parameter_checks(params, needle):
    with pytest.raises(ValueError, match=needle):
        EDITS["extrapolate"].params(mode="alpharl", steps=(1, 2, 3), **params)


# ---- a planted linear trajectory with a known answer ---------------------------------------------------------
def _planted_line(m=12, n=9, steps=(10, 20, 30, 40)):
    """dW(t) = a(t) vᵀ exactly, a(t) = a0 + t·a1 (never through zero), v a unit vector; the accuracy of each
    checkpoint is a line in t, acc(t) = 0.1 + 0.005 t, so the accuracy A is reached at t = (A - 0.1) / 0.005."""
    g = torch.Generator().manual_seed(7)
    w0 = torch.randn(m, n, generator=g, dtype=torch.float64)
    a0 = torch.randn(m, generator=g, dtype=torch.float64)
    a1 = 0.05 * torch.randn(m, generator=g, dtype=torch.float64)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    v = v / v.norm()
    a = lambda t: a0 + t * a1  # noqa: E731
    run = ex.MatrixInputs(w0, tuple(w0 + torch.outer(a(t), v) for t in steps), steps=steps)
    return run, a, v, [0.1 + 0.005 * t for t in steps]


@pytest.mark.parametrize("mode", ["alpharl", "alpharl-increment"])
def test_alpharl_modes_on_a_planted_linear_trajectory(mode):
    run, a, v, acc = _planted_line()
    target = 0.1 + 0.005 * 60  # the accuracy the line reaches at t = 60
    res = _run(run, mode=mode, steps=run.steps, accuracies=acc, target_accuracy=target)
    last = torch.outer(a(40), v)  # ΔW(t_n)
    if mode == "alpharl":  # AlphaRL's code: the whole predicted component added to the last checkpoint
        want = last + torch.outer(a(60), v)
    else:  # only the increment a* - a(t_n): the trajectory's own ΔW at t = 60
        want = torch.outer(a(60), v)
    torch.testing.assert_close(res.delta, want, rtol=1e-9, atol=1e-9)
    energy = float(res.delta.norm() / last.norm())
    assert (energy > 1.5) == (mode == "alpharl")  # counted twice: the build warns past 1.5


def test_alpharl_modes_start_from_the_last_checkpoint_and_say_so():
    e = EDITS["extrapolate"]
    common = dict(steps=(1, 2), accuracies=(0.1, 0.2), target_accuracy=0.3)
    for mode in ("alpharl", "alpharl-increment"):
        p = e.params(mode=mode, **common)
        assert p.rest == "tuned" and e.params(mode=mode, rest="base", **common).rest == "base"
        assert "added to the checkpoint at step 2" in e.describe(p)
        assert e.control_for(p) == ("extrapolate", e.params(mode="last", rest="tuned", **common))
    assert "whole predicted rank-1 component" in e.describe(e.params(mode="alpharl", **common))
    assert e.params(mode="linear", steps=(1, 2), target_step=3).rest == "base"
    assert "WHOLE predicted rank-1 component" in e.help and "alpharl-increment" in e.help


def test_energy_warning_line():
    from rankedit.edits.realized import energy_warning

    assert energy_warning("extrapolate", {"energy_kept": 1.4}) is None
    msg = energy_warning("extrapolate", {"energy_kept": 2.37}, " of the last checkpoint")
    assert "energy kept 2.37 > 1.5" in msg and "2.37× as far as ΔW of the last checkpoint" in msg


def test_alpharl_build_starts_from_the_last_checkpoint_warns_and_writes_float32(tmp_path, caplog):
    """Through mergekit: the other tensors are the last checkpoint's, the manifest says what was added, the
    energy line is printed, and --dtype float32 writes the sum unrounded (AlphaRL's code saves float32)."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from rankedit.edits import build_edit
    from rankedit.testing import synthetic

    base = synthetic.build_random(tmp_path / "base", "llama", seed=0, dtype=torch.bfloat16, num_hidden_layers=1,
                                  intermediate_size=96)
    g = torch.Generator().manual_seed(3)
    w0 = load_file(base / "model.safetensors")
    dirs = {k: (torch.randn(w.shape[0], generator=g), torch.randn(w.shape[1], generator=g))
            for k, w in w0.items() if w.ndim == 2 and "embed" not in k and "lm_head" not in k}
    cks = []
    for t in (1, 2, 3):
        ck = tmp_path / f"ck{t}"
        shutil.copytree(base, ck)
        tensors = {k: (w.float() + 0.05 * t * torch.outer(*dirs[k])).to(w.dtype) if k in dirs
                   else (w + 0.25 * t if "norm" in k else w) for k, w in w0.items()}
        save_file(tensors, str(ck / "model.safetensors"), metadata={"format": "pt"})
        cks.append(ck)
    with caplog.at_level(logging.WARNING, logger="rankedit"):
        out = build_edit("extrapolate", base, cks, tmp_path / "out", mode="alpharl", steps=[1, 2, 3],
                         accuracies=[0.2, 0.3, 0.4], target_accuracy=0.5, dtype="float32")
    man = json.loads((out / "rankedit_edit.json").read_text())
    assert man["params"]["rest"] == "tuned" and man["params"]["dtype"] == "float32"
    assert "whole predicted rank-1 component" in man["description"]
    assert man["summary"]["energy_kept"] > 1.5 and man["summary"]["stored_dtype"] == "float32"
    assert any("energy kept" in r.getMessage() and "alpharl adds the whole" in r.getMessage() for r in caplog.records)
    got, last = load_file(out / "model.safetensors"), load_file(cks[-1] / "model.safetensors")
    norm = next(k for k in got if "norm" in k)
    assert got[norm].dtype == torch.float32 and torch.equal(got[norm], last[norm].float())
