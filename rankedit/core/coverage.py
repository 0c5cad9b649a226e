"""What a command did with every tensor of a checkpoint, stated in one record and one line.

Every analyze, edit, LoRA export and artifact says how many weights it treated as
matrices (by kind: attention, mlp, expert, router, shared_expert, mixer), how many
tensors it copied as they are and from which side, which tensors it could not place
(``rankedit.core.modules`` kind ``other``), the vision tower it left alone, and which
weights the tuned model changed that the output holds at the base's values: nothing
trained is left behind without a word. Pure: the caller reads the tensors.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Mapping, Optional

from rankedit.core.modules import OTHER, VISION, ModuleInfo, matrix_keys, split_key


def coverage(shapes: Mapping[str, tuple[int, ...]], infos: Mapping[str, ModuleInfo], treated: Iterable[str], *,
             copied_from: Optional[str] = "base", left: Optional[Mapping[str, str]] = None,
             trained_at_base: Iterable[str] = ()) -> dict:
    """The coverage record of one command over the tensors ``shapes`` (name -> shape).

    ``treated``: the matrices it measured or edited (tensor names, ``name[e]`` for a fused stack's
    experts); ``copied_from``: where the other tensors come from (None: nothing is written);
    ``left``: matrices it did not treat, with the reason; ``trained_at_base``: tensors the tuned
    model changed that the output holds at the base's values."""
    treated = list(treated)
    tensors = {split_key(k)[0] for k in treated}
    by_kind = Counter(infos[split_key(k)[0]].kind for k in treated)
    rest = [n for n in shapes if n not in tensors]
    out = {
        "matrices": len(treated),
        "matrix_tensors": len(tensors),
        "by_kind": dict(sorted(by_kind.items())),
        "copied": len(rest) if copied_from else 0,
        "copied_from": copied_from,
        "copied_by_kind": dict(sorted(Counter(infos[n].kind for n in rest).items())) if copied_from else {},
        "not_placed": sorted(n for n in shapes if infos[n].kind == OTHER),
        "vision_left_alone": sum(1 for n in shapes if infos[n].kind == VISION),
        "left": dict(sorted((left or {}).items())),
        "trained_left_at_base": sorted(trained_at_base),
    }
    return out


def matrices_of(shapes: Mapping[str, tuple[int, ...]], infos: Mapping[str, ModuleInfo]) -> list[str]:
    """Every matrix the tensors hold, in their order (a fused stack's experts in index order)."""
    return [k for n, s in shapes.items() for k in matrix_keys(n, tuple(s), infos[n])]


def trained_at_base(candidates: Iterable[str], differs: Callable[[str], bool]) -> list[str]:
    """The tensors among ``candidates`` whose tuned value differs from the base's (``differs`` reads them)."""
    return [n for n in candidates if differs(n)]


def line(cov: dict, verb: str = "edited") -> str:
    """The one line a command prints: matrices by kind, copies, what could not be placed, what was left."""
    kinds = ", ".join(f"{n} {k}" for k, n in cov["by_kind"].items())
    parts = [f"coverage: {cov['matrices']} matrices {verb} ({kinds or 'none'}) in {cov['matrix_tensors']} tensors"]
    if cov["copied_from"]:
        parts.append(f"{cov['copied']} tensors copied as they are from {cov['copied_from']}")
    parts.append(f"{len(cov['not_placed'])} not placed" + (f" ({_some(cov['not_placed'])})" if cov["not_placed"] else ""))
    if cov["vision_left_alone"]:
        parts.append(f"{cov['vision_left_alone']} vision-tower tensors left alone")
    if cov["left"]:
        parts.append(f"{len(cov['left'])} matrices not {verb} ({_some(list(cov['left']))}: {next(iter(cov['left'].values()))})")
    return "; ".join(parts)


def warning(cov: dict, what: Optional[str] = None) -> Optional[str]:
    """The stderr warning for trained weights the output holds at the base's values, or None; ``what``: the
    output's name (the edit's method), so that a plan's many outputs each say whose warning it is."""
    names = cov["trained_left_at_base"]
    if not names:
        return None
    return (f"warning: {what + ': ' if what else ''}the tuned model changed {len(names)} weights that this output holds at BASE "
            f"({_some(names)}); see 'coverage' in the manifest")


def _some(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
