"""A plain mergekit YAML that rebuilds an edit without rankedit: ``linear`` over the base and a saved delta.

An edit folder's ``mergekit_config.yml`` names rankedit's merge methods (``rankedit_rank_k`` ...),
which plain ``mergekit-yaml`` does not know (mergekit 0.1.5 has no plugin entry points;
``python -m rankedit.edits.mergekit_yaml`` runs it with them registered). For a tool that has
only mergekit::

    python -m rankedit.edits.replay EDIT BASE -o OUT
    mergekit-yaml OUT/mergekit_replay.yml REBUILT

writes ``OUT/delta`` (a checkpoint of ``EDIT − BASE``, every tensor, config.json of the edit)
and ``OUT/mergekit_replay.yml``: ``merge_method: linear``, weights 1 and 1, ``normalize:
false``. mergekit sums the two in ``dtype`` and rounds to ``out_dtype``, the edit's own dtype.
The delta is stored one precision above the edit (float32 for a bf16/fp16 edit, float64 for a
float32 one), where ``EDIT − BASE`` is exact whenever the two entries are within 2^(p_hi − p_lo)
of each other (16 binades for bf16 in float32, 29 for float32 in float64): then BASE + delta is
EDIT exactly and the replay is bit-equal; this is checked here, tensor by tensor, before
anything is written. It costs the disk of two edits (the delta's precision), so it is written on
demand, not beside every edit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml

from rankedit.core.errors import RankeditError
from rankedit.core.names import HF_CONFIG
from rankedit.files.atomic import atomic_dir
from rankedit.files.checkpoint import Checkpoint
from rankedit.files.outdir import check_out

REPLAY = "mergekit_replay.yml"
DELTA = "delta"
WIDER = {torch.bfloat16: torch.float32, torch.float16: torch.float32, torch.float32: torch.float64,
         torch.float64: torch.float64}


def replay_config(base: str, delta: str, dtype: torch.dtype, out_dtype: torch.dtype) -> dict:
    """The plain mergekit config: ``base + 1 · delta`` summed in ``dtype``, written in ``out_dtype``."""
    name = lambda d: str(d).removeprefix("torch.")  # noqa: E731
    return {"merge_method": "linear", "parameters": {"normalize": False},
            "models": [{"model": base, "parameters": {"weight": 1.0}},
                       {"model": delta, "parameters": {"weight": 1.0}}],
            "dtype": name(dtype), "out_dtype": name(out_dtype)}


def delta_tensor(name: str, edited: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``edited − base`` one precision up, refused unless ``base + delta`` rounds back to ``edited``."""
    wide = WIDER.get(edited.dtype)
    if wide is None or base.dtype != edited.dtype or base.shape != edited.shape:
        raise RankeditError(f"{name}: {edited.dtype}{list(edited.shape)} in the edit, {base.dtype}{list(base.shape)} "
                            "in the base: not an edit of this base")
    d = edited.to(wide) - base.to(wide)
    if not torch.equal((base.to(wide) + d).to(edited.dtype), edited):
        raise RankeditError(f"{name}: base + (edit − base) is not the edit in {wide} (entries too far apart); "
                            "no exact plain replay")
    return d


def write_replay(edit: str | os.PathLike, base: str | os.PathLike, out: str | os.PathLike,
                 overwrite: bool = False) -> Path:
    """Write ``out/delta`` and ``out/mergekit_replay.yml`` for the edit folder ``edit`` of ``base``."""
    from safetensors.torch import save_file

    ed, bs = Checkpoint(edit), Checkpoint(base)
    if set(ed.names) != set(bs.names):
        raise RankeditError(f"{ed.path} and {bs.path} hold different tensors: not an edit of this base")
    dtypes = {ed.info(n).dtype for n in ed.names}
    if len(dtypes) != 1:
        raise RankeditError(f"{ed.path}: tensors of several dtypes ({', '.join(sorted(dtypes))}); a replay sums in one")
    out_dtype = getattr(torch, dtypes.pop())
    wide = WIDER.get(out_dtype)
    if wide is None:
        raise RankeditError(f"{ed.path}: {out_dtype} weights have no plain replay")
    out = Path(out)
    check_out(out, "edit", [ed.path, bs.path], overwrite)
    with atomic_dir(out, kind="edit", inputs=[ed.path, bs.path], overwrite=overwrite) as tmp:
        (tmp / DELTA).mkdir()
        tensors = {n: delta_tensor(n, ed.get(n), bs.get(n)).contiguous() for n in ed.names}
        save_file(tensors, str(tmp / DELTA / "model.safetensors"), metadata={"format": "pt"})
        shutil.copyfile(ed.path / HF_CONFIG, tmp / DELTA / HF_CONFIG)
        cfg = replay_config(str(bs.path.resolve()), str((out / DELTA).resolve()), wide, out_dtype)
        (tmp / REPLAY).write_text("# base + (edit - base), summed exactly one precision up (rankedit.edits.replay)\n"
                                  + yaml.safe_dump(cfg, sort_keys=False))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rankedit.edits.replay", description=__doc__.split("\n\n")[0])
    p.add_argument("edit")
    p.add_argument("base")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    try:
        print(write_replay(a.edit, a.base, a.out, a.overwrite) / REPLAY)
    except RankeditError as e:  # one line, as every rankedit command
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
