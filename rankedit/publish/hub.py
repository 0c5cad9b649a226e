"""Publish an edited checkpoint to the Hugging Face Hub: the I/O edge of `rankedit push`.

Three steps, each usable on its own:

1. :func:`prepare` reads ``DIR/rankedit_edit.json`` (an artifact's ``delta.json``), the optional scores and
   analysis files, and what it can learn about the inputs (their Hub ids,
   their licence), and writes ``DIR/README.md`` (the model card of
   `rankedit.publish.card`) unless a person has edited the one already there.
2. :func:`upload` creates the repo if needed (`HfApi.create_repo(exist_ok=True)`)
   and uploads the folder in one commit (`HfApi.create_commit`), or, with
   ``large_folder``, through huggingface_hub's resumable large-folder upload
   (``upload_large_folder`` in huggingface_hub 1, ``upload_folder`` in 2), which
   a rerun of the same command resumes. `hf upload`'s commit message and
   description, ``--create-pr`` and ``--include/--exclude`` apply.
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
from rankedit.publish.hub_errors import close_hub_progress_bars, explain
from rankedit.publish.folder import ANALYSIS, MANIFEST, SCORES, check_dir, list_files, read_json  # noqa: F401 (MANIFEST: for callers)
from rankedit.files.provenance import CARD, HUB_ID_RE, hub_id_of, license_of
from rankedit.core.names import ADAPTER_CONFIG
import shutil
from rankedit import __version__
from rankedit.publish import card as cardlib
from rankedit.publish.redact import input_paths, public_bytes, redactions
from rankedit.publish.scores import card_scores

NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
STAGE = ".cache/huggingface/rankedit-push"  # a large-folder upload's staging folder inside DIR (never uploaded)


@dataclass
class Prepared:
    """What :func:`upload` will send: the folder, its card and its files."""

    dir: Path
    repo_id: str
    card_text: str
    card_action: str                      # "written", "replaced ...", or "kept (edited by hand)"
    files: list[tuple[str, int]] = field(default_factory=list)  # (path in repo, size in bytes)
    lora: bool = False
    base_id: str | None = None            # a LoRA adapter's base, as the uploaded adapter_config.json names it
    manifest: dict = field(default_factory=dict)  # rankedit_edit.json, or what an artifact's delta.json says


@dataclass(frozen=True)
class UploadOptions:
    """`hf upload`'s options that fit a published edit."""

    commit_message: str | None = None       # default: "Upload METHOD edit (rankedit VERSION)"
    commit_description: str | None = None
    create_pr: bool = False                 # open a pull request with the commit instead of committing to the branch
    include: tuple[str, ...] = ()           # glob patterns: only these files (README.md is always sent)
    exclude: tuple[str, ...] = ()           # glob patterns: not these files
    large_folder: bool = False              # resumable, several commits (huggingface_hub's large-folder upload)


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


def _adapter_config_naming(folder: Path, base_id: str) -> bytes:
    """The uploaded adapter_config.json: it names its base by Hub id (PEFT's AutoPeftModel loads it from
    there), where the local one names the base's path on this machine (``rankedit.edits.lora``)."""
    cfg = read_json(folder / ADAPTER_CONFIG, ADAPTER_CONFIG)
    cfg["base_model_name_or_path"] = base_id
    return (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode("utf-8")


def prepare(dir: str | os.PathLike, repo_id: str, *, regenerate_card: bool = False, scores: str | os.PathLike | None = None,
            analysis: str | os.PathLike | None = None, label: str | None = None, base_model: str | None = None,
            license: str | None = None) -> Prepared:
    """Check DIR, build its model card and write it to DIR/README.md (unless edited by hand).

    ``base_model``: the Hub id of the base when the edit was made from a local
    copy of it (otherwise found from the input itself). ``license``: the card's
    licence, in place of the one found in the inputs' model cards.
    """
    from huggingface_hub import ModelCard

    check_repo_id(repo_id)
    check_hub_id(base_model, "--base-model")
    if license is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", license):
        raise RankeditError(f"--license must be a Hub licence id such as apache-2.0, mit or other, got {license!r}")
    folder, manifest, lora = check_dir(dir)

    inputs = manifest["inputs"]
    base_path = str((inputs.get("base") or {}).get("path") or "")
    tuned_paths = [str(t.get("path") or "") for t in inputs.get("tuned") or [] if isinstance(t, dict)]
    base_id = base_model or (hub_id_of(base_path) if base_path else None) or (inputs.get("base") or {}).get("hub_id")
    tuned_ids = [hub_id_of(p) if p else None for p in tuned_paths]
    if lora and base_id is None:  # the adapter itself names its base
        base_id = hub_id_of(str(folder))
    if lora:
        if base_id is None:
            raise RankeditError(f"{folder} is a LoRA adapter of {cardlib.local_name(base_path)!r}, which has no known Hub "
                                "id: give --base-model OWNER/NAME, the Hub model it is a copy of")
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
                            list_files(folder), lora, base_id, manifest)
    atomic_write_text(readme, new_text)
    return Prepared(folder, repo_id, new_text, action, list_files(folder), lora, base_id, manifest)


# --------------------------------------------------------------------------- upload

def selected(files: list[tuple[str, int]], options: UploadOptions) -> list[tuple[str, int]]:
    """The files to send: ``--include`` patterns (all when none), less ``--exclude``, as `hf upload` filters."""
    from huggingface_hub.utils import filter_repo_objects

    if not options.include and not options.exclude:
        return list(files)
    keep = set(filter_repo_objects([r for r, _ in files], allow_patterns=list(options.include) or None,
                                   ignore_patterns=list(options.exclude) or None))
    return [(r, n) for r, n in files if r in keep]


def public_files(prepared: Prepared, options: UploadOptions) -> list[tuple[str, Path | bytes]]:
    """(path in repo, local file or the bytes to send instead) for every selected file: the recipe files
    name each input by its Hub id or its directory's name, never a path (``rankedit.publish.redact``), and
    a LoRA adapter's config names its base by Hub id."""
    folder = prepared.dir
    here = {os.path.realpath(folder), str(folder.absolute()), str(folder).rstrip("/")}
    mapping = redactions([*input_paths(prepared.manifest), str(folder)],
                         lambda p: prepared.repo_id if p in here else hub_id_of(p) or cardlib.local_name(p))
    out = []
    for rel, _ in selected(prepared.files, options):
        if rel == INVENTORY:  # rankedit's local record of what it wrote, not part of the model
            continue
        if rel == ADAPTER_CONFIG and prepared.base_id:
            data = _adapter_config_naming(folder, prepared.base_id)
        else:
            data = public_bytes(folder / rel, mapping)
        out.append((rel, data if data is not None else folder / rel))
    return out


def _stage(prepared: Prepared, files: list[tuple[str, Path | bytes]]) -> Path:
    """The folder a large-folder upload reads: hard links to DIR's files (copies where links fail), the
    rewritten recipe files as files. It lies in DIR/.cache/huggingface/ (which no upload sends), and is
    kept until the upload succeeds, so that a rerun resumes it."""
    stage = prepared.dir / STAGE
    shutil.rmtree(stage / "files", ignore_errors=True)  # the files, fresh; huggingface_hub's own record kept
    for rel, src in files:
        dest = stage / "files" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            dest.write_bytes(src)
        else:
            try:
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
    return stage / "files"


def _commit(api, prepared: Prepared, revision: str | None, options: UploadOptions):
    from huggingface_hub import CommitOperationAdd

    method = prepared.manifest.get("method", "?")
    what = "artifact" if prepared.manifest.get("record_file") else "edit"
    message = options.commit_message or f"Upload {method} {what} (rankedit {__version__})"
    description = options.commit_description if options.commit_description is not None else (
        f"The {what}, its recipe and model card, uploaded by `rankedit push`.")
    files = public_files(prepared, options)
    if not options.large_folder:
        return api.create_commit(
            repo_id=prepared.repo_id, repo_type="model", revision=revision, create_pr=options.create_pr or None,
            operations=[CommitOperationAdd(path_in_repo=r, path_or_fileobj=d) for r, d in files],
            commit_message=message, commit_description=description)
    stage = _stage(prepared, files)
    if hasattr(api, "upload_large_folder"):  # huggingface_hub 1.x: resumable, its own commits
        api.upload_large_folder(repo_id=prepared.repo_id, folder_path=stage, repo_type="model", revision=revision,
                                print_report=False)
        info = None
    else:  # huggingface_hub 2: upload_folder streams, commits in batches and resumes when rerun
        info = api.upload_folder(repo_id=prepared.repo_id, folder_path=stage, repo_type="model", revision=revision,
                                 create_pr=options.create_pr or None, commit_message=message,
                                 commit_description=description)

    shutil.rmtree(prepared.dir / STAGE, ignore_errors=True)
    return info


def upload(prepared: Prepared, *, token: str, private: bool = False, revision: str | None = None,
           options: UploadOptions = UploadOptions()) -> str:
    """Create the repo if needed and upload the folder (one commit, or a resumable large-folder upload);
    returns the repo URL, or the pull request's with ``options.create_pr``."""
    from huggingface_hub import HfApi

    check_options(options, revision)
    if not [r for r, _ in selected(prepared.files, options) if r != INVENTORY]:
        raise RankeditError(f"no file of {prepared.dir} is selected by --include/--exclude: nothing to upload")
    base = endpoint()
    api = HfApi(endpoint=base, token=token, library_name="rankedit", library_version=__version__)
    try:
        created = api.create_repo(prepared.repo_id, private=True if private else None, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(prepared.repo_id, branch=revision, exist_ok=True)
        info = _commit(api, prepared, revision, options)
    except RankeditError:
        raise
    except Exception as e:
        close_hub_progress_bars()
        msg = explain(e, prepared.repo_id, base, revision)
        if msg is None:
            raise
        raise RankeditError(msg.replace(token, "***")) from None
    if options.create_pr and getattr(info, "pr_url", None):
        return info.pr_url
    created_base = getattr(created, "endpoint", None) or base
    return repo_url(created_base, prepared.repo_id, revision)


def check_options(options: UploadOptions, revision: str | None) -> None:
    """Combinations the Hub's client refuses, refused first as one line."""
    import huggingface_hub

    if options.create_pr and revision and revision != "main":
        raise RankeditError("--create-pr opens a pull request against main: it cannot be combined with --revision")
    if options.large_folder and hasattr(huggingface_hub.HfApi, "upload_large_folder") and (
            options.create_pr or options.commit_message or options.commit_description):
        raise RankeditError(f"--large-folder with huggingface_hub {huggingface_hub.__version__} makes its own "
                            "commits: no --commit-message, --commit-description or --create-pr")


def push(dir: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None, dry_run: bool = False,
         regenerate_card: bool = False, scores: str | os.PathLike | None = None, analysis: str | os.PathLike | None = None,
         label: str | None = None, base_model: str | None = None, license: str | None = None,
         options: UploadOptions = UploadOptions()) -> str:
    """Publish the edited checkpoint DIR as the Hub model repo ``repo_id``; returns its URL.

    The card is written to DIR/README.md first. ``base_model`` names the Hub id
    of the base when the edit was made from a local copy; ``license`` sets the
    card's licence. With ``dry_run`` nothing is
    uploaded and no token is needed; the URL returned is where it would go.
    """
    check_repo_id(repo_id)
    check_dir(dir)
    check_options(options, revision)
    token = None if dry_run else resolve_token()
    prepared = prepare(dir, repo_id, regenerate_card=regenerate_card, scores=scores, analysis=analysis, label=label,
                       base_model=base_model, license=license)
    if dry_run:
        return repo_url(endpoint(), repo_id, revision)
    return upload(prepared, token=token, private=private, revision=revision, options=options)
