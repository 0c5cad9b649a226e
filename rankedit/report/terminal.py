"""Rich tables for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rankedit.analysis.metrics import view

TABLE_METRICS = view("table")


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}"
    return str(v)


def print_summary(summary: dict, console: Console | None = None) -> None:
    """Metrics as rows, whole model and each kind (attention, mlp) as columns."""
    console = console or Console()
    kinds = list(summary["by_kind"])
    t = Table(title=f"Update geometry: mean over {summary['n_matrices']} matrices "
                    f"(whole-model bf16 sparsity {fmt(summary['model']['sparsity_bf16'])})")
    t.add_column("metric")
    t.add_column("all", justify="right", style="bold")
    for k in kinds:
        t.add_column(k, justify="right")
    for m in TABLE_METRICS:
        if m in summary["mean"]:
            t.add_row(m, fmt(summary["mean"][m]), *[fmt(summary["by_kind"][k].get(m)) for k in kinds])
    console.print(t)


INTERFERENCE_ROWS = (("cosine", "cosine of the updates"), ("subspace_overlap_left", "top-k left subspace overlap"),
                     ("subspace_overlap_right", "top-k right subspace overlap"), ("jaccard", "Jaccard of bf16 masks"),
                     ("sign_conflict", "sign conflict, shared entries"), ("rank1_overlap", "rank-1 overlap"))


def print_interference(block: dict, console: Console | None = None) -> None:
    """Each pair of runs' pooled interference figures, each beside its null (a random pair's value)."""
    console = console or Console()
    t = Table(title="Interference of the updates, all matrices pooled")
    for name, justify in (("runs", "left"), ("figure", "left"), ("measured", "right"),
                          ("null (random pair)", "right")):
        t.add_column(name, justify=justify)
    for pair, groups in block["pairs"].items():
        o = groups["overall"]
        for i, (key, words) in enumerate(INTERFERENCE_ROWS):
            null = fmt(o.get(key + "_null"))
            if key == "cosine" and o.get("cosine_null_std") is not None:
                null = f"0 ± {fmt(o['cosine_null_std'])}"
            t.add_row(pair.replace("|", " vs ") if i == 0 else "", words, fmt(o.get(key)), null,
                      end_section=i == len(INTERFERENCE_ROWS) - 1)
    console.print(t)
