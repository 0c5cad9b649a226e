"""The options of ``rankedit edit METHOD``, generated from the edit's pydantic parameters.

As mergekit derives a merge method's configuration from its signature, each field
of an edit's parameter model (and of its build options, e.g. rank-k's ``--as-lora``)
becomes one click option: ``--field-name`` (or ``Cli(flag=...)``), its type, its
default and its description as help. ``Literal`` becomes a choice, a ``Literal``
or a number (``--scale norm|none|0.5``) a choice-or-number, a tuple or list of
integers a comma-separated list, ``bool`` a flag. Parameters are checked by the
model itself afterwards, so a bad value is the same one-line error as in the API.
"""

from __future__ import annotations

from typing import Iterable

import click
from pydantic import BaseModel

from rankedit.cli.spec_options import (  # noqa: F401  (the option types: this module's API too)
    ChoiceOrNumber, FloatList, IntList, NumberList, metavar_of, click_type,
)
from rankedit.edits.registry import Cli, cli_flag


def model_options(model: type[BaseModel], last: Iterable[str] = ()) -> list[click.Option]:
    """One click option per field of ``model``; the fields named in ``last`` come last."""
    opts = []
    fields = model.model_fields
    for name in sorted(fields, key=lambda n: n in set(last)):
        f = fields[name]
        cli = next((m for m in f.metadata if isinstance(m, Cli)), Cli())
        flag = cli_flag(name, f)
        text = (f.description or "").strip()
        help = text + ("." if text and not text.endswith(".") else "")
        kind = click_type(f.annotation)
        if kind is bool:
            opts.append(click.Option([flag, name], is_flag=True, default=bool(f.default), help=help))
            continue
        default = None if cli.required else f.default
        opts.append(click.Option([flag, name], type=kind, default=default, required=cli.required,
                                 show_default=default is not None, metavar=cli.metavar or metavar_of(kind),
                                 help=help))
    return opts
