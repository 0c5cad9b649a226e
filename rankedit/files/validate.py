"""Is a checkpoint fit to be read, written, scored or published? One place answers.

Every command runs its inputs through here before any work, and its outputs
before they are renamed into place, so no command builds on, writes, scores or
uploads weights that are truncated, non-finite or incomplete:

- ``check_weight_file``: a safetensors file's header and byte ranges agree with
  the file (``rankedit.files.checkpoint.read_header``) and every float is finite,
  streamed one tensor at a time;
- ``check_finite``: that, for every weight file of a checkpoint; a verdict is
  remembered per file (real path, size, mtime) in ``$RANKEDIT_CACHE``, so a
  rerun does not reread gigabytes it has already checked;
- ``check_output``: a freshly written checkpoint is whole, finite and has the
  tensors (names, shapes) of the checkpoint it was made from;
- ``check_complete``: transformers finds every parameter of the architecture
  in config.json, with the right shape (nothing would be initialised at random);
- ``check_tokenizer``: the directory has a tokenizer lm-eval can use;
- ``check_scorable``: the three above, what ``rankedit score`` needs.

Each failure is one RankeditError naming the file and the tensor.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable

from rankedit.files.input_kinds import check_float_matrices
from rankedit.files.checkpoint import Checkpoint, few, first_line, check_compatible, check_tensor_finite, read_header
from rankedit.core.errors import RankeditError
from rankedit.core.names import ADAPTER_CONFIG, HF_CONFIG, TOKENIZER_CONFIG
from safetensors import safe_open
from rankedit.files.hashes import file_key, load_memo, store_memo

VERDICTS = "checked.json"  # memo of files (and checkpoints) found sound, beside sha256.json
# Files that carry a tokenizer's vocabulary (tokenizer_config.json alone does not:
# transformers then builds an empty tokenizer that fails at the first prompt).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def check_weight_file(path: str | os.PathLike) -> None:
    """Header, byte ranges and finiteness of one safetensors file, one tensor in memory at a time."""
    path = Path(path)
    names = read_header(path)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # noqa: BLE001 - the library's own checks, as one line
        raise RankeditError(f"{path}: corrupt or truncated safetensors file ({first_line(e)})") from None
    for name in names:
        try:
            t = handle.get_tensor(name)
        except Exception as e:  # noqa: BLE001
            raise RankeditError(f"{path}: cannot read tensor {name} ({first_line(e)})") from None
        check_tensor_finite(t, name, path)
        del t


def _remembered(key: str, check) -> None:
    """Run ``check`` unless a previous run recorded that ``key`` passed it."""
    if load_memo(VERDICTS).get(key) == "ok":
        return
    check()
    store_memo({key: "ok"}, VERDICTS)


def check_files(files: Iterable[Path], remember: bool = True) -> None:
    for f in files:
        if remember:
            _remembered(f"weights|{file_key(f)}", lambda f=f: check_weight_file(f))
        else:
            check_weight_file(f)


def check_finite(ck: Checkpoint) -> None:
    """Every weight file of ``ck`` is whole and holds only finite floats."""
    check_files(ck.weight_files)


def check_inputs(cks: Iterable[Checkpoint]) -> None:
    """What every command does with its input checkpoints before any work."""
    seen = set()
    for ck in cks:
        if ck.path.resolve() not in seen:
            seen.add(ck.path.resolve())
            check_float_matrices([ck], [str(ck.path)])  # int8 codes are never read as weights
            check_finite(ck)


def check_output(folder: str | os.PathLike, dest: str | os.PathLike, like: Checkpoint | None = None) -> None:
    """A checkpoint just written to ``folder`` (a temporary directory that becomes ``dest``
    once renamed): whole, finite, and, given ``like``, with its tensor names and shapes."""
    folder = Path(folder)
    try:
        out = Checkpoint(folder)
        check_files(out.weight_files, remember=False)  # a temporary path is never looked up again
    except RankeditError as e:
        raise RankeditError(f"refused to write {dest}: the result is broken, "
                            f"{str(e).replace(str(folder) + os.sep, '')} (nothing was written)") from None
    if like is not None:
        try:
            check_compatible([like, out], ["input", "output"])
        except RankeditError as e:
            raise RankeditError(f"internal: the written checkpoint lost tensors: {e}") from None


def check_tokenizer(path: str | os.PathLike) -> None:
    """A tokenizer that transformers loads from ``path`` with a non-empty vocabulary."""
    path = Path(path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES) and not list(path.glob("*.tiktoken")):
        raise RankeditError(f"{path}: no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                            "copy the tokenizer files of the model it was trained from into it")
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        n = len(tok)
    except Exception as e:  # noqa: BLE001 - any failure to load is the same problem to the user
        raise RankeditError(f"{path}: the tokenizer does not load ({first_line(e)})") from None
    if n == 0:
        raise RankeditError(f"{path}: the tokenizer has an empty vocabulary")


def check_config(ck: Checkpoint) -> None:
    """config.json is there and names a model_type: what mergekit and transformers need to know the
    architecture (they otherwise fail with 'Unrecognized model'). Checked before ``check_complete``
    and before an edit; an adapter folder goes by its base's config."""
    if (ck.path / ADAPTER_CONFIG).is_file():
        return
    if not (ck.path / HF_CONFIG).is_file():
        raise RankeditError(f"{ck.path}: no config.json (the architecture of the weights is unknown); "
                            "copy the config.json of the model it was trained from into it")
    if not isinstance(ck.config.get("model_type"), str) or not ck.config["model_type"]:
        raise RankeditError(f"{ck.path / HF_CONFIG}: no 'model_type' (the architecture of the weights is unknown)")


def check_complete(ck: Checkpoint) -> None:
    """Every parameter transformers expects for config.json's architecture is in the weights,
    with its shape: the model would otherwise be scored with random tensors in their place.

    The model is laid out on the ``meta`` device by ``from_pretrained`` itself (no
    data is read), so the checkpoint's names are matched exactly as a real load
    matches them: prefixes, tied weights, non-persistent buffers and the key
    renamings transformers applies to some architectures.

    ``use_kernels=False``: from transformers 5.25 on, ``from_pretrained`` swaps layers
    for the ``kernels`` package's by default once the weights are loaded, and that
    package refuses the meta device ("Unsupported device type 'meta'"); the swap
    comes after the loading report, so turning it off changes nothing checked here.
    The keyword exists since transformers 5.0 (default off there).
    """
    if not (ck.path / HF_CONFIG).is_file():
        raise RankeditError(f"{ck.path}: no config.json (the architecture of the weights is unknown)")
    from transformers import AutoModelForCausalLM

    try:
        with quiet_transformers():
            _, info = AutoModelForCausalLM.from_pretrained(
                str(ck.path), device_map="meta", output_loading_info=True, ignore_mismatched_sizes=True,
                use_kernels=False, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - unknown model type, bad config: one line
        raise RankeditError(f"{ck.path}: transformers cannot build this model from config.json ({first_line(e)})") from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda m: m[0])
    problems = []
    if missing:
        extra = sorted(info.get("unexpected_keys") or [])
        hint = f"; unexpected: {few(extra)} (renamed?)" if extra else ""
        problems.append(f"missing {len(missing)} tensor(s) the architecture needs: {few(missing)}{hint}")
    if mismatched:
        name, have, want = mismatched[0]
        problems.append(f"{len(mismatched)} tensor(s) of the wrong shape, e.g. {name}: {list(have)} where "
                        f"{ck.architecture} needs {list(want)}")
    if problems:
        raise RankeditError(f"{ck.path}: incomplete checkpoint, " + "; ".join(problems))


def check_scorable(ck: Checkpoint) -> None:
    """Finite, complete and with a tokenizer: what lm-eval needs to score ``ck`` honestly."""
    check_float_matrices([ck], [str(ck.path)])  # transformers would cast int8 codes to floats in silence
    check_finite(ck)
    files = [*ck.weight_files, ck.path / HF_CONFIG,
             *(ck.path / f for f in sorted(os.listdir(ck.path)) if f in TOKENIZER_FILES or f == TOKENIZER_CONFIG)]
    key = "scorable|" + "|".join(file_key(f) for f in files if f.is_file())

    def check():
        check_complete(ck)
        check_tokenizer(ck.path)

    _remembered(key, check)


@contextlib.contextmanager
def quiet_transformers():
    """No load report or progress bar: a problem here is reported as one line by the caller."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()
