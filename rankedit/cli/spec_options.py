"""Click options generated from pydantic fields: the machinery every command's declared options share.

A field becomes one click option: its type (``click_type``: a ``Literal`` a choice, a ``Literal`` or a number
a choice-or-number, a tuple or list of numbers a comma-separated list, ``bool`` a flag), its default and its
description as help. ``rankedit edit METHOD`` takes every field of an edit's parameters
(``rankedit.cli.edit_options``); the other commands name the flag of each field they expose
(``spec_option``), so the default, the bounds and the help are the spec's alone and a value is checked by the
field's own constraints (``rankedit.core.option_rules.check_value``), as a plan's section is.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Callable, Literal, Union, get_args, get_origin

import click
from pydantic import BaseModel

from rankedit.core.option_rules import check_value


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
        if words and all(get_origin(a) is Literal or a is int for a in args):
            return IntOrWord(words)
        if words and all(get_origin(a) is Literal or a in (int, float) for a in args):
            return ChoiceOrNumber(words)
    if origin in (tuple, list) and all(_strip(a) in (int, Ellipsis) for a in get_args(tp)):
        return IntList()
    if origin in (tuple, list) and all(_strip(a) in (float, Ellipsis) for a in get_args(tp)):
        return FloatList()
    if tp in (int, float, str, bool):
        return tp
    raise TypeError(f"no command-line option for a parameter of type {tp!r}")


class IntOrWord(click.ParamType):
    """An integer, or a word of a fixed set (``Union[int, Literal['auto']]``)."""

    name = "int-or-word"

    def __init__(self, words: tuple[str, ...]):
        self.words = words

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(("INTEGER", *self.words)) + "]"

    def convert(self, value, param, ctx):
        if value is None or value in self.words or isinstance(value, int):
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"use an integer or {', '.join(self.words)}", param, ctx)


def spec_option(model: type[BaseModel], field: str, *flags: str, **extra) -> Callable:
    """``click.option`` for ``model.field``: its flag(s) here, everything else from the field (``extra``
    adds click settings such as ``show_default`` or ``metavar``; a ``bool`` field's flag may be a switch,
    ``--plots/--no-plots``). The option remembers its field (``.spec``), so a test can
    walk every generated option."""
    f = model.model_fields[field]
    text = (f.description or "").strip()
    help = text + ("." if text and not text.endswith((".", "]")) else "")
    kind = click_type(f.annotation)
    default = f.get_default(call_default_factory=True)
    flag = next((x for x in flags if x.startswith("--")), flags[0])

    def check(ctx, param, value):
        check_value(model, field, value, flag)  # RankeditError: one line `error: ...`, exit 1, as from the API
        return value

    def deco(fn):
        if kind is bool:
            fn = click.option(*flags, field, is_flag=True, default=bool(default), help=help, **extra)(fn)
        else:
            fn = click.option(*flags, field, type=kind, default=default, help=help, callback=check,
                              **{"metavar": metavar_of(kind), **extra})(fn)
        fn.__click_params__[-1].spec = (model, field)
        return fn

    return deco


def metavar_of(kind: Any) -> str | None:
    return "N1,N2,..." if isinstance(kind, IntList) else None
