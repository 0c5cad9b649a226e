"""One record per metric ``rankedit analyze`` writes; every list of metrics is derived from them.

The records stand in the order ``geometry.matrix_metrics`` writes its keys (a
test holds the two equal), so summaries and reports keep that order. Adding a
metric is its function in ``geometry.py``, its key in ``matrix_metrics``, its
record here and its definition in docs/science.md (tests check the last two).

Views are the places that show a chosen few metrics: ``table`` (the terminal
summary of ``rankedit analyze``), ``compare`` (the RL-vs-SFT table of the report
and of several runs), ``card`` (the model card's per-kind table). A view lists
its metrics in record order, except those that name it in ``leads``, which
come first (in record order among themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["scalar", "per-k", "size"]
Better = Literal["higher", "lower", "neither"]
KINDS = ("scalar", "per-k", "size")
BETTER = ("higher", "lower", "neither")
VIEWS = ("table", "compare", "card")


@dataclass(frozen=True)
class Metric:
    name: str
    definition: str  # one line; the full definition is docs/science.md's
    kind: Kind  # scalar: one number per matrix, averaged in summaries; per-k: k numbers; size: a setting, not a measurement
    better: Better = "neither"  # the direction a plot may call better; "neither" for a description of the update
    unit: bool = False  # its values lie in [0, 1] (a histogram of it spans exactly that)
    views: tuple[str, ...] = ()
    leads: tuple[str, ...] = ()  # views where it comes before the metrics that do not lead there
    # (title, colormap, colour bar label in words with its unit) of its layer x module heatmap; "top-k" in a
    # title is replaced by the k the matrices used
    heatmap: tuple[str, str, str] | None = None

    def __post_init__(self):
        if self.kind not in KINDS or self.better not in BETTER:
            raise ValueError(f"metric {self.name}: kind {self.kind!r} or better {self.better!r} is unknown")
        unknown = (set(self.views) | set(self.leads)) - set(VIEWS)
        if unknown or not set(self.leads) <= set(self.views):
            raise ValueError(f"metric {self.name}: views {self.views} / leads {self.leads} are not among {VIEWS}")


T, C, K = "table", "compare", "card"

METRICS = (
    Metric("sparsity_bf16", "fraction of entries whose bf16 values are equal in W0 and W1", "scalar", unit=True,
           views=(T, C, K), leads=(K,),
           heatmap=("bf16 update sparsity (fraction of entries unchanged)", "viridis",
                    "unchanged in bf16 (fraction of entries)")),
    Metric("sparsity_atol", "fraction of entries with |dW| <= atol", "scalar", unit=True, views=(T,)),
    Metric("rank", "numerical rank of dW (float32 matrix_rank tolerance)", "scalar"),
    Metric("rank_fraction", "rank / min(m, n)", "scalar", unit=True, views=(T, C)),
    Metric("effective_rank", "exp of the entropy of s_i / sum(s) over dW's singular values", "scalar",
           views=(T, C, K)),
    Metric("stable_rank", "sum(s_i^2) / s_1^2 of dW", "scalar", views=(K,)),
    Metric("rank1_energy", "s_1^2 / sum(s_i^2) of dW: the update's energy in its top direction", "scalar",
           unit=True, views=(T, C, K), leads=(K,),
           heatmap=("rank-1 energy of the update s₁² / Σ sᵢ²", "plasma",
                    "rank-1 energy (share of ‖ΔW‖²_F, 0 to 1)")),
    Metric("angle_left_deg", "largest principal angle between W0's and W1's top-k left subspaces", "scalar",
           views=(T, C, K), heatmap=("largest principal angle, top-k left subspaces (degrees)", "magma",
                    "largest principal angle (degrees)")),
    Metric("angle_right_deg", "largest principal angle between W0's and W1's top-k right subspaces", "scalar",
           views=(T, C)),
    Metric("angles_left_deg", "all k left principal angles, largest first", "per-k"),
    Metric("angles_right_deg", "all k right principal angles, largest first", "per-k"),
    Metric("k", "the subspace size used: min(k, min(m, n) / 4), at least 1", "size"),
    Metric("spectral_gap", "(s_k - s_k+1) / s_k of W0", "scalar", unit=True),
    Metric("spectral_shift", "||s(W1) - s(W0)|| / ||s(W0)|| over all singular values", "scalar", views=(T, C),
           heatmap=("spectral shift ‖s(W1) − s(W0)‖ / ‖s(W0)‖", "cividis",
                    "relative change of singular values (ratio)")),
    Metric("overlap_principal", "share of the bf16 update mask inside M_p (top-alpha of |W0_k|)", "scalar",
           unit=True, views=(T, C)),
    Metric("overlap_low", "share of the bf16 update mask inside M_low (bottom-alpha of |W0|)", "scalar",
           unit=True, views=(T,)),
    Metric("overlap_principal_topq", "share of the top-q entries by |dW| inside M_p", "scalar", unit=True,
           views=(T, C)),
    Metric("rel_update_norm", "||dW||_F / ||W0||_F", "scalar", views=(T, C, K), leads=(C,)),
    Metric("propensity_share", "||diag(U0^T dW V0)||^2 / ||dW||_F^2: the update's share that only rescales W0's "
           "singular values (the rest is lability)", "scalar", unit=True, views=(T, C)),
    Metric("jaccard", "Jaccard index of the bf16 update masks of two runs from one base", "scalar", unit=True,
           views=(T, C)),
    Metric("jaccard_expected", "the Jaccard index independent masks of those densities would have", "scalar",
           unit=True, views=(T,)),
)

BY_NAME = {m.name: m for m in METRICS}


def view(name: str) -> tuple[str, ...]:
    """The metrics a view shows, in its order: those leading there first, each part in record order."""
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; views are {VIEWS}")
    shown = [m for m in METRICS if name in m.views]
    return tuple(m.name for m in sorted(shown, key=lambda m: name not in m.leads))


# Keys whose mean over matrices is meaningful (lists and sizes are left out).
SCALAR_METRICS = tuple(m.name for m in METRICS if m.kind == "scalar")
UNIT_METRICS = frozenset(m.name for m in METRICS if m.unit)
HEATMAPS = {m.name: m.heatmap for m in METRICS if m.heatmap}
