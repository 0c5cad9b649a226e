"""rankedit merge BASE TUNED_A TUNED_B [...] --method M -o OUT

A thin layer over ``rankedit.edits.merge.build_merge``: the options are those of every merge method's
parameters (generated from their pydantic models, ``rankedit.cli.edit_options``); an option the chosen
method does not take is refused in one line.
"""

from __future__ import annotations

import click

from rankedit.cli.edit import report_built
from rankedit.cli.quiet import quiet_option
from rankedit.cli.edit_options import model_options
from rankedit.core.errors import RankeditError
from rankedit.core.names import OVERWRITE_HELP
from rankedit.edits.merge import build_merge, merge_methods
from rankedit.edits.registry import EditParams


def _method_options() -> list[click.Option]:
    """One option per parameter name over every merge method (first declaration wins), default None: the
    chosen method's own default applies."""
    seen: dict[str, click.Option] = {}
    for edit in merge_methods().values():
        for opt in model_options(edit.params, last=EditParams.model_fields):
            if opt.name not in seen:
                opt.default, opt.show_default, opt.required = None, False, False
                if opt.is_flag:
                    opt.default = None
                seen[opt.name] = opt
    return list(seen.values())


def _methods_help() -> str:
    lines = [f"  {name:<22}{e.summary}" for name, e in merge_methods().items()]
    return "\n".join(lines)


def _callback(base, runs, method, out, device, quiet, overwrite, out_dtype, **kw):
    edit = merge_methods()[method]
    given = {k: v for k, v in kw.items() if v is not None}
    foreign = sorted(k for k in given if k not in edit.params.model_fields)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise RankeditError(f"{flags} does not apply to --method {method} (its options: "
                            f"{', '.join('--' + k.replace('_', '-') for k in edit.params.model_fields)})")
    path = build_merge(method, base, list(runs), out, device=device, progress=not quiet, overwrite=overwrite,
                       dtype=out_dtype, **given)
    report_built(path, quiet)


merge = click.Command(
    "merge", callback=_callback,
    help=f"""Merge several RL runs of one BASE into one checkpoint.

    TUNED runs (two or more: checkpoints or LoRA adapters trained from BASE) are
    merged matrix by matrix, by mergekit's own methods or by rankedit's
    geometry-driven ones, each with its control. The output is a checkpoint with
    rankedit_edit.json (recipe, input hashes, per-matrix facts against the sum of
    the updates, coverage), written as edits are (docs/merging.md).

    \b
    Methods:
{_methods_help()}

    \b
    Examples:
      rankedit merge BASE math code --method task-arithmetic --weights 0.5,0.5 -o soup
      rankedit merge BASE math code --method ties --density 0.2 -o ties
      rankedit merge BASE math code --method orthogonal --k 1 -o orth
      rankedit merge BASE math code --method random-orthogonal --k 1 -o orth-control
    """,
    short_help="Merge several RL runs of one base (task-arithmetic, ties, dare-ties, rank-k-sum, orthogonal, ...).",
    params=[click.Argument(["base"]), click.Argument(["runs"], nargs=-1, required=True),
            click.Option(["--method"], required=True, type=click.Choice(list(merge_methods())),
                         help="How the runs are merged (see Methods)."),
            click.Option(["-o", "--out"], required=True, type=click.Path(file_okay=False),
                         help="Output directory (written atomically)."),
            click.Option(["--device"], default="cpu", show_default=True, help="Where the tensor math runs."),
            click.Option(["--overwrite"], is_flag=True, help=OVERWRITE_HELP),
            click.Option(["--dtype", "out_dtype"], type=click.Choice(["source", "float32"]), default="source",
                         show_default=True, help="dtype of the written checkpoint (as for `rankedit edit`).")]
    + _method_options())
merge = quiet_option()(merge)
