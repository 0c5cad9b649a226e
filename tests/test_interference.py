"""Interference of several runs' updates (`rankedit analyze BASE A B C`): exact values on constructed pairs,
the closed-form nulls against a seeded Monte Carlo of random pairs, and the command on three tiny runs."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

import rankedit
from clirun import run_cli  # tests/ is on sys.path (no package)
from rankedit.analysis.analyze import read_jsonl
from rankedit.analysis.interference import (
    FIGURES, jaccard_null, mean_abs_cos, pair_metrics, pooled, update_parts,
)
from rankedit.core.threads import torch_threads
from rankedit.testing import synthetic

ROOT = Path(__file__).resolve().parent.parent
M, N, K = 24, 40, 4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bf16_base(seed: int = 0) -> torch.Tensor:
    """A base whose values are bf16 numbers in [0.5, 2): adding a multiple of 2^-12 is exact in float32."""
    g = _gen(seed)
    return (0.5 + 1.5 * torch.rand(M, N, generator=g)).to(torch.bfloat16).float()


def _step(seed: int, density: float = 1.0) -> torch.Tensor:
    """An update of integer multiples of 2^-6 (two bf16 steps of the base's largest values: every entry it touches
    changes in bf16), on a random support."""
    g = _gen(seed)
    d = torch.randint(1, 9, (M, N), generator=g).float() * torch.where(torch.rand(M, N, generator=g) < 0.5, -1.0, 1.0)
    return d * 2.0**-6 * (torch.rand(M, N, generator=g) < density)


# ---- exact values on constructed pairs ----------------------------------------------------------

def test_identical_updates():
    w0 = _bf16_base()
    w1 = w0 + _step(1)
    f = pair_metrics(update_parts(w0, w1, K), update_parts(w0, w1.clone(), K))
    assert f["cosine"] == 1.0
    assert f["jaccard"] == 1.0 and f["sign_conflict"] == 0.0
    assert f["k"] == K
    assert f["subspace_overlap_left"] == pytest.approx(1.0, abs=1e-12)
    assert f["subspace_overlap_right"] == pytest.approx(1.0, abs=1e-12)
    assert max(f["angles_left_deg"] + f["angles_right_deg"]) < 1e-6
    assert f["rank1_overlap"] == pytest.approx(1.0, abs=1e-12)


def test_negated_update():
    w0 = _bf16_base()
    d = _step(2)
    f = pair_metrics(update_parts(w0, w0 + d, K), update_parts(w0, w0 - d, K))
    assert f["cosine"] == -1.0
    assert f["shared"] == M * N and f["sign_conflict"] == 1.0
    # directions, not signs: the same subspaces and rank-1 direction
    assert f["subspace_overlap_left"] == pytest.approx(1.0, abs=1e-12)
    assert f["rank1_overlap"] == pytest.approx(1.0, abs=1e-12)


def test_disjoint_masks():
    w0 = _bf16_base()
    d = _step(3)
    top = torch.zeros(M, N)
    top[: M // 2] = 1.0
    f = pair_metrics(update_parts(w0, w0 + d * top, K), update_parts(w0, w0 + d * (1 - top), K))
    assert f["jaccard"] == 0.0 and f["shared"] == 0
    assert f["cosine"] == 0.0
    assert math.isnan(f["sign_conflict"]) and math.isnan(f["sign_conflict_null"])  # no shared entry: undefined


def test_half_the_shared_entries_conflict():
    w0 = _bf16_base()
    d = _step(4).abs()
    flip = torch.ones(M, N)
    flip[:, : N // 4] = -1.0
    f = pair_metrics(update_parts(w0, w0 + d, K), update_parts(w0, w0 + d * flip, K))
    assert f["sign_conflict"] == 0.25 and f["jaccard"] == 1.0


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def test_planted_rank1_updates():
    w0 = torch.zeros(M, N)
    g = _gen(5)
    # exactly orthogonal in float32: ±1/2 on four coordinates
    u1 = torch.zeros(M)
    u2 = torch.zeros(M)
    u1[:4] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    u2[:4] = torch.tensor([0.5, -0.5, 0.5, -0.5])
    v1, v2 = (_unit(torch.randn(N, generator=g)) for _ in range(2))
    a = update_parts(w0, 0.1 * torch.outer(u1, v1), K)
    assert a.rank == 1
    orth = pair_metrics(a, update_parts(w0, 0.1 * torch.outer(u2, v2), K))
    assert orth["k"] == 1  # the subspaces stop at the updates' rank
    assert orth["rank1_overlap"] == pytest.approx(0.0, abs=1e-12)
    assert orth["subspace_overlap_left"] == pytest.approx(0.0, abs=1e-12)
    same = pair_metrics(a, update_parts(w0, -0.3 * torch.outer(u1, v1), K))
    assert same["rank1_overlap"] == pytest.approx(1.0, abs=1e-7)  # |cos| of float32 vectors: 1 to float32 precision
    half = pair_metrics(a, update_parts(w0, 0.1 * torch.outer(u1, v2), K))
    assert half["rank1_overlap"] == pytest.approx(abs(float(v1.double() @ v2.double())), abs=1e-6)


def test_zero_update_leaves_directions_undefined():
    w0 = _bf16_base()
    f = pair_metrics(update_parts(w0, w0 + _step(6), K), update_parts(w0, w0.clone(), K))
    assert f["k"] == 0 and math.isnan(f["cosine"]) and math.isnan(f["rank1_overlap"])
    assert f["jaccard"] == 0.0 and f["jaccard_null"] == 0.0


def test_pooled_sums_before_dividing():
    w0 = _bf16_base()
    d1, d2 = _step(7), _step(8, density=0.3)
    same = pair_metrics(update_parts(w0, w0 + d1, K), update_parts(w0, w0 + d1, K))
    opposite = pair_metrics(update_parts(w0, w0 + d2, K), update_parts(w0, w0 - d2, K))
    p = pooled([same, opposite])
    n1, n2 = same["norm_sq_a"], opposite["norm_sq_a"]
    assert p["cosine"] == pytest.approx((n1 - n2) / (n1 + n2), abs=1e-14)  # not the mean of 1 and -1
    assert p["sign_conflict"] == pytest.approx(opposite["shared"] / (same["shared"] + opposite["shared"]), abs=0)
    assert p["jaccard"] == 1.0 and p["matrices"] == 2
    assert p["rank1_overlap"] == pytest.approx(1.0, abs=1e-12)
    assert p["subspace_overlap_left_null"] == pytest.approx(K / M)


# ---- the nulls: closed forms against a seeded Monte Carlo of random pairs -----------------------

def test_mean_abs_cos_small_dimensions():
    assert mean_abs_cos(1) == pytest.approx(1.0, abs=1e-15)
    assert mean_abs_cos(2) == pytest.approx(2 / math.pi, abs=1e-15)
    assert mean_abs_cos(3) == pytest.approx(0.5, abs=1e-15)


def _random_update(g: torch.Generator, changed: int) -> torch.Tensor:
    """A random pair's member: ``changed`` entries at uniform random positions, Gaussian values, on a zero base."""
    d = torch.zeros(M * N)
    d[torch.randperm(M * N, generator=g)[:changed]] = torch.randn(changed, generator=g)
    return d.reshape(M, N)


@pytest.fixture
def one_thread():
    """Small matrices, many of them: one torch thread (as analyze's hot path takes on a small machine; two
    OpenMP threads on a busy 2-core machine made each 24 x 40 decomposition 40x slower)."""
    with torch_threads(1):
        yield


def _near(values: list[float], null: float, bias: float = 0.0) -> bool:
    """The Monte Carlo mean within 4 of its standard errors (plus ``bias``) of the closed form."""
    t = len(values)
    mean = sum(values) / t
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (t - 1) / t)
    return abs(mean - null) <= 4 * se + bias


def test_nulls_match_a_monte_carlo_of_random_pairs_of_the_same_sparsity(one_thread):
    """T = 300 random pairs with 300 and 500 of 960 entries changed. Jaccard's closed form is the ratio of the
    expected counts, which differs from the expected ratio by O(1/n): 0.002 is allowed for that."""
    g = _gen(11)
    w0 = torch.zeros(M, N)
    ca, cb, T = 300, 500, 300
    runs = [pair_metrics(update_parts(w0, _random_update(g, ca), K), update_parts(w0, _random_update(g, cb), K))
            for _ in range(T)]
    f = runs[0]
    assert (f["changed_a"], f["changed_b"]) == (ca, cb)
    p, q = ca / (M * N), cb / (M * N)
    assert f["jaccard_null"] == pytest.approx(p * q / (p + q - p * q), abs=1e-15)
    assert f["jaccard_null"] == jaccard_null(ca, cb, M * N)
    assert _near([r["jaccard"] for r in runs], f["jaccard_null"], bias=0.002)
    assert _near([r["sign_conflict"] for r in runs], 0.5)
    assert _near([r["cosine"] for r in runs], 0.0)
    assert _near([r["cosine"] ** 2 for r in runs], f["cosine_null_std"] ** 2)  # E[cos²] = 1 / (m n)
    assert _near([r["subspace_overlap_left"] for r in runs], K / M)
    assert _near([r["subspace_overlap_right"] for r in runs], K / N)
    assert (f["subspace_overlap_left_null"], f["subspace_overlap_right_null"]) == (K / M, K / N)


def test_rank1_null_matches_a_monte_carlo_of_random_directions(one_thread):
    g = _gen(12)
    w0 = torch.zeros(M, N)

    def planted():
        return update_parts(w0, torch.outer(torch.randn(M, generator=g), torch.randn(N, generator=g)), K)

    runs = [pair_metrics(planted(), planted()) for _ in range(400)]
    null = runs[0]["rank1_overlap_null"]
    assert null == mean_abs_cos(M) * mean_abs_cos(N)
    assert _near([r["rank1_overlap"] for r in runs], null)
    unit = torch.randn(20000, M, generator=g)
    assert _near((unit[:, 0] / unit.norm(dim=1)).abs().tolist(), mean_abs_cos(M))


def test_pooled_cosine_null_std_matches_a_monte_carlo(one_thread):
    """Three matrices of unequal norms, B's random and sparse: the pooled cosine's mean square against the closed
    form's variance Σ ‖A_i‖²‖B_i‖²/n_i / (Σ‖A_i‖² Σ‖B_i‖²)."""
    g = _gen(13)
    w0 = torch.zeros(M, N)
    fixed = [update_parts(w0, s * torch.randn(M, N, generator=g), K) for s in (1.0, 3.0, 0.3)]
    vals, nulls = [], []
    for _ in range(200):
        p = pooled([pair_metrics(a, update_parts(w0, s * _random_update(g, 200), K))
                    for a, s in zip(fixed, (2.0, 0.5, 1.0))])
        vals.append(p["cosine"] ** 2)
        nulls.append(p["cosine_null_std"] ** 2)
    # B's norms vary with its random values: the closed form is taken at each draw's norms, then averaged
    assert _near(vals, sum(nulls) / len(nulls))


# ---- every key written is defined ---------------------------------------------------------------

def test_every_interference_key_is_defined_in_science_md():
    science = (ROOT / "docs" / "science.md").read_text()
    defined = set(re.findall(r"`([a-z0-9_\-]+)`", science))
    w0 = _bf16_base()
    f = pair_metrics(update_parts(w0, w0 + _step(1), K), update_parts(w0, w0 + _step(2), K))
    assert (set(f) | set(pooled([f])) | {"interference"}) - defined == set()
    assert {f"{x}_null" for x in FIGURES} <= set(f)


# ---- the command on three tiny runs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def three_runs(tiny_pair, tmp_path_factory):
    """The tiny base, its tuned twin `a`, another run `b` and `c`, a copy of `a`."""
    base, a = tiny_pair
    root = tmp_path_factory.mktemp("three_runs")
    b = synthetic.perturb(base, root / "b", scale=1e-2, seed=2, density=0.5)
    c = shutil.copytree(a, root / "c")
    return base, a, b, c


def test_cli_three_runs(three_runs, tmp_path, capsys):
    base, a, b, c = three_runs
    out = tmp_path / "out"
    code, stdout, err = run_cli(["analyze", base, a, b, c, "--names", "rl,other,copy", "--k", "4", "-o", out], capsys)
    assert code == 0, err
    rows = read_jsonl(out / "metrics.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    block = summary["interference"]
    assert block["runs"] == {"rl": str(a), "other": str(b), "copy": str(c)}
    assert list(block["pairs"]) == ["rl|other", "rl|copy", "other|copy"]
    for r in rows:
        same = r["interference"]["rl|copy"]
        assert same["cosine"] == 1.0 and same["jaccard"] == 1.0 and same["sign_conflict"] == 0.0
        assert same["rank1_overlap"] == pytest.approx(1.0, abs=1e-9)
        there, back = r["interference"]["rl|other"], r["interference"]["other|copy"]  # copy is rl, exactly
        for fig in FIGURES:
            assert there[fig] == pytest.approx(back[fig], rel=1e-12)
            assert there[f"{fig}_null"] == pytest.approx(back[f"{fig}_null"], rel=1e-12)
    overall = block["pairs"]["rl|copy"]["overall"]
    assert overall["cosine"] == 1.0 and overall["matrices"] == len(rows)
    assert set(block["pairs"]["rl|other"]["by_kind"]) == {"attention", "mlp"}
    other = block["pairs"]["rl|other"]["overall"]
    assert abs(other["cosine"]) < 6 * other["cosine_null_std"]  # independent random updates
    assert other["jaccard"] == pytest.approx(other["jaccard_null"], abs=0.03)
    # the first run is measured as on its own (dW's spectrum from an eigendecomposition with vectors, which
    # the pairs reuse, in place of one of values only: equal to float64 rounding)
    alone = json.loads(json.dumps(rankedit.analyze(base, a, k=4, progress=False)))
    assert [sorted(r) for r in rows] == [sorted([*r, "interference"]) for r in alone]
    differ = {key for r, s in zip(rows, alone) for key in s if r[key] != s[key]}
    assert differ <= {"effective_rank", "stable_rank", "rank1_energy"}, differ
    for r, s in zip(rows, alone):
        assert {key: r[key] for key in differ} == pytest.approx({key: s[key] for key in differ}, rel=1e-12)
    assert {f"interference_{f}.png" for f in FIGURES} <= {p.name for p in out.iterdir()}
    assert "Interference of the updates" in stdout and "rl vs other" in stdout


def test_names_come_from_the_run_folders(three_runs):
    base, a, b, c = three_runs
    rows = rankedit.analyze(base, [b, c], k=2, modules="q_proj", progress=False)
    assert set(rows[0]["interference"]) == {"b|c"}


@pytest.mark.parametrize("args, needle", [
    (["--names", "x,y"], "--names gives 2 names for 3 tuned runs"),
    (["--names", "x,y,x"], "both named 'x'"),
    (["--names", "x,y|z,w"], "holds '|'"),
])
def test_bad_names(three_runs, tmp_path, capsys, args, needle):
    base, a, b, c = three_runs
    code, _, err = run_cli(["analyze", base, a, b, c, *args, "-o", tmp_path / "o"], capsys)
    assert code != 0 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_same_folder_name_twice_asks_for_names(three_runs, tmp_path, capsys):
    base, a, b, c = three_runs
    again = shutil.copytree(b, tmp_path / "x" / "b")
    code, _, err = run_cli(["analyze", base, b, again, "-o", tmp_path / "o"], capsys)
    assert code != 0 and "both named 'b'" in err and "--names" in err


def test_names_need_several_runs(three_runs, tmp_path, capsys):
    base, a, _, _ = three_runs
    code, _, err = run_cli(["analyze", base, a, "--names", "x", "-o", tmp_path / "o"], capsys)
    assert code != 0 and "error: --names names several tuned runs" in err


def test_a_lora_adapter_run_enters_with_its_exact_update(tmp_path):
    """An adapter given as a further run: its ΔW = scale·B·A exactly (rank <= r), against the merged checkpoint
    (the same update rounded to float32): the same direction, mask and subspaces where the adapter reaches."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = synthetic.build_random(tmp_path / "base", "llama", seed=0)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    model.save_pretrained(tmp_path / "adapter")
    model.merge_and_unload().save_pretrained(tmp_path / "merged")
    rows = rankedit.analyze(base, [tmp_path / "merged", tmp_path / "adapter"], names=["merged", "lora"],
                            modules="q_proj|k_proj", progress=False)
    for r in rows:
        f = r["interference"]["merged|lora"]
        if r["module"] == "q_proj":
            assert f["k"] == 2 and f["jaccard"] == 1.0 and f["sign_conflict"] == 0.0
            assert f["cosine"] == pytest.approx(1.0, abs=1e-6)
            assert f["subspace_overlap_left"] == pytest.approx(1.0, abs=1e-6)
            assert f["rank1_overlap"] == pytest.approx(1.0, abs=1e-6)
        else:  # not targeted: neither run moved it
            assert f["k"] == 0 and f["cosine"] is None and f["jaccard"] is None
