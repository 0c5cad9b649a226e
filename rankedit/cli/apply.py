"""rankedit apply ARTIFACT BASE -o OUT"""

from __future__ import annotations

import click

from rankedit.cli.quiet import quiet_option, result
from rankedit.core.names import OVERWRITE_HELP


@click.command("apply")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.argument("base")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--step", default=None, help="For a chain of patches: the checkpoint to rebuild (its name, e.g. step-40, or position 1..n; default the last).")
@click.option("--device", default="cpu", show_default=True, help="Where the tensor math runs: cpu, cuda, cuda:1, ...")
@quiet_option()
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def apply(artifact, base, out, step, device, quiet, overwrite):
    """Rebuild the checkpoint that ARTIFACT (an edit's artifact, or an exact patch) stores, on top of BASE.

    ARTIFACT is a folder `rankedit compress` wrote for its winner, or
    `rankedit edit METHOD ... --artifact` (`rankedit.write_artifact`): a PEFT
    LoRA adapter with float32 factors, or a rankedit delta
    (delta.safetensors: packed bitmasks and kept values, sign bits and scales,
    or whole matrices), each with delta.json naming the edit and its base.
    BASE must be the very checkpoint it was made from (shapes and sha256 are
    checked). OUT is a full Hugging Face checkpoint, the edited matrices
    rebuilt and every other tensor the base's, checked finite and complete
    before it is renamed into place.

    ARTIFACT may also be an exact patch `rankedit patch` wrote (patch.json):
    TUNED is rebuilt bit for bit (sha256 of every tensor), a chain's
    checkpoint chosen with --step.

    \b
    Examples:
      rankedit apply out/compress/artifact $ORG/base -o out/applied
      rankedit edit sign $ORG/base $ORG/rl --artifact -o out/sign-artifact
      rankedit apply out/sign-artifact $ORG/base -o out/sign-applied
      rankedit apply out/run.patch $ORG/base --step step-20 -o out/step-20
    """
    from rankedit.core.errors import RankeditError
    from rankedit.edits.apply import apply_artifact
    from rankedit.files.patch import is_patch

    if is_patch(artifact):
        from rankedit.files.patch_apply import apply_patch

        if device != "cpu":
            raise RankeditError("--device does not apply to an exact patch (its rebuild is byte copies and XORs, on the CPU)")
        path = apply_patch(artifact, base, out, step=step, progress=not quiet, overwrite=overwrite)
        result(quiet, path, f"written to {path}")
        return
    if step is not None:
        raise RankeditError(f"--step applies to a chain of patches; {artifact} is an edit's artifact")
    path = apply_artifact(artifact, base, out, device=device, progress=not quiet, overwrite=overwrite)
    result(quiet, path, f"written to {path}")
