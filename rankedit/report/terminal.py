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
