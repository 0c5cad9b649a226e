"""rankedit patch BASE TUNED... -o OUT [--chain]"""

from __future__ import annotations

import click


@click.command("patch")
@click.argument("base")
@click.argument("tuned", nargs=-1, required=True)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--chain", is_flag=True, help="TUNED is a run's checkpoints in training order: store them as a chain.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--overwrite", is_flag=True, help="Replace OUT even if it holds files rankedit did not write (they are lost).")
def patch(base, tuned, out, chain, quiet, overwrite):
    """Store TUNED as an exact (lossless) patch of BASE.

    Every tensor of TUNED that differs from BASE's (non-matrix tensors too)
    is stored in the smallest of: a bitmap of the changed entries plus their
    values, their indices plus values, the XOR of the bit patterns compressed
    with zstd, or the tensor itself; unchanged tensors are named only. TUNED's
    config and tokenizer files are copied. `rankedit apply OUT BASE -o DIR`
    rebuilds TUNED bit for bit (sha256 of every tensor).

    With --chain, TUNED is several checkpoints of one run, oldest first; each
    is stored against the one before it or against BASE, whichever is smaller,
    and `rankedit apply OUT BASE --step NAME -o DIR` rebuilds any of them
    (NAME: the checkpoint folder's name, e.g. step-40, or its position 1..n).

    \b
    Examples:
      rankedit patch $ORG/base $ORG/rl -o out/rl.patch
      rankedit apply out/rl.patch $ORG/base -o out/rl-rebuilt
      rankedit patch $ORG/base --chain $ORG/rl/checkpoints/step-{10,20,30} -o out/run.patch
      rankedit apply out/run.patch $ORG/base --step step-20 -o out/step-20
    """
    from rankedit.core.errors import RankeditError
    from rankedit.files.patch import write_chain, write_patch

    if chain:
        res = write_chain(base, list(tuned), out, overwrite=overwrite, progress=not quiet)
        for link in res["links"]:
            click.echo(f"{link['label']}: {link['patch_bytes']:,} bytes against {link['against']} "
                       f"({link['patch_bytes'] / max(link['checkpoint_bytes'], 1):.2%} of the checkpoint)")
    else:
        if len(tuned) != 1:
            raise RankeditError(f"patch takes one TUNED checkpoint ({len(tuned)} given); pass --chain for a run's checkpoints")
        res = write_patch(base, tuned[0], out, overwrite=overwrite, progress=not quiet)
        encs = ", ".join(f"{k} {v}" for k, v in sorted(res["encodings"].items()))
        click.echo(f"{res['changed_tensors']} of {res['tensors']} tensors differ ({encs}); "
                   f"{res['patch_bytes']:,} bytes, {res['ratio']:.2%} of the checkpoint's {res['checkpoint_bytes']:,}")
    click.echo(f"written to {res['path']}")
