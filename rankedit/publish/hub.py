"""Publish an edited checkpoint to the Hugging Face Hub: the I/O edge of `rankedit push`.

Three steps, each usable on its own:

1. :func:`prepare` reads ``DIR/rankedit_edit.json``, the optional scores and
   analysis files, and what it can learn about the inputs (their Hub ids,
   their licence), and writes ``DIR/README.md`` (the model card of
   `rankedit.publish.card`) unless a person has edited the one already there.
2. :func:`upload` creates the repo if needed (`HfApi.create_repo(exist_ok=True)`)
   and uploads the folder with `HfApi.upload_folder`: one commit.
3. :func:`push` does both, as the CLI does.

The token comes from `huggingface_hub.get_token()` (``HF_TOKEN`` or the login
stored by `hf auth login`). It is handed to `HfApi` and nowhere else: it is
never printed, logged, or written to the card or the manifest. Every failure
the user can act on (no token, rejected token, someone else's repo, no
network, a server failing mid-upload) becomes one RankeditError line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rankedit.files.atomic import atomic_write_text
from rankedit.files.inventory import INVENTORY
from rankedit.core.errors import RankeditError
from rankedit.publish.errors import close_hub_progress_bars, explain
from rankedit.publish.folder import ANALYSIS, MANIFEST, SCORES, check_dir, list_files, read_json
from rankedit.files.provenance import CARD, HUB_ID_RE, hub_id_of, license_of
from rankedit.core.names import ADAPTER_CONFIG

NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"


@dataclass
class Prepared:
    """What :func:`upload` will send: the folder, its card and its files."""

    dir: Path
    repo_id: str
    card_text: str
    card_action: str                      # "written", "replaced ...", or "kept (edited by hand)"
    files: list[tuple[str, int]] = field(default_factory=list)  # (path in repo, size in bytes)
    lora: bool = False


# --------------------------------------------------------------------------- small helpers

def endpoint() -> str:
    """The Hub endpoint: ``HF_ENDPOINT`` read now (not at import), else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_token() -> str:
    """The user's token (``HF_TOKEN`` or the stored login); a RankeditError when there is none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise RankeditError(NO_TOKEN)
    return token


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not HUB_ID_RE.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise RankeditError(f"--repo-id must be OWNER/NAME (letters, digits, '.', '_', '-'), got {repo_id!r}")
    return repo_id


def repo_url(base: str, repo_id: str, revision: str | None) -> str:
    url = f"{base.rstrip('/')}/{repo_id}"
    return f"{url}/tree/{revision}" if revision and revision != "main" else url


def _path_names(p: str) -> list[str]:
    """The names a scores file may use for an input path: as written, and resolved."""
    return [p, str(Path(p).resolve())] if p else []


# --------------------------------------------------------------------------- prepare

def check_hub_id(value: str | None, option: str) -> str | None:
    """A Hub id the user gave (--base-model), checked like --repo-id; None passes."""
    if value is not None and (not HUB_ID_RE.match(value) or ".." in value or "--" in value):
        raise RankeditError(f"{option} must be a Hub model id OWNER/NAME, got {value!r}")
    return value


def _name_the_adapters_base(folder: Path, base_id: str) -> None:
    """adapter_config.json names the Hub id of its base (PEFT's AutoPeftModel loads it), never a local path."""
    path = folder / ADAPTER_CONFIG
    cfg = read_json(path, ADAPTER_CONFIG)
    if cfg.get("base_model_name_or_path") != base_id:
        cfg["base_model_name_or_path"] = base_id
        atomic_write_text(path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")



def prepare(dir: str | os.PathLike, repo_id: str, *, regenerate_card: bool = False, scores: str | os.PathLike | None = None,
            analysis: str | os.PathLike | None = None, label: str | None = None, base_model: str | None = None,
            license: str | None = None) -> Prepared:
    """Check DIR, build its model card and write it to DIR/README.md (unless edited by hand).

    ``base_model``: the Hub id of the base when the edit was made from a local
    copy of it (otherwise found from the input itself). ``license``: the card's
    licence, in place of the one found in the inputs' model cards.
    """
    from huggingface_hub import ModelCard

    from rankedit.publish import card as cardlib
    from rankedit.publish.scores import card_scores

    check_repo_id(repo_id)
    check_hub_id(base_model, "--base-model")
    if license is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", license):
        raise RankeditError(f"--license must be a Hub licence id such as apache-2.0, mit or other, got {license!r}")
    folder, manifest, lora = check_dir(dir)

    inputs = manifest["inputs"]
    base_path = str((inputs.get("base") or {}).get("path") or "")
    tuned_paths = [str(t.get("path") or "") for t in inputs.get("tuned") or [] if isinstance(t, dict)]
    base_id = base_model or (hub_id_of(base_path) if base_path else None)
    tuned_ids = [hub_id_of(p) if p else None for p in tuned_paths]
    if lora and base_id is None:  # the adapter itself names its base
        base_id = hub_id_of(str(folder))
    if lora:
        if base_id is None:
            raise RankeditError(f"{folder} is a LoRA adapter of {cardlib.local_name(base_path)!r}, which has no known Hub "
                                "id: give --base-model OWNER/NAME, the Hub model it is a copy of")
        _name_the_adapters_base(folder, base_id)
    lic = license
    for p, i in [*zip(tuned_paths, tuned_ids), (base_path, base_id)] if lic is None else []:
        if p and (lic := license_of(p, i)):
            break

    scores_path = Path(scores) if scores else (folder / SCORES if (folder / SCORES).is_file() else None)
    analysis_path = Path(analysis) if analysis else (folder / ANALYSIS if (folder / ANALYSIS).is_file() else None)
    selected = None
    if scores_path is not None:
        names = [label] if label else [str(dir), str(folder.resolve()), folder.resolve().name]
        selected = card_scores(scores_path, names, _path_names(base_path), [x for p in tuned_paths for x in _path_names(p)])
    summary = read_json(analysis_path, "analysis summary") if analysis_path is not None else None

    new_text = str(cardlib.build_card(manifest, repo_id=repo_id, base_id=base_id, tuned_ids=tuned_ids, license=lic,
                                      analysis=summary, scores=selected, lora=lora))
    readme = folder / CARD
    action = "written"
    if readme.exists():
        old = readme.read_text(encoding="utf-8", errors="replace")
        if regenerate_card:
            action = "regenerated (--regenerate-card)"
        elif cardlib.is_untouched(old):
            action = "regenerated (the previous rankedit card was not edited)"
        elif cardlib.is_tool_template(old):
            action = "replaced (it was the default card of mergekit/PEFT)"
        else:
            try:
                ModelCard(old)
            except Exception as e:
                raise RankeditError(f"{readme} does not parse as a model card ({' '.join(str(e).split())}); "
                                    "fix its front matter or pass --regenerate-card") from None
            return Prepared(folder, repo_id, old, "kept (edited by hand; --regenerate-card replaces it)",
                            list_files(folder), lora)
    atomic_write_text(readme, new_text)
    return Prepared(folder, repo_id, new_text, action, list_files(folder), lora)


# --------------------------------------------------------------------------- upload

def _operations(folder: Path, manifest: dict, repo_id: str) -> list:
    """One commit's files: the folder as `upload_folder` would send it, less rankedit's local inventory, with
    the recipe files naming each input by its Hub id or its directory's name, never a path (hub_redact)."""
    from huggingface_hub import CommitOperationAdd

    from rankedit.publish import card as cardlib
    from rankedit.publish.redact import input_paths, public_bytes, redactions

    here = {os.path.realpath(folder), str(folder.absolute()), str(folder).rstrip("/")}
    mapping = redactions([*input_paths(manifest), str(folder)],
                         lambda p: repo_id if p in here else hub_id_of(p) or cardlib.local_name(p))
    ops = []
    for rel, _ in list_files(folder):
        if rel == INVENTORY:  # rankedit's local record of what it wrote, not part of the model
            continue
        data = public_bytes(folder / rel, mapping)
        ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data if data is not None else folder / rel))
    return ops


def upload(prepared: Prepared, *, token: str, private: bool = False, revision: str | None = None) -> str:
    """Create the repo if needed and upload the folder in one commit; returns the repo URL."""
    from huggingface_hub import HfApi

    from rankedit import __version__

    base = endpoint()
    api = HfApi(endpoint=base, token=token, library_name="rankedit", library_version=__version__)
    manifest = read_json(prepared.dir / MANIFEST, MANIFEST)
    try:
        created = api.create_repo(prepared.repo_id, private=True if private else None, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(prepared.repo_id, branch=revision, exist_ok=True)
        api.create_commit(
            repo_id=prepared.repo_id, operations=_operations(prepared.dir, manifest, prepared.repo_id), revision=revision,
            repo_type="model", commit_message=f"Upload {manifest['method']} edit (rankedit {__version__})",
            commit_description="Edited checkpoint, its recipe (rankedit_edit.json) and model card, uploaded by `rankedit push`.",
        )
    except Exception as e:
        close_hub_progress_bars()
        msg = explain(e, prepared.repo_id, base, revision)
        if msg is None:
            raise
        raise RankeditError(msg.replace(token, "***")) from None
    created_base = getattr(created, "endpoint", None) or base
    return repo_url(created_base, prepared.repo_id, revision)


def push(dir: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None, dry_run: bool = False,
         regenerate_card: bool = False, scores: str | os.PathLike | None = None, analysis: str | os.PathLike | None = None,
         label: str | None = None, base_model: str | None = None, license: str | None = None) -> str:
    """Publish the edited checkpoint DIR as the Hub model repo ``repo_id``; returns its URL.

    The card is written to DIR/README.md first. ``base_model`` names the Hub id
    of the base when the edit was made from a local copy; ``license`` sets the
    card's licence. With ``dry_run`` nothing is
    uploaded and no token is needed; the URL returned is where it would go.
    """
    check_repo_id(repo_id)
    check_dir(dir)
    token = None if dry_run else resolve_token()
    prepared = prepare(dir, repo_id, regenerate_card=regenerate_card, scores=scores, analysis=analysis, label=label,
                       base_model=base_model, license=license)
    if dry_run:
        return repo_url(endpoint(), repo_id, revision)
    return upload(prepared, token=token, private=private, revision=revision)
