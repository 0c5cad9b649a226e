"""Hub failures as one line the user can act on (`rankedit push`)."""

from __future__ import annotations

import re
import httpx2
from tqdm import tqdm


def _one_line(s: object) -> str:
    return " ".join(str(s).split())


def _stage_of(exc) -> str:
    try:  # httpx raises on a missing .request instead of returning None
        url = str(exc.response.request.url)
    except Exception:
        url = ""
    if "/commit/" in url:
        return "the commit"
    if "/preupload/" in url:
        return "the pre-upload check"
    if "/info/lfs/" in url or "lfs" in url.lower():
        return "the file upload"
    if "/repos/create" in url:
        return "creating the repo"
    if "/branch/" in url:
        return "creating the branch"
    return "the upload"


def explain(exc: BaseException, repo_id: str, base: str, revision: str | None) -> str | None:
    """One line for a Hub failure the user can act on; None for anything else."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RevisionNotFoundError

    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: publishing needs the network; unset HF_HUB_OFFLINE"
    if isinstance(exc, RuntimeError) and isinstance(exc.__cause__, BaseException) and "uploading" in str(exc):
        inner = explain(exc.__cause__, repo_id, base, revision)  # LFS upload wraps the real error
        m = re.search(r"uploading '([^']+)'", str(exc))
        return inner.replace("during the file upload", f"while uploading {m.group(1)!r}") if inner and m else inner
    if isinstance(exc, HfHubHTTPError) and getattr(exc, "response", None) is not None:
        code = exc.response.status_code
        stage = _stage_of(exc)
        said = _one_line(exc.server_message or "")
        said = f": {said}" if said else ""
        if isinstance(exc, RevisionNotFoundError):
            return f"branch {revision!r} not found in {repo_id} (HTTP {code})"
        if code == 401:
            return f"the Hub rejected the token (HTTP 401 during {stage}): set a valid HF_TOKEN or run `hf auth login`"
        if code == 403:
            return (f"no write access to {repo_id} (HTTP 403 during {stage}{said}): the repo belongs to another user "
                    "or organisation, or the token is read-only")
        if code == 404:
            return f"{repo_id} not found on {base} (HTTP 404 during {stage})"
        if code >= 500:
            return (f"the Hub failed during {stage} for {repo_id} (HTTP {code}{said}): the upload did not complete; "
                    "run the same push again")
        return f"the Hub refused {stage} for {repo_id} (HTTP {code}{said})"
    if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return f"cannot reach the Hugging Face Hub at {base} ({type(exc).__name__}): no network, or the endpoint is unreachable"
    if isinstance(exc, httpx2.TransportError):
        return (f"the connection to {base} broke during the upload to {repo_id} ({type(exc).__name__}): "
                "the upload did not complete; run the same push again")
    if isinstance(exc, ValueError) and "Invalid metadata in README.md" in str(exc):
        return f"the Hub rejected the metadata of README.md: {_one_line(exc)}"
    return None


def close_hub_progress_bars() -> None:
    """Finish the progress bars huggingface_hub leaves open when an upload fails.

    Its per-file bar is not closed on an exception, so the error line would be
    glued to a half-drawn bar; closing it ends that line first.
    """
    for bar in list(getattr(tqdm, "_instances", ())):
        if type(bar).__module__.startswith("huggingface_hub"):
            bar.close()
