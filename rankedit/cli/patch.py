"""rankedit patch BASE TUNED... -o OUT [--chain]"""

from __future__ import annotations

import click

from rankedit.cli.quiet import quiet_option, result, say


@click.command("patch")
@click.argument("base")
@click.argument("tuned", nargs=-1)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output directory (written atomically).")
@click.option("--chain", is_flag=True, help="TUNED is a run's checkpoints in training order: store them as a chain.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="A run's folder of checkpoint-N / step-N / global_step_N checkpoints: store them all as a chain, named step-N.")
@quiet_option()
@click.option("--overwrite", is_flag=True, help="Replace OUT even if it holds files rankedit did not write (they are lost).")
def patch(base, tuned, out, chain, run_dir, quiet, overwrite):
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
    --run-dir takes a run's checkpoints from its step folders, in step order.

    \b
    Examples:
      rankedit patch $ORG/base $ORG/rl -o out/rl.patch
      rankedit apply out/rl.patch $ORG/base -o out/rl-rebuilt
      rankedit patch $ORG/base --chain $ORG/rl/checkpoints/step-{10,20,30} -o out/run.patch
      rankedit patch $ORG/base --run-dir $ORG/rl/checkpoints -o out/run.patch
      rankedit apply out/run.patch $ORG/base --step step-20 -o out/step-20
    """
    from rankedit.core.errors import RankeditError
    from rankedit.files.patch import write_chain, write_patch

    labels = None
    if run_dir is not None:
        from rankedit.analysis.trajectory import run_dir_checkpoints

        if tuned:
            raise RankeditError("give either TUNED... or --run-dir, not both")
        tuned, steps = run_dir_checkpoints(run_dir)
        labels, chain = [f"step-{s}" for s in steps], True
    if not tuned:
        raise RankeditError("patch needs TUNED (one checkpoint; several with --chain) or --run-dir; see 'rankedit patch --help'")
    if chain:
        res = write_chain(base, list(tuned), out, labels=labels, overwrite=overwrite, progress=not quiet)
        for link in res["links"]:
            say(quiet, f"{link['label']}: {link['patch_bytes']:,} bytes against {link['against']} "
                       f"({link['patch_bytes'] / max(link['checkpoint_bytes'], 1):.2%} of the checkpoint)")
    else:
        if len(tuned) != 1:
            raise RankeditError(f"patch takes one TUNED checkpoint ({len(tuned)} given); pass --chain for a run's checkpoints")
        res = write_patch(base, tuned[0], out, overwrite=overwrite, progress=not quiet)
        encs = ", ".join(f"{k} {v}" for k, v in sorted(res["encodings"].items()))
        say(quiet, f"{res['changed_tensors']} of {res['tensors']} tensors differ ({encs}); "
                   f"{res['patch_bytes']:,} bytes, {res['ratio']:.2%} of the checkpoint's {res['checkpoint_bytes']:,}")
    result(quiet, res["path"], f"written to {res['path']}")
