"""How a scoring failure reads: one line per failed model, and the error that keeps the others' scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankedit.core.errors import RankeditError

if TYPE_CHECKING:
    from rankedit.scoring.results import ScoreResult


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0] if s else ''}".rstrip(": ")


class ScoringFailed(RankeditError):
    """Some models could not be scored; ``.result`` holds the ones that could."""

    def __init__(self, message: str, result: ScoreResult):
        super().__init__(message)
        self.result = result
