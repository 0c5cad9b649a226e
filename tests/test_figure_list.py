"""One list of figures (rankedit/core/figure_list.py): `--help`, README, docs/figures.md and the writers agree with it;
every figure of the analysis and the trajectory passes the reviewer's checks (tests/figure_checks.py)."""

import re
from pathlib import Path

import pytest

import clirun  # tests/ is on sys.path (no package)
from figure_checks import kept_figures, problems
from rankedit.analysis.metrics import HEATMAPS
from rankedit.core import figure_list as figures

ROOT = Path(__file__).resolve().parent.parent
PNG = re.compile(r"[A-Za-z0-9_]+\.png")


@pytest.mark.parametrize("command", figures.COMMANDS)
def test_help_lists_exactly_the_figures_the_command_writes(command, capsys):
    code, out, _ = clirun.run_cli([command, "--help"], capsys)
    assert code == 0
    assert set(PNG.findall(out)) == {f.name for f in figures.written_by(command)}
    assert "docs/figures.md" in out


def test_figures_md_captions_every_figure_once_and_lists_each_commands_figures():
    text = (ROOT / "docs" / "figures.md").read_text()
    headings = re.findall(r"^### (\S+\.png)$", text, re.M)
    assert sorted(headings) == sorted(f.name for f in figures.FIGURES) and len(set(headings)) == len(headings)
    table = {m.group(1): set(PNG.findall(m.group(2))) for m in re.finditer(r"^\| `rankedit (\w+)` \| (.*) \|$", text, re.M)}
    assert table == {c: {f.name for f in figures.written_by(c) if not (c == "run" and (f.analysis or f.trajectory))}
                     for c in figures.COMMANDS}
    for name in headings:  # every caption is a paragraph, not a stub
        caption = text.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        assert len(caption.split()) >= 25, name


def test_docs_and_readme_name_no_figure_outside_the_list():
    known = {f.name for f in figures.FIGURES}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert set(PNG.findall(path.read_text())) <= known, path.name
    assert "docs/figures.md" in (ROOT / "README.md").read_text()


def test_the_heatmaps_of_the_list_are_the_metrics_with_a_heatmap():
    assert tuple(HEATMAPS) == figures.HEATMAP_METRICS


def _rows():
    """metrics.jsonl-like rows of a two-layer model: attention 64 x 64 and 16 x 64, MLP 176 x 64 and 64 x 176."""
    shapes = {"q_proj": [64, 64], "k_proj": [16, 64], "o_proj": [64, 64], "up_proj": [176, 64], "down_proj": [64, 176]}
    rows = []
    for layer in (0, 1):
        for i, (module, shape) in enumerate(shapes.items()):
            rows.append({"name": f"model.layers.{layer}.{module}.weight", "layer": layer, "module": module,
                         "kind": "mlp" if module in ("up_proj", "down_proj") else "attention",
                         "shape": shape, "k": 4 if module == "k_proj" else 8, "sparsity_bf16": 0.1 * i,
                         "rank1_energy": 0.2 + 0.05 * i + 0.1 * layer, "angle_left_deg": 3.0 + i,
                         "spectral_shift": 0.01 * (i + 1)})
    return rows


def test_analysis_figures_pass_the_checks_say_their_k_and_draw_a_random_updates_rank1_energy(tmp_path, monkeypatch):
    from rankedit.analysis.geometry import gaussian_rank1_energy
    from rankedit.analysis.plots import analysis_plots

    with kept_figures(monkeypatch) as kept:
        paths = analysis_plots(_rows(), tmp_path)
        assert [p.name for p in paths] == [f.name for f in figures.written_by("analyze") if f.when == "always"]
        for path, fig in zip(paths, kept.made):
            assert problems(fig) == [], path.name
        by_name = dict(zip((p.name for p in paths), kept.made))
        angle = by_name["heatmap_angle_left_deg.png"].axes[0]
        assert angle.get_title() == "largest principal angle, top-k (k = 4 to 8 by matrix shape) left subspaces (degrees)"
        assert by_name["heatmap_angle_left_deg.png"].axes[1].get_ylabel() == "largest principal angle (degrees)"
        hist = by_name["rank1_energy_hist.png"].axes[0]
        assert all(p.get_fill() is False for p in hist.patches if p.get_label().endswith(")") and "n=" in p.get_label())
        # attention: 64 x 64 and 16 x 64, a band between their Gaussian values; MLP: one value for 176 x 64 (both ways)
        attention = [c for c in hist.patches if c.get_label().startswith("attention: a Gaussian update")]
        lo, hi = sorted([gaussian_rank1_energy((64, 64)), gaussian_rank1_energy((16, 64))])
        assert len(attention) == 1 and attention[0].get_label().endswith(f"({lo:.3f} to {hi:.3f})")
        mlp = [ln for ln in hist.lines if ln.get_label().startswith("mlp: a Gaussian update")]
        assert len(mlp) == 1 and mlp[0].get_xdata()[0] == pytest.approx(gaussian_rank1_energy((64, 176)))


def test_gaussian_rank1_energy_is_its_definition():
    import math

    import torch

    from rankedit.analysis.geometry import gaussian_rank1_energy

    g = torch.Generator().manual_seed(0)
    drawn = []
    for _ in range(8):
        s = torch.linalg.svdvals(torch.randn(16, 40, generator=g, dtype=torch.float64))
        drawn.append(float(s[0] ** 2 / (s**2).sum()))
    assert gaussian_rank1_energy((40, 16)) == pytest.approx(sum(drawn) / 8, rel=1e-9)  # either orientation
    assert gaussian_rank1_energy((1000, 4000)) == (math.sqrt(1000) + math.sqrt(4000)) ** 2 / 4e6
    assert gaussian_rank1_energy((128, 128)) == pytest.approx(2 / 128 * 2, rel=0.05)  # the edge (2√m)²/m² = 4/m


def test_the_checks_find_what_a_reviewer_would():
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3)
    a.plot([1, 2], [1, 2], label="drawn")
    a.plot([], [], "s", label="a square never drawn")
    a.legend()
    a.set_xlabel("x words")
    b.set_xlabel("x")
    b.set_ylabel("y")
    c.set_xlabel("x")
    c.set_ylabel("y")
    c.text(0.5, 0.5, "undefined: why")  # an empty panel that says why passes
    fig.colorbar(c.imshow([[1.0]]), ax=c)
    found = problems(fig)
    plt.close(fig)
    assert found == ["axis 0 (untitled): no y label", "axis 1 (untitled): nothing drawn and no text saying why",
                     "a colour bar without a label", "legend entry 'a square never drawn' names nothing drawn"]


def test_pass_at_k_figure_passes_the_checks(tmp_path, monkeypatch):
    from rankedit.report.pass_at_k_figure import pass_at_k_plot
    from rankedit.report import pass_at_k as pk

    models = {"base": pk.curve([0, 4, 1], 4, 100), "tuned": {**pk.curve([2, 2, 4], 4, 100), "crosses_base_at": 2}}
    report = {"pass_at_k": {t: {"n": 4, "problems": 3, "models": models} for t in ("organism_id", "organism_hard")}}
    with kept_figures(monkeypatch) as kept:
        pass_at_k_plot(report, tmp_path / "pass_at_k.png")
        (fig,) = kept.made
        assert problems(fig) == [] and [ax.get_ylabel() for ax in fig.axes] == ["pass@k (95% bootstrap interval)", ""]


def test_the_interference_figures_of_the_list_are_analyzes():
    from rankedit.analysis.interference import FIGURES as INTERFERENCE

    assert tuple(INTERFERENCE) == figures.INTERFERENCE_FIGURES
