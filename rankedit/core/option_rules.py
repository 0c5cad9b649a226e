"""One check per rule: a command's options are the fields of one pydantic spec, and a value given to the
Python API, on the command line or in a plan is checked by that field's own constraints.

The CLI generates its options from the spec (``rankedit.cli.spec_options``), a plan's section is the spec
(or extends it), and the API calls ``check_value`` for what it was handed directly. The message names the
option as the caller spells it: ``--limit must be at least 1, got 0``.
"""

from __future__ import annotations

import math
from typing import Annotated, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel

from rankedit.core.errors import RankeditError


def _rule(metadata: list) -> tuple[str, object] | None:
    """(words, test) of a field's numeric bounds: 'at least 1', 'between 0 and 1 (exclusive)'."""
    lo = next((m for m in metadata if isinstance(m, (at.Ge, at.Gt))), None)
    hi = next((m for m in metadata if isinstance(m, (at.Le, at.Lt))), None)
    if lo is None and hi is None:
        return None

    def ok(v) -> bool:
        return ((lo is None or (v >= lo.ge if isinstance(lo, at.Ge) else v > lo.gt))
                and (hi is None or (v <= hi.le if isinstance(hi, at.Le) else v < hi.lt)))

    if lo is not None and hi is not None:
        a, b = (lo.ge if isinstance(lo, at.Ge) else lo.gt), (hi.le if isinstance(hi, at.Le) else hi.lt)
        closed = isinstance(lo, at.Ge), isinstance(hi, at.Le)
        ends = {(False, False): " (exclusive)", (True, True): " (inclusive)"}.get(closed, "")
        return f"between {a} and {b}{ends}" if ends else f"in {'[' if closed[0] else '('}{a}, {b}{']' if closed[1] else ')'}", ok
    if lo is not None:
        return (f"at least {lo.ge}" if isinstance(lo, at.Ge) else f"greater than {lo.gt}"), ok
    return (f"at most {hi.le}" if isinstance(hi, at.Le) else f"less than {hi.lt}"), ok


def _metadata(field) -> list:
    """The field's own constraints, or those of the numeric arm of its union (``Union[Annotated[int, ...], ...]``)."""
    if field.metadata:
        return list(field.metadata)
    for arm in get_args(field.annotation):
        if get_origin(arm) is Annotated:
            return [m for x in get_args(arm)[1:] for m in getattr(x, "metadata", [x])]
    return []


def check_value(model: type[BaseModel], field: str, value, flag: str) -> None:
    """RankeditError when ``value`` breaks the numeric bounds of ``model.field`` (None: not given, fine).
    NaN breaks every bound; a field declared ``allow_inf_nan=False`` refuses infinity too."""
    metadata = _metadata(model.model_fields[field])
    rule = _rule(metadata)
    finite = any(getattr(m, "allow_inf_nan", True) is False for m in metadata)
    if value is None or (rule is None and not finite) or isinstance(value, (str, bool)):
        return
    words, ok = rule or ("a number", lambda v: True)
    if finite and not math.isfinite(value):
        raise RankeditError(f"{flag} must be a finite number{'' if rule is None else ' ' + words}, got {value}")
    if not ok(value):
        raise RankeditError(f"{flag} must be {words}, got {value}")


def default(model: type[BaseModel], field: str):
    """The one default of an option: its spec's."""
    return model.model_fields[field].get_default(call_default_factory=True)
