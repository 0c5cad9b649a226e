"""rankedit edit METHOD BASE TUNED [TUNED...] -o OUT [options]   |   rankedit edit --config edit.yaml

A thin layer over ``rankedit.edits.build_edit``: one subcommand per registered
edit, each with its own --help and options generated from the edit's record
(``rankedit.cli.edit_options``). Imports torch/mergekit only when an edit is listed or run.
"""

from __future__ import annotations

import click

from rankedit.core.names import OVERWRITE_HELP

from rankedit.cli.edit_options import model_options
from rankedit.cli.quiet import QUIET_HELP, quiet_option, result, say
from rankedit.core.errors import RankeditError
from rankedit.edits.registry import EditParams

def _common_options() -> list:
    o = click.option
    return [
        o("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically)."),
        o("--device", default="cpu", show_default=True, help="Where the tensor math runs: cpu, cuda, cuda:1, ..."),
        quiet_option(),
        o("--overwrite", is_flag=True, help=OVERWRITE_HELP),
        o("--dtype", "out_dtype", type=click.Choice(["source", "float32"]), default="source", show_default=True,
          help="dtype of the written checkpoint: source (each tensor's own; a bf16 model rounds the edit to bf16, "
               "the manifest's stored_delta_error says by how much) or float32 (the edit exact; twice a bf16 "
               "model's bytes)."),
        o("--artifact", is_flag=True, help="Write the edit's smallest faithful artifact instead of a checkpoint: "
          "a PEFT LoRA adapter or delta.safetensors + delta.json (`rankedit apply` rebuilds the checkpoint)."),
    ]


def report_built(out, quiet: bool = False) -> None:
    """The lines a built edit or merge prints: coverage, summary, as written, where (``quiet``: the path only)."""
    from rankedit.core.coverage import line as coverage_line
    from rankedit.edits.manifest import read_manifest, summary_lines

    man = read_manifest(out)
    if man.get("coverage"):
        say(quiet, coverage_line(man["coverage"]))
    s = man["summary"]
    say(quiet, *summary_lines(s))
    written = written_line(s)
    if written:
        say(quiet, written)
    result(quiet, out, f"written to {out}")


def written_line(s: dict) -> str | None:
    """The edit as written: the dtype, the energy it keeps on disk, how far rounding moved it, the bytes."""
    if s.get("stored_delta_error") is None:
        return None
    ek = s.get("energy_kept_stored")
    size = f"; {s['checkpoint_bytes']:,} bytes of weights" if s.get("checkpoint_bytes") else ""
    return (f"as written ({s.get('stored_dtype')}): energy kept {'n/a' if ek is None else f'{ek:.4f}'}, "
            f"stored_delta_error {s['stored_delta_error']:.3g}{size}")


def _defaulted(name: str) -> bool:
    """True when option ``name`` of the running command was not given (click filled in its default)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return name in ctx.params and ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None)


def _make_command(edit) -> click.Command:
    """``rankedit edit NAME``: its options are the fields of the edit's parameters and build options."""
    build_fields = set(edit.options.model_fields) if edit.options else set()

    def callback(base, tuned, out, device, quiet, overwrite, artifact, out_dtype, **kw):
        from pydantic import ValidationError

        from rankedit.edits import build_edit

        build = {}
        if edit.options:
            try:
                build = edit.options.model_validate({k: kw.pop(k) for k in build_fields}).model_dump(exclude_none=True)
            except ValidationError as e:
                raise RankeditError(e.errors()[0]["msg"].removeprefix("Value error, ")) from None
        params = {k: v for k, v in kw.items() if v is not None}
        if (artifact or build.get("as_lora")) and _defaulted("scale"):
            params.pop("scale", None)  # an extraction's own default (the truncated SVD), not the edit's rescale
        if artifact:
            from rankedit.edits.artifact import write_artifact

            if overwrite:
                raise RankeditError("--artifact replaces only an earlier artifact folder; --overwrite does not apply")
            if out_dtype != "source":
                raise RankeditError("--dtype applies to a checkpoint; an artifact keeps the edit at the precision it was computed in")
            a = write_artifact(base, list(tuned) if len(tuned) > 1 else tuned[0], edit.name, {**build, **params}, out,
                               device=device, progress=not quiet)
            from rankedit.core.coverage import line

            say(quiet, line(a["coverage"]))
            result(quiet, a["path"], f"{a['kind']} artifact, {a['stored_params']:,} parameters, {a['stored_bytes']:,} "
                   f"bytes; written to {a['path']} (rebuild it with `rankedit apply {a['path']} BASE -o OUT`)")
            return
        path = build_edit(edit.name, base, list(tuned), out, device=device, progress=not quiet, overwrite=overwrite,
                          dtype=out_dtype, **build, **params)
        report_built(path, quiet)

    cmd = click.Command(edit.name, callback=callback, help=_help_with_example(edit), short_help=edit.summary,
                        params=[click.Argument(["base"]), click.Argument(["tuned"], nargs=-1, required=True)])
    # the edit's own parameters first, then those every edit takes (--rest, --seed)
    cmd.params += model_options(edit.params, last=EditParams.model_fields) + (model_options(edit.options) if edit.options else [])
    for opt in _common_options():
        opt(cmd)
    return cmd


# Per-method examples where the bare command needs more than BASE TUNED -o OUT to show what it does
EXAMPLES = {
    "rank-k": "--k 1", "random-rank-k": "--k 1", "rank-auto": "--energy 0.9", "random-rank-auto": "--param-ratio 0.01",
    "mask": "--source magnitude --density 0.1", "dare": "--drop 0.9", "sub-rank-1": "--direction base",
    "off-principal": "--k 16", "principal-only": "--k 16", "scale": "--factor 1.5",
}


def _help_with_example(edit) -> str:
    """The method's help with an ``Example:`` block (a run of checkpoints for edits that take one),
    unless its help has one already."""
    import inspect

    text = inspect.cleandoc(edit.help)  # before appending: the block's own indentation would stop click's dedent
    if "Example" in text:
        return text
    if edit.inputs == "run":
        line = f"rankedit edit {edit.name} BASE ck1 ck2 ck3 --steps 100,200,300 --target-step 600 -o OUT"
    else:
        line = " ".join(filter(None, [f"rankedit edit {edit.name} BASE TUNED", EXAMPLES.get(edit.name), "-o OUT"]))
    return f"{text}\n\n\b\nExample:\n  {line}"


def _edits() -> dict:
    from rankedit.edits import EDITS

    return EDITS


class EditGroup(click.Group):
    def list_commands(self, ctx):  # merges (several runs) are `rankedit merge`'s
        return [name for name, e in _edits().items() if e.inputs != "runs"]

    def get_command(self, ctx, name):
        edit = _edits().get(name)
        return _make_command(edit) if edit is not None and edit.inputs != "runs" else None


@click.group("edit", cls=EditGroup, invoke_without_command=True, subcommand_metavar="METHOD BASE TUNED [TUNED...] -o OUT [options]")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="Run the edit described in a YAML file (rankedit recipe or plain mergekit YAML).")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False), help="With --config: output directory (overrides the file's out:).")
@click.option("--device", default=None, help="With --config: where the tensor math runs (cpu, cuda).")
@quiet_option(help="With --config: p" + QUIET_HELP[1:])
@click.option("--overwrite", is_flag=True, help="With --config: " + OVERWRITE_HELP)
@click.pass_context
def edit(ctx, config, out, device, quiet, overwrite):
    """Build an edited checkpoint that keeps only part of the update BASE -> TUNED.

    The output is an ordinary Hugging Face checkpoint (config, sharded
    safetensors, tokenizer, generation config) plus rankedit_edit.json: the
    recipe, sha256 of every input weight file and, per matrix, the energy kept
    ‖dW_edit‖/‖dW‖, mask density and rank kept, and the coverage (matrices by
    kind, tensors copied and from which side, trained weights left at BASE).
    Attention, MLP, expert (each of a fused stack), router, shared-expert and
    mixer matrices are edited (docs/families.md); other tensors follow --rest.
    Edits run through mergekit where its definition of the architecture names
    the checkpoint's tensors, else tensor by tensor; one matrix at a time.
    TUNED may be a PEFT LoRA adapter folder trained from BASE: it is merged
    once into rankedit's cache (docs/real-runs.md).

    \b
    Examples:
      rankedit edit rank-k BASE TUNED --k 1 -o rank1
      rankedit edit random-rank-k BASE TUNED --k 1 -o rank1-random
      rankedit edit rank-auto BASE TUNED --energy 0.9 -o rank-e90
      rankedit edit mask BASE TUNED --source random -o masked-random
      rankedit edit dare BASE TUNED --drop 0.9 -o dare90
      rankedit edit sub-rank-1 BASE TUNED --direction base -o c1
      rankedit edit off-principal BASE TUNED --k 16 -o off16
      rankedit edit extrapolate BASE ck1 ck2 ck3 --steps 100,200,300 --target-step 600 -o extra
      rankedit edit --config examples/edit-rank1.yaml
    """
    if ctx.invoked_subcommand is not None:
        if config:
            raise RankeditError("give either --config FILE or a METHOD, not both")
        return
    if not config:  # as `rankedit` alone: the help, and the exit code of a usage error (2)
        from click.exceptions import NoArgsIsHelpError

        raise NoArgsIsHelpError(ctx)
    from rankedit.edits.config_file import run_config

    path = run_config(config, out=out, device=device, progress=not quiet, overwrite=overwrite)
    report_built(path, quiet)
