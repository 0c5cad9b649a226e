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

import types
from typing import Annotated, Any, Iterable, Literal, Union, get_args, get_origin

import click
from pydantic import BaseModel

from rankedit.edits.registry import Cli, cli_flag


class ChoiceOrNumber(click.ParamType):
    """A word of a fixed set, or a number (``Union[Literal[...], float]``)."""

    name = "choice-or-number"

    def __init__(self, choices: tuple[str, ...]):
        self.choices = choices

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join((*self.choices, "NUMBER")) + "]"

    def convert(self, value, param, ctx):
        if value is None or value in self.choices or isinstance(value, float):
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"use {', '.join(self.choices)} or a number", param, ctx)


class NumberList(click.ParamType):
    """Comma-separated numbers of one type: ``100,200,300`` (integers) or ``0.31,0.42,0.5``."""

    def __init__(self, kind: type, name: str, example: str):
        self.kind, self.name, self.example = kind, name, example

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, list):
            return value
        try:
            return [self.kind(s) for s in value.replace(" ", "").split(",") if s]
        except ValueError:
            self.fail(f"a comma-separated list of {self.name}, e.g. {self.example}", param, ctx)


class IntList(NumberList):
    def __init__(self):
        super().__init__(int, "integers", "100,200,300")


class FloatList(NumberList):
    def __init__(self):
        super().__init__(float, "numbers", "0.31,0.42,0.5")


def _strip(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> X; ``Optional[X]`` -> X."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _strip(args[0])
    return tp


def click_type(tp: Any) -> Any:
    """The click type of a parameter's annotation (TypeError for one the CLI cannot spell)."""
    tp = _strip(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return click.Choice([str(a) for a in get_args(tp)])
    if origin in (Union, types.UnionType):
        args = [_strip(a) for a in get_args(tp)]
        words = tuple(str(w) for a in args if get_origin(a) is Literal for w in get_args(a))
        if words and all(get_origin(a) is Literal or a in (int, float) for a in args):
            return ChoiceOrNumber(words)
    if origin in (tuple, list) and all(_strip(a) in (int, Ellipsis) for a in get_args(tp)):
        return IntList()
    if origin in (tuple, list) and all(_strip(a) in (float, Ellipsis) for a in get_args(tp)):
        return FloatList()
    if tp in (int, float, str, bool):
        return tp
    raise TypeError(f"no command-line option for a parameter of type {tp!r}")


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
                                 show_default=default is not None, metavar=cli.metavar or _metavar(kind),
                                 help=help))
    return opts


def _metavar(kind: Any) -> str | None:
    return "N1,N2,..." if isinstance(kind, IntList) else None
