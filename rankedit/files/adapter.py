"""A PEFT LoRA adapter folder read as the tuned checkpoint it stands for: BASE + the adapter, lazily.

An RL run trained with LoRA (trl's ``peft_config``, verl's LoRA export, a trainer's
``checkpoint-N`` folder) saves ``adapter_config.json`` and ``adapter_model.safetensors``,
not a model. ``AdapterCheckpoint(adapter, base)`` presents it with BASE's tensor names,
shapes and dtypes, one tensor at a time:

- a targeted matrix is W0 + ΔW with ΔW = scale·B·A exactly as PEFT defines it
  (scale = lora_alpha/r, or lora_alpha/√r with ``use_rslora``; ``rank_pattern`` and
  ``alpha_pattern`` per module; transposed with ``fan_in_fan_out``; transposed for
  embeddings), so ``delta(name)`` is the update itself, in float64, with rank ≤ r by
  construction, and ``get(name)`` the merged weight in BASE's dtype, computed as PEFT's
  ``merge_and_unload`` computes it (ΔW in float32, added to W0 in float32, one rounding to
  the stored dtype; bit-equal to PEFT for float32 weights);
- a tensor the adapter saves whole (``modules_to_save``, trained biases) is the adapter's;
- every other tensor is BASE's.

Where a tool must read TUNED from disk (mergekit, lm-eval), ``materialize`` writes the
merged checkpoint into rankedit's cache once, one tensor in memory at a time.

Refused, in one line: an adapter whose matrices do not fit BASE, PEFT types other than
LoRA (DoRA included), pickled ``adapter_model.bin`` (never unpickled), LoRA on
parameters or biases, activated LoRA, layer replication and trainable token indices.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from rankedit.core.cache_dir import cache_root
from rankedit.core.errors import RankeditError
from rankedit.files.atomic import atomic_dir
from rankedit.files.hashes import checkpoint_sha256, files_sha256
from rankedit.files.shards import write_shards
from rankedit.files.validate import check_output
from rankedit.files.checkpoint import Checkpoint, TensorInfo, check_tensor_finite, file_sha256, first_line, read_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_ADAPTER = "adapter_model.bin"
# verl saves a LoRA actor's adapter as global_step_N/actor/lora_adapter/ (PEFT's files)
VERL_SUBFOLDERS = (("lora_adapter",), ("actor", "lora_adapter"))
PREFIX = "base_model.model."  # PEFT's prefix of every saved key
# config switches that change what the adapter computes beyond scale·B·A: refused, not approximated
UNSUPPORTED = {"use_dora": "DoRA", "lora_bias": "LoRA biases", "use_qalora": "QALoRA", "use_bdlora": "BD-LoRA",
               "alora_invocation_tokens": "activated LoRA", "target_parameters": "LoRA on parameters",
               "layer_replication": "layer replication", "trainable_token_indices": "trainable tokens"}
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.weight)?$")


def adapter_folder(ref: str | os.PathLike) -> Path | None:
    """The folder holding ``adapter_config.json`` when ``ref`` is a PEFT adapter (or verl's
    checkpoint folder around one), else None. A folder with model weights is a model."""
    p = Path(ref).expanduser()
    if not p.is_dir():
        return None
    for cand in (p, *(p.joinpath(*sub) for sub in VERL_SUBFOLDERS)):
        if (cand / ADAPTER_CONFIG).is_file():
            if cand == p and (any(p.glob("model*.safetensors")) or (p / "model.safetensors.index.json").is_file()):
                return None  # a full model that also carries an adapter config: read as the model
            return cand
    return None


def is_adapter(ref: str | os.PathLike) -> bool:
    return adapter_folder(ref) is not None


@dataclass(frozen=True)
class LoraMatrix:
    """One targeted matrix: BASE's tensor ``name`` gets scale·(B·A) (transposed when ``transpose``)."""

    name: str
    a: str  # adapter keys
    b: str
    r: int
    scale: float
    transpose: bool  # fan_in_fan_out (Conv1D-style storage) or an embedding's (in, out) factors


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's ``get_pattern_key``: the first pattern that matches the end of the module path."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def read_config(folder: Path) -> dict:
    try:
        cfg = json.loads((folder / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise RankeditError(f"{folder / ADAPTER_CONFIG}: not a readable adapter config ({first_line(e)})") from None
    if not isinstance(cfg, dict):
        raise RankeditError(f"{folder / ADAPTER_CONFIG}: not a JSON object")
    kind = str(cfg.get("peft_type", "")).upper()
    if kind != "LORA":
        raise RankeditError(f"{folder}: PEFT type {cfg.get('peft_type')!r} is not supported (only LoRA adapters)")
    for key, what in UNSUPPORTED.items():
        if cfg.get(key):
            raise RankeditError(f"{folder}: {what} adapters ({key}) are not supported: ΔW is not scale·B·A")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        if (folder / PICKLED_ADAPTER).is_file():
            raise RankeditError(f"{folder}: the adapter is pickled ({PICKLED_ADAPTER}); rankedit never unpickles. "
                                "Save it again with PEFT's save_pretrained(DIR, safe_serialization=True)")
        raise RankeditError(f"{folder}: no {ADAPTER_WEIGHTS}")
    return cfg


def lora_plan(cfg: dict, keys: dict[str, tuple[int, ...]], base: Checkpoint, where: Path
              ) -> tuple[dict[str, LoraMatrix], dict[str, str]]:
    """(BASE name -> LoraMatrix, BASE name -> adapter key of a whole tensor) from the adapter's keys
    and shapes, checked against BASE's shapes (one RankeditError at the first mismatch)."""
    pairs: dict[str, dict[str, str]] = {}
    whole: dict[str, str] = {}
    for key in keys:
        short = key[len(PREFIX):] if key.startswith(PREFIX) else key
        m = _LORA_KEY.match(short)
        if m:
            pairs.setdefault(m["module"], {})[m["kind"]] = key
        else:
            whole[short.replace(".modules_to_save.default.", ".")] = key
    fifo = bool(cfg.get("fan_in_fan_out"))
    rslora = bool(cfg.get("use_rslora"))
    lora: dict[str, LoraMatrix] = {}
    for module, kinds in sorted(pairs.items()):
        emb = "lora_embedding_A" in kinds
        ka, kb = kinds.get("lora_embedding_A" if emb else "lora_A"), kinds.get("lora_embedding_B" if emb else "lora_B")
        if ka is None or kb is None:
            raise RankeditError(f"{where}: adapter has only one factor of {module}")
        name = f"{module}.weight"
        if name not in base.names:
            raise RankeditError(f"adapter {where} does not match base {base.path}: no tensor {name} in the base")
        sa, sb = keys[ka], keys[kb]
        r = sa[0]
        if len(sa) != 2 or len(sb) != 2 or sb[1] != r:
            raise RankeditError(f"{where}: factors of {module} do not chain (A {list(sa)}, B {list(sb)})")
        transpose = emb or fifo
        out_shape = (sa[1], sb[0]) if transpose else (sb[0], sa[1])
        if tuple(base.info(name).shape) != out_shape:
            raise RankeditError(f"adapter {where} does not match base {base.path}: {module} ΔW is {list(out_shape)}, "
                                f"the base's {name} is {list(base.info(name).shape)}")
        want_r = _pattern_value(cfg.get("rank_pattern") or {}, module, cfg.get("r"))
        if want_r is not None and int(want_r) != r:
            raise RankeditError(f"{where}: {module} has rank {r} but the adapter config says r={want_r}")
        alpha = float(_pattern_value(cfg.get("alpha_pattern") or {}, module, cfg.get("lora_alpha", 8)))
        scale = alpha / math.sqrt(r) if rslora else alpha / r
        lora[name] = LoraMatrix(name, ka, kb, r, scale, transpose)
    replaced = {}
    for name, key in whole.items():
        if name not in base.names:
            raise RankeditError(f"adapter {where} does not match base {base.path}: it saves {name}, not in the base")
        if tuple(base.info(name).shape) != keys[key]:
            raise RankeditError(f"adapter {where} does not match base {base.path}: {name} is {list(keys[key])}, "
                                f"the base's is {list(base.info(name).shape)}")
        if name in lora:
            raise RankeditError(f"{where}: {name} is both a LoRA target and saved whole")
        replaced[name] = key
    if not lora and not replaced:
        raise RankeditError(f"{where}: the adapter holds no LoRA matrices")
    return lora, replaced


class AdapterCheckpoint:
    """BASE + a LoRA adapter, read like a ``Checkpoint`` (BASE's names, shapes and dtypes)."""

    def __init__(self, ref: str | os.PathLike, base: Checkpoint):
        folder = adapter_folder(ref)
        if folder is None:
            raise RankeditError(f"not a PEFT adapter folder (no {ADAPTER_CONFIG}): {ref}")
        self.ref, self.path, self.base = str(ref), folder, base
        self.adapter_config = read_config(folder)
        read_header(folder / ADAPTER_WEIGHTS)
        try:
            self._handle = safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt", device="cpu")
        except Exception as e:  # noqa: BLE001 - the library's own checks, as one line
            raise RankeditError(f"{folder / ADAPTER_WEIGHTS}: corrupt safetensors file ({first_line(e)})") from None
        keys = {k: tuple(self._handle.get_slice(k).get_shape()) for k in self._handle.keys()}
        self.lora, self.replaced = lora_plan(self.adapter_config, keys, base, folder)
        self.config = base.config

    # ---- what a Checkpoint answers ---------------------------------------------------------
    names = property(lambda self: self.base.names)
    architecture = property(lambda self: self.base.architecture)
    model_type = property(lambda self: self.base.model_type)
    weight_files = property(lambda self: [self.path / ADAPTER_WEIGHTS])

    def info(self, name: str) -> TensorInfo:
        return self.base.info(name)

    @property
    def max_rank(self) -> int:
        return max((m.r for m in self.lora.values()), default=0)

    def _adapter_tensor(self, key: str) -> torch.Tensor:
        try:
            return self._handle.get_tensor(key)
        except Exception as e:  # noqa: BLE001
            raise RankeditError(f"{self.path / ADAPTER_WEIGHTS}: cannot read tensor {key} ({first_line(e)})") from None

    def delta(self, name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor | None:
        """ΔW = scale·B·A of a targeted matrix in BASE's storage layout (None: not targeted)."""
        m = self.lora.get(name)
        if m is None:
            return None
        a, b = self._adapter_tensor(m.a).to(dtype), self._adapter_tensor(m.b).to(dtype)
        d = b @ a
        return (d.T if m.transpose else d) * m.scale

    def get(self, name: str, check_finite: bool = False) -> torch.Tensor:
        """The tuned tensor in BASE's dtype: the adapter's whole tensor, W0 + ΔW, or W0."""
        if name in self.replaced:
            t = self._adapter_tensor(self.replaced[name]).to(getattr(torch, self.info(name).dtype))
        else:
            w0 = self.base.get(name)
            d = self.delta(name, torch.float32)  # PEFT's merge: ΔW in float32, W0 += ΔW
            t = w0 if d is None else (w0.float() + d).to(w0.dtype)
        if check_finite:
            check_tensor_finite(t, name, self.path)
        return t

    def sha256(self) -> dict[str, str]:
        return {f.name: file_sha256(f) for f in self.weight_files}

    def describe(self) -> str:
        ranks = sorted({m.r for m in self.lora.values()})
        return (f"LoRA adapter {self.path} on {self.base.path}: {len(self.lora)} matrices at rank "
                f"{'/'.join(map(str, ranks)) or '-'}, {len(self.replaced)} saved whole")

    def __repr__(self) -> str:
        return f"AdapterCheckpoint({self.ref!r} on {self.base.ref!r})"


def open_tuned(ref: str | os.PathLike, base: Checkpoint) -> Checkpoint | AdapterCheckpoint:
    """TUNED as given: a checkpoint, or a LoRA adapter read on ``base``."""
    return AdapterCheckpoint(ref, base) if is_adapter(ref) else Checkpoint(ref)


def _note(msg: str) -> None:
    logging.getLogger("rankedit").warning(msg)


def materialize(view: AdapterCheckpoint, say=_note) -> Path:
    """The merged checkpoint of ``view`` in rankedit's cache (written once, reused while the adapter and
    the base are unchanged): BASE's config and tokenizer, the merged tensors, one in memory at a time."""
    key = json.dumps({"adapter": files_sha256([view.path / ADAPTER_WEIGHTS, view.path / ADAPTER_CONFIG]),
                      "base": checkpoint_sha256(view.base)}, sort_keys=True)
    dest = cache_root() / "adapters" / hashlib.sha256(key.encode()).hexdigest()[:32]
    if (dest / "model.safetensors").is_file() or (dest / "model.safetensors.index.json").is_file():
        return dest
    say(f"merging LoRA adapter {view.path} into {view.base.path} for the tools that read TUNED from disk: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(dest, overwrite=True) as tmp:
        for f in sorted(view.base.path.iterdir()):
            if f.is_file() and not f.name.endswith((".safetensors", ".index.json")) and not f.name.startswith("."):
                shutil.copy2(f, tmp / f.name)
        sizes = [(n, view.info(n).numel * getattr(torch, view.info(n).dtype).itemsize) for n in view.names]
        write_shards(tmp, sizes, lambda n: view.get(n, check_finite=True), 4 << 30)
        (tmp / "rankedit_adapter.json").write_text(json.dumps(
            {"adapter": str(view.path.resolve()), "base": str(view.base.path.resolve()), "key": json.loads(key)},
            indent=2) + "\n")
        check_output(tmp, dest, like=view.base)
    return dest


def tuned_on_disk(ref: str | os.PathLike, base: Checkpoint, say=_note) -> Checkpoint:
    """TUNED as a checkpoint on disk: itself, or its adapter merged into the cache (``materialize``)."""
    if not is_adapter(ref):
        return Checkpoint(ref)
    return Checkpoint(materialize(AdapterCheckpoint(ref, base), say))
