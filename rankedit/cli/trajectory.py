"""rankedit trajectory BASE CHECKPOINTS... --steps S1,S2,... -o OUT  (or --run-dir DIR)"""

from __future__ import annotations

import click

from rankedit.analysis.trajectory_options import TrajectoryOptions
from rankedit.cli.quiet import quiet_option, result, say
from rankedit.cli.spec_options import spec_option
from rankedit.core.errors import RankeditError
from rankedit.core.figure_list import with_figures
from rankedit.core.names import OVERWRITE_HELP


def _steps(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise RankeditError(f"--steps must be integers separated by commas, got {value!r}") from None


@click.command("trajectory")
@click.argument("base")
@click.argument("checkpoints", nargs=-1)
@click.option("--steps", default=None, callback=_steps, metavar="S1,S2,...",
              help="Training step of each checkpoint, strictly increasing, in the order given.")
@click.option("--run-dir", default=None, type=click.Path(file_okay=False),
              help="A run's folder: trl's checkpoint-N/, step-N/, or verl's global_step_N/actor/huggingface/ (the step from the name).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@spec_option(TrajectoryOptions, "gap_threshold", "--gap-threshold", show_default=True)
@spec_option(TrajectoryOptions, "null_draws", "--null-draws", show_default=True)
@spec_option(TrajectoryOptions, "seed", "--seed", show_default=True)
@spec_option(TrajectoryOptions, "device", "--device", show_default=True)
@spec_option(TrajectoryOptions, "modules", "--modules", metavar="REGEX")
@spec_option(TrajectoryOptions, "plots", "--plots/--no-plots", show_default=True)
@quiet_option()
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def trajectory(base, checkpoints, steps, run_dir, out, gap_threshold, null_draws, seed, device, modules, plots,
               quiet, overwrite):
    """Follow one run's update dW_t = W_t - BASE over its checkpoints, matrix by matrix.

    Per matrix and step: ‖dW_t‖, σ1, rank-1 energy, the cosines of u1(t), v1(t)
    and dW_t with the final step's, a(t) = u1(T)ᵀ dW_t v1(T), and a flag where
    s1/s2 < --gap-threshold. Linearity: R² of a line in t for a(t) and for the
    whole flattened update, beside the same R² on shuffled steps, on Gaussian
    vectors and on a Gaussian random walk of the same dimension and count.
    Step-to-step sparsity: entries changed and the bytes of the exact patch
    (as `rankedit patch` stores it) against the base and the previous step.
    Every quantity is defined in docs/science.md.

    Writes OUT/trajectory.jsonl, OUT/summary.json and, unless --no-plots, these
    figures (each captioned in docs/figures.md):

    \b
    {figures}

    \b
    Examples:
      rankedit trajectory base/ --run-dir runs/grpo -o out/traj
      rankedit trajectory base/ ck-100/ ck-200/ ck-300/ --steps 100,200,300 --no-plots -o out/traj
    """
    from rankedit.analysis.trajectory import trajectory as run_trajectory

    s = run_trajectory(base, list(checkpoints), out, steps=steps, run_dir=run_dir, gap_threshold=gap_threshold,
                       n_null=null_draws, seed=seed, device=device, modules=modules, progress=not quiet,
                       plots=plots, overwrite=overwrite)
    w = s["dw_linearity_whole"]
    a = s["a_final_linearity_mean"]
    ni = s["not_identifiable"]
    last_b, last_p = s["patches"]["from_base"][-1], s["patches"]["from_previous"][-1]
    say(quiet,
        f"whole update: R² of a line in t {_f(w['r2'])} (shuffled {_f(w['r2_shuffled'])}, "
        f"random {_f(w['r2_random'])}, random walk {_f(w['r2_walk'])})",
        f"a(t), mean over matrices: R² {_f(a.get('r2'))} (shuffled {_f(a.get('r2_shuffled'))}, "
        f"random {_f(a.get('r2_random'))}, random walk {_f(a.get('r2_walk'))})",
        f"{ni['pairs']} of {ni['of']} (matrix, step) pairs have s1/s2 < {gap_threshold:g}",
        f"exact patch of the last step: {last_b['bytes']:,} bytes against the base ({last_b['ratio']:.2%} of "
        f"the matrices), {last_p['bytes']:,} against the previous checkpoint ({last_p['ratio']:.2%})")
    result(quiet, out, f"{s['n_matrices']} matrices x {s['n_steps']} steps; results in {out}/")

def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


trajectory.help = with_figures(trajectory.help, "trajectory")
