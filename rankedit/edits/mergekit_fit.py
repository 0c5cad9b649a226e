"""Does mergekit's own definition of an architecture match the tensors a checkpoint holds?

mergekit 0.1.5 plans a merge from an architecture definition (a JSON template per
``architectures[0]`` of config.json), not from the tensors on disk. Where the two
disagree the merge fails or, worse, exits 0 with a wrong model: its ``qwen3_moe.json``
names fused ``experts.gate_up_proj`` stacks while transformers saves one 2-D tensor per
expert; DeepSeek-V3, GPT-OSS, Qwen3-Next, Qwen3.5, Falcon-H1 and Nemotron-H have no
definition, and the tensors mergekit infers for them from a model instance drop or
rename some of those on disk. So an edit goes through mergekit only where its
definition names exactly the checkpoint's tensors (``fits``); elsewhere rankedit writes
the checkpoint itself, tensor by tensor (``rankedit.edits.streamed``), and a plain
mergekit YAML is refused (``rankedit.edits.config_file``).
"""

from __future__ import annotations

from typing import Optional

from rankedit.files.checkpoint import Checkpoint
import logging

MERGEKIT, STREAMED = "mergekit", "streamed"


def mismatch(ck: Checkpoint) -> Optional[str]:
    """None when mergekit's definition of ``ck``'s architecture names exactly its tensors; else why not."""
    from mergekit.architecture import arch_info_for_config
    from transformers import AutoConfig

    arch = ck.architecture
    try:
        config = AutoConfig.from_pretrained(str(ck.path), trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - a config transformers cannot read: mergekit could not either
        return f"transformers cannot read its config ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
    if not getattr(config, "architectures", None):
        return "its config.json names no architecture"
    level = logging.getLogger("mergekit").level
    logging.getLogger("mergekit").setLevel(logging.ERROR)  # "No JSON architecture found": said here, in one line
    try:
        info = arch_info_for_config(config)
    except Exception as e:  # noqa: BLE001
        return f"mergekit cannot read its architecture ({e})"
    finally:
        logging.getLogger("mergekit").setLevel(level)
    if info is None:
        return f"mergekit 0.1.5 has no definition of {arch}"
    try:
        weights = info.all_weights(config)
    except Exception as e:  # noqa: BLE001 - a definition that does not fit the config
        return f"mergekit's definition of {arch} does not fit its config ({e})"
    known: set[str] = set()
    required = []
    for w in weights:
        names = {w.name, *(w.aliases or ()), *(w.tied_names or ())}
        known |= names
        if not w.optional and not (names & set(ck.names)):
            required.append(w.name)
    extra = [n for n in ck.names if n not in known]
    if extra:
        return f"mergekit's definition of {arch} does not name {len(extra)} of its tensors, e.g. {extra[0]}"
    if required:
        return f"mergekit's definition of {arch} expects {len(required)} tensors it does not hold, e.g. {required[0]}"
    return None


def writer(ck: Checkpoint) -> dict:
    """How a merged edit of ``ck`` is written: {"route": "mergekit" | "streamed", "reason": ...}."""
    why = mismatch(ck)
    if why is None:
        return {"route": MERGEKIT, "reason": "mergekit's definition names exactly the checkpoint's tensors"}
    return {"route": STREAMED, "reason": why + "; written by rankedit tensor by tensor"}
