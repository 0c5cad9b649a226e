"""rankedit apply ARTIFACT BASE -o OUT"""

from __future__ import annotations

import click

from rankedit.core.names import OVERWRITE_HELP


@click.command("apply")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.argument("base")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--device", default="cpu", show_default=True, help="Where the tensor math runs: cpu, cuda, cuda:1, ...")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def apply(artifact, base, out, device, quiet, overwrite):
    """Rebuild the edited checkpoint that ARTIFACT stores, on top of BASE.

    ARTIFACT is a folder `rankedit compress` wrote for its winner, or
    `rankedit edit METHOD ... --artifact` (`rankedit.write_artifact`): a PEFT
    LoRA adapter with float32 factors, or a rankedit delta
    (delta.safetensors: packed bitmasks and kept values, sign bits and scales,
    or whole matrices), each with delta.json naming the edit and its base.
    BASE must be the very checkpoint it was made from (shapes and sha256 are
    checked). OUT is a full Hugging Face checkpoint, the edited matrices
    rebuilt and every other tensor the base's, checked finite and complete
    before it is renamed into place.

    \b
    Examples:
      rankedit apply out/compress/artifact $ORG/base -o out/applied
      rankedit edit sign $ORG/base $ORG/rl --artifact -o out/sign-artifact
      rankedit apply out/sign-artifact $ORG/base -o out/sign-applied
    """
    from rankedit.edits.apply import apply_artifact

    path = apply_artifact(artifact, base, out, device=device, progress=not quiet, overwrite=overwrite)
    click.echo(f"written to {path}")
