"""rankedit edit METHOD BASE TUNED [TUNED...] -o OUT [options]   |   rankedit edit --config edit.yaml

A thin layer over ``rankedit.edits.build_edit``: one subcommand per registered
edit, each with its own --help. Imports torch/mergekit only when an edit runs.
"""

from __future__ import annotations

import click

from rankedit.core.errors import RankeditError

# Methods in the order they are listed, with the help text of their subcommand.
METHODS: dict[str, str] = {
    "rank-k": """Keep the top-k singular directions of each update dW (AlphaRL).

    New matrix: W0 + c·U_k S_k V_kᵀ of dW, with c = ‖dW‖_F / ‖U_k S_k V_kᵀ‖_F
    (--scale norm, the default: the edit moves as far as the full update),
    c = 1 (--scale none) or a given number. Uses a seeded randomized SVD of dW.
    --as-lora writes a PEFT LoRA adapter (rank k) instead of a merged checkpoint.""",
    "random-rank-k": """Control for rank-k: k random orthonormal directions with the same norm.

    Same singular values and rescale as rank-k, random (seeded) directions, so the
    edit has exactly the rank-k edit's norm and only the directions differ.""",
    "off-principal": """Remove the part of dW inside W0's top-k singular subspaces.

    New matrix: W0 + (I - P_U) dW (I - P_V) with P_U = U0ₖU0ₖᵀ, P_V = V0ₖV0ₖᵀ from
    the base matrix's top-k singular vectors (Path Not Taken).""",
    "principal-only": """Control for off-principal: keep only what off-principal removes.

    New matrix: W0 + dW - (I - P_U) dW (I - P_V); its delta and off-principal's sum to dW.""",
    "mask": """Keep dW only on a mask of entries: W0 + M ⊙ dW.

    --source bf16: entries whose bf16 values changed; magnitude: top-p of |dW|
    (p = --density, default 0.1); principal: top-α of |W0_k| (rank --k
    reconstruction, α = --density, default 0.5); low: bottom-α of |W0|; from:
    another run's bf16 update mask (--from OTHER_TUNED, same base); random: a
    seeded random mask, by default with the bf16 mask's density per matrix.""",
    "extrapolate": """Extrapolate a run's checkpoints (TUNED... in step order) to --target-step.

    --mode linear: per-entry least-squares line through dW(t), evaluated at T;
    rank1 (AlphaRL): sign-aligned a(t) = s1(t)u1(t) fitted linearly in t, times
    v1ᵀ of the last checkpoint; expo: W1 + α(W1 - W_ref), W1 the last and W_ref
    the first checkpoint, α = --alpha or (T - t_n)/(t_n - t_1).
    Example: rankedit edit extrapolate BASE ck100 ck200 ck300 --steps 100,200,300 --target-step 750 -o OUT""",
    "scale": """Scale the whole update: W0 + λ·dW (λ = --factor; 1 reproduces TUNED).""",
}


def _parse_scale(ctx, param, value):
    if value is None or value in ("norm", "none"):
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter("use norm, none or a number") from None


def _parse_steps(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(s) for s in value.replace(" ", "").split(",") if s]
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers, e.g. 100,200,300") from None


def _method_options(method: str) -> list:
    o = click.option
    if method in ("rank-k", "random-rank-k"):
        opts = [o("--k", type=int, default=1, show_default=True, help="Number of singular directions kept."),
                o("--scale", default="norm", show_default=True, callback=_parse_scale,
                  help="norm (rescale to ‖dW‖_F, AlphaRL), none (c = 1) or a number c.")]
        if method == "rank-k":
            opts.append(o("--as-lora", is_flag=True, help="Write a PEFT LoRA adapter (rank k) instead of a merged checkpoint."))
            opts.append(o("--lora-dtype", type=click.Choice(["source", "float32", "bfloat16", "float16"]), default=None,
                          help="dtype of the adapter's factors (with --as-lora). Default: source, the base matrices' own."))
        return opts
    if method in ("off-principal", "principal-only"):
        return [o("--k", type=int, default=16, show_default=True, help="Size of W0's top-k principal subspaces.")]
    if method == "mask":
        return [o("--source", type=click.Choice(["bf16", "magnitude", "principal", "low", "from", "random"]), default="bf16",
                  show_default=True, help="Where the mask comes from."),
                o("--density", type=float, default=None,
                  help="Fraction kept: p for magnitude (0.1), α for principal/low (0.5), random (default: bf16 mask's density)."),
                o("--k", type=int, default=16, show_default=True, help="Rank of W0's reconstruction for --source principal."),
                o("--from", "mask_from", default=None, metavar="OTHER_TUNED",
                  help="Another tuned checkpoint of the same base, for --source from.")]
    if method == "extrapolate":
        return [o("--mode", type=click.Choice(["linear", "rank1", "expo", "last"]), default="linear", show_default=True,
                  help="How to extrapolate; 'last' is the control: the last checkpoint given, as it is."),
                o("--steps", required=True, callback=_parse_steps, metavar="S1,S2,...",
                  help="Training step of each TUNED checkpoint, strictly increasing."),
                o("--target-step", type=int, default=None, help="Step T to extrapolate to (linear, rank1; expo if no --alpha)."),
                o("--alpha", type=float, default=None, help="expo: α in W1 + α(W1 - W_ref).")]
    if method == "scale":
        return [o("--factor", type=float, required=True, help="λ in W0 + λ·dW.")]
    return []


def _common_options() -> list:
    o = click.option
    return [
        o("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically)."),
        o("--rest", type=click.Choice(["base", "tuned"]), default="base", show_default=True,
          help="Non-matrix tensors (embeddings, lm_head, norms, biases): base or tuned values."),
        o("--seed", type=int, default=0, show_default=True, help="Seed of the randomized SVD and random controls."),
        o("--device", default="cpu", show_default=True, help="Where the tensor math runs: cpu, cuda, cuda:1, ..."),
        o("--quiet", is_flag=True, help="No progress bars."),
        o("--overwrite", is_flag=True, help="Replace OUT even if it holds files rankedit did not write (they are lost)."),
    ]


def _report(out) -> None:
    from rankedit.edits.manifest import read_manifest

    s = read_manifest(out)["summary"]
    energy = "n/a" if s["energy_kept"] is None else f"{s['energy_kept']:.4f}"
    dens = "" if s.get("density") is None else f", density {s['density']:.4f}"
    click.echo(f"{s['n_matrices']} matrices edited, energy kept {energy}{dens}; written to {out}")


def _make_command(method: str) -> click.Command:
    def callback(base, tuned, out, rest, seed, device, quiet, overwrite, **kw):
        from rankedit.edits import build_edit

        as_lora = kw.pop("as_lora", False)
        lora_dtype = kw.pop("lora_dtype", None)
        if lora_dtype is not None and not as_lora:
            raise RankeditError("--lora-dtype applies to --as-lora only")
        if as_lora:
            kw["lora_dtype"] = lora_dtype or "source"
        params = {k: v for k, v in kw.items() if v is not None}
        path = build_edit(method, base, list(tuned), out, device=device, as_lora=as_lora, progress=not quiet,
                          rest=rest, seed=seed, overwrite=overwrite, **params)
        _report(path)

    cmd = click.Command(method, callback=callback, help=METHODS[method], short_help=METHODS[method].splitlines()[0],
                        params=[click.Argument(["base"]), click.Argument(["tuned"], nargs=-1, required=True)])
    for opt in _method_options(method) + _common_options():
        opt(cmd)
    return cmd


class EditGroup(click.Group):
    def list_commands(self, ctx):
        return list(METHODS)

    def get_command(self, ctx, name):
        return _make_command(name) if name in METHODS else None


@click.group("edit", cls=EditGroup, invoke_without_command=True, subcommand_metavar="METHOD BASE TUNED [TUNED...] -o OUT [options]")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="Run the edit described in a YAML file (rankedit recipe or plain mergekit YAML).")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False), help="With --config: output directory (overrides the file's out:).")
@click.option("--device", default=None, help="With --config: where the tensor math runs (cpu, cuda).")
@click.option("--quiet", is_flag=True, help="With --config: no progress bars.")
@click.option("--overwrite", is_flag=True, help="With --config: replace OUT even if it holds files rankedit did not write.")
@click.pass_context
def edit(ctx, config, out, device, quiet, overwrite):
    """Build an edited checkpoint that keeps only part of the update BASE -> TUNED.

    The output is an ordinary Hugging Face checkpoint (config, sharded
    safetensors, tokenizer, generation config) plus rankedit_edit.json: the
    recipe, sha256 of every input weight file and, per matrix, the energy kept
    ‖dW_edit‖/‖dW‖, mask density and rank kept. Only 2-D attention/MLP matrices
    are edited; other tensors follow --rest. Edits run through mergekit
    (registered merge methods rankedit_rank_k, ...), one matrix at a time.

    \b
    Examples:
      rankedit edit rank-k BASE TUNED --k 1 -o rank1
      rankedit edit random-rank-k BASE TUNED --k 1 -o rank1-random
      rankedit edit mask BASE TUNED --source random -o masked-random
      rankedit edit extrapolate BASE ck1 ck2 ck3 --steps 100,200,300 --target-step 600 -o extra
      rankedit edit --config examples/edit-rank1.yaml
    """
    if ctx.invoked_subcommand is not None:
        if config:
            raise RankeditError("give either --config FILE or a METHOD, not both")
        return
    if not config:
        click.echo(ctx.get_help())
        return
    from rankedit.edits.config_file import run_config

    path = run_config(config, out=out, device=device, progress=not quiet, overwrite=overwrite)
    _report(path)
