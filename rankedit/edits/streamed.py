"""A merged edit written by rankedit itself, one tensor at a time, where mergekit's definition of the
architecture does not match the checkpoint's tensors (``rankedit.edits.mergekit_fit``).

Every tensor of the base is written in its order, as `rankedit apply` writes a rebuilt checkpoint
(``rankedit.files.shards``): a tensor holding edited matrices through
``rankedit.edits.matrix_edit.edit_tensor`` (the call mergekit's adapter makes; a fused expert
stack expert by expert), every other tensor from the side ``--rest`` names. Facts are recorded
through the adapter's channel (``collect_facts``), so the manifest is the same whichever way the
checkpoint was written. config.json is the base's (mergekit would rewrite it, to the same values).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import torch

from rankedit.core.modules import matrix_keys
from rankedit.core.names import HF_CONFIG
from rankedit.core.threads import hot_path_threads
from rankedit.edits.edit_plan import EditPlan, largest_short_side
from rankedit.edits.matrix_edit import edit_tensor
from rankedit.edits.merge_options import checkpoint_bytes, shard_bytes
from rankedit.edits.mergekit_methods import record_fact
from rankedit.files.shards import write_shards
from tqdm.auto import tqdm


def write_streamed(plan: EditPlan, tmp: Path, *, device: str = "cpu", progress: bool = False,
                   max_shard_bytes: Optional[int] = None, dtype: str = "source") -> None:
    """Write the edited checkpoint of ``plan`` into the folder ``tmp`` (weights and config.json);
    ``dtype`` float32: every floating tensor read and written in float32, as mergekit's ``dtype`` and
    ``out_dtype`` do, so the edit is added to W0 and written without rounding to the source's dtype."""
    base, tuned, other = plan.base, plan.tuned, plan.other
    wide = dtype == "float32"

    def read(ck, name: str) -> torch.Tensor:
        t = ck.get(name)
        return t.to(torch.float32) if wide and t.is_floating_point() else t

    chosen = set(plan.matrices)
    rest = base if plan.params.rest == "base" else tuned[-1]
    bar = tqdm(total=len(base.names), desc=f"{plan.edit.name} (streamed)", disable=not progress)

    def tensor(name: str) -> torch.Tensor:
        bar.update()
        info = plan.tensor_info(name)
        keys = [k for k in matrix_keys(name, tuple(base.info(name).shape), info) if k in chosen]
        if not keys:
            return read(rest, name)
        out, done = edit_tensor(plan.edit, plan.params, plan.road, name, info, read(base, name),
                                [read(ck, name) for ck in tuned], read(other, name) if other is not None else None,
                                device=device)
        for m in done:
            record_fact(m.key, m.facts(plan.edit, plan.params))
        return out.cpu()

    def itemsize(name: str) -> int:
        dt = getattr(torch, base.info(name).dtype)
        return 4 if wide and dt.is_floating_point else dt.itemsize

    sizes = [(n, base.info(n).numel * itemsize(n)) for n in base.names]
    cap = shard_bytes(checkpoint_bytes(base.path)) if max_shard_bytes is None else max_shard_bytes
    with hot_path_threads("edit", largest_short_side(plan)):
        write_shards(tmp, sizes, tensor, cap)
    bar.close()
    if wide:  # the config names the dtype the weights are now stored in, as mergekit's out_dtype writes it
        cfg = json.loads((base.path / HF_CONFIG).read_text())
        cfg.update({k: "float32" for k in ("dtype", "torch_dtype") if k in cfg} or {"dtype": "float32"})
        (tmp / HF_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    else:
        shutil.copyfile(base.path / HF_CONFIG, tmp / HF_CONFIG)
