"""A small Hugging Face Hub-compatible HTTP server, for tests only.

It speaks the part of the Hub API that `huggingface_hub`'s `create_repo`,
`create_branch` and `upload_folder` use when Xet is disabled
(``HF_HUB_DISABLE_XET=1``):

- ``POST /api/repos/create``                       create a model repo (401 / 403 / 409 like the Hub)
- ``GET  /api/models/OWNER/NAME[/revision/REV]``   repo info (create_repo looks here after a 403)
- ``GET  /api/models/OWNER/NAME/refs``             branches (create_branch looks here after a 403)
- ``POST /api/models/OWNER/NAME/branch/BRANCH``    create a branch from main
- ``POST /api/validate-yaml``                      README.md front matter check
- ``POST /api/models/OWNER/NAME/preupload/REV``    upload mode per file: "lfs" for weights and big files, else "regular"
- ``POST /OWNER/NAME.git/info/lfs/objects/batch``  git-lfs batch API, basic transfer
- ``PUT  /_lfs/OID`` and ``POST /_lfs_verify``     the LFS object upload (sha256 checked) and its verify step
- ``POST /api/models/OWNER/NAME/commit/REV``       NDJSON commit: header, base64 `file`, `lfsFile`, `deletedFile`;
                                                   ``?create_pr=1`` commits to a new ``refs/pr/N`` instead

State lives in memory: ``server.repos[repo_id]["branches"][name]`` maps each
path to the bytes received, so a test can compare them with the files on
disk. ``server.fail`` injects failures: ``{"commit": 500}`` or ``{"lfs_put": 507}``
(status codes the client does not retry). The server listens on 127.0.0.1 on
an ephemeral port, in a daemon thread, and stops by itself after
``lifetime_s`` even if a test forgets to stop it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

MAX_BODY = 256 * 1024 * 1024  # bound what one request may send
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"

REPO = r"(?P<repo>[^/]+/[^/]+?)"


class HubServer:
    """``with HubServer(users={"TOKEN": "alice"}) as hub: ... hub.url ...``"""

    def __init__(self, users: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None,
                 lifetime_s: float = 120.0):
        self.users = dict(users or {})          # token -> user name
        self.orgs = dict(orgs or {})            # user -> organisations they may write to
        self.repos: dict[str, dict] = {}        # repo_id -> {"owner", "private", "branches": {name: {path: bytes}}, "commits": [...]}
        self.lfs: dict[str, bytes] = {}         # sha256 -> content
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self.headers_seen: list[dict[str, str]] = []  # lower-cased names
        self.fail: dict[str, int] = {}
        self.lifetime_s = lifetime_s
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers for tests
    def add_repo(self, repo_id: str, owner: str, private: bool = False) -> None:
        """A repo that already exists, e.g. someone else's."""
        self.repos[repo_id] = {"owner": owner, "private": private, "commits": [],
                               "branches": {"main": {".gitattributes": GITATTRIBUTES}}}

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id]["branches"][branch])

    def can_write(self, user: str | None, repo_id: str) -> bool:
        ns = repo_id.split("/")[0]
        return user is not None and (ns == user or ns in self.orgs.get(user, []))


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    # ---------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
                if len(out) > MAX_BODY:
                    raise ValueError("request body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(n) if n else b""

    def _send(self, code: int, obj=None, headers: dict | None = None) -> None:
        data = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str, error_code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if error_code:
            headers["X-Error-Code"] = error_code
        self._send(code, {"error": message}, headers)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        return self.hub.users.get(token) if token else None

    def _authed(self) -> str | None:
        """The user behind the token, or None after answering 401."""
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
        return user

    def _repo(self, repo_id: str, user: str | None, write: bool) -> dict | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo["private"] and repo["owner"] != user and not self.hub.can_write(user, repo_id)):
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        if write and not self.hub.can_write(user, repo_id):
            self._error(403, f"You don't have the rights to write to {repo_id}")
            return None
        return repo

    def _branch(self, repo: dict, rev: str) -> dict | None:
        rev = unquote(rev)
        if rev not in repo["branches"]:
            self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return None
        return repo["branches"][rev]

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        with self.hub.lock:
            self.hub.requests.append((method, path))
            self.hub.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        try:
            body = self._body() if method in ("POST", "PUT") else b""
            for m, pattern, fn in ROUTES:
                if m == method and (match := re.fullmatch(pattern, path)):
                    with self.hub.lock:
                        return fn(self, body, **match.groupdict())
            self._error(404, f"no route {method} {path}")
        except (ValueError, KeyError, TypeError) as e:
            self._error(400, f"bad request: {e}")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ---------------------------------------------------------------- endpoints
    def create_repo(self, body: bytes):
        user = self._authed()
        if user is None:
            return
        payload = json.loads(body)
        if payload.get("type") not in (None, "model"):
            return self._error(400, "only model repos here")
        ns = payload.get("organization") or user
        repo_id = f"{ns}/{payload['name']}"
        if not self.hub.can_write(user, repo_id):
            return self._error(403, f'You don\'t have the rights to create a model under the namespace "{ns}"')
        if repo_id in self.hub.repos:  # the Hub names the existing repo's URL, and create_repo(exist_ok) reads it
            return self._send(409, {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"},
                              {"X-Error-Message": "You already created this model repo"})
        self.hub.add_repo(repo_id, owner=ns, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self._send(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": uuid.uuid4().hex})

    def repo_info(self, body: bytes, repo: str, rev: str | None = None):
        r = self._repo(repo, self._user(), write=False)
        if r is None:
            return
        branch = self._branch(r, rev or "main")
        if branch is None:
            return
        sha = r["commits"][-1]["oid"] if r["commits"] else "0" * 40
        self._send(200, {"id": repo, "modelId": repo, "sha": sha, "private": r["private"],
                         "siblings": [{"rfilename": p} for p in sorted(branch)]})

    def refs(self, body: bytes, repo: str):
        r = self._repo(repo, self._user(), write=False)
        if r is None:
            return
        self._send(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": "0" * 40}
                                      for b in r["branches"]], "converts": [], "tags": []})

    def create_branch(self, body: bytes, repo: str, branch: str):
        user = self._authed()
        if user is None or (r := self._repo(repo, user, write=True)) is None:
            return
        branch = unquote(branch)
        if branch in r["branches"]:
            return self._error(409, "Reference already exists")
        r["branches"][branch] = dict(r["branches"]["main"])
        self._send(200, {})

    def validate_yaml(self, body: bytes):
        content = json.loads(body)["content"]
        m = re.match(r"^\s*---[\r\n]+(.*?)[\r\n]+---[\r\n]", content, re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as e:
            return self._send(400, {"errors": [{"message": f"invalid YAML: {e}"}], "warnings": []})
        if meta is not None and not isinstance(meta, dict):
            return self._send(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, body: bytes, repo: str, rev: str):
        user = self._authed()
        if user is None or (r := self._repo(repo, user, write=True)) is None or self._branch(r, rev) is None:
            return
        files = json.loads(body)["files"]
        out = []
        for f in files:
            lfs = f["path"].endswith(LFS_SUFFIXES) or int(f["size"]) >= LFS_MIN_SIZE
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._send(200, {"files": out, "commitOid": "0" * 40})

    def lfs_batch(self, body: bytes, repo: str):
        user = self._authed()
        if user is None or self._repo(repo, user, write=True) is None:
            return
        payload = json.loads(body)
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            return self._error(400, "only basic uploads")
        objects = []
        for o in payload["objects"]:
            obj = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.hub.lfs:
                obj["actions"] = {"upload": {"href": f"{self.hub.url}/_lfs/{o['oid']}", "header": {}},
                                  "verify": {"href": f"{self.hub.url}/_lfs_verify", "header": {}}}
            objects.append(obj)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_put(self, body: bytes, oid: str):
        if "lfs_put" in self.hub.fail:
            return self._error(self.hub.fail["lfs_put"], "storage failure (injected)")
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "sha256 mismatch")
        self.hub.lfs[oid] = body
        self._send(200, {})

    def lfs_verify(self, body: bytes):
        o = json.loads(body)
        ok = o["oid"] in self.hub.lfs and len(self.hub.lfs[o["oid"]]) == o["size"]
        self._send(200 if ok else 404, {} if ok else {"error": "object not found"})

    def commit(self, body: bytes, repo: str, rev: str):
        user = self._authed()
        if user is None or (r := self._repo(repo, user, write=True)) is None or (branch := self._branch(r, rev)) is None:
            return
        if "commit" in self.hub.fail:
            return self._error(self.hub.fail["commit"], "internal error (injected)")
        lines = [json.loads(x) for x in body.splitlines() if x.strip()]
        if not lines or lines[0].get("key") != "header":
            return self._error(400, "first NDJSON line must be the header")
        pr = None
        if parse_qs(urlsplit(self.path).query).get("create_pr") == ["1"]:  # a pull request: its own ref
            pr = sum(b.startswith("refs/pr/") for b in r["branches"]) + 1
            branch = r["branches"][f"refs/pr/{pr}"] = dict(branch)
            rev = f"refs/pr/{pr}"
        new = dict(branch)
        for item in lines[1:]:
            v = item["value"]
            if item["key"] == "file":
                if v.get("encoding") != "base64":
                    return self._error(400, "only base64 files")
                new[v["path"]] = base64.b64decode(v["content"])
            elif item["key"] == "lfsFile":
                if v["oid"] not in self.hub.lfs:
                    return self._error(400, f"LFS object {v['oid']} was never uploaded")
                new[v["path"]] = self.hub.lfs[v["oid"]]
            elif item["key"] == "deletedFile":
                new.pop(v["path"], None)
            else:
                return self._error(400, f"unsupported operation {item['key']}")
        branch.clear()
        branch.update(new)
        oid = hashlib.sha1(body).hexdigest()
        r["commits"].append({"oid": oid, "branch": unquote(rev), "summary": lines[0]["value"].get("summary"),
                             "description": lines[0]["value"].get("description"),
                             "files": sorted(new)})
        self._send(200, {"commitUrl": f"{self.hub.url}/{repo}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": f"{self.hub.url}/{repo}/discussions/{pr}" if pr else None, "success": True})


ROUTES = [
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("GET", rf"/api/models/{REPO}/refs", _Handler.refs),
    ("GET", rf"/api/models/{REPO}/revision/(?P<rev>[^/]+)", _Handler.repo_info),
    ("GET", rf"/api/models/{REPO}", _Handler.repo_info),
    ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", _Handler.create_branch),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
    ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/_lfs/(?P<oid>[0-9a-f]{64})", _Handler.lfs_put),
    ("POST", r"/_lfs_verify", _Handler.lfs_verify),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", _Handler.commit),
]


@contextlib.contextmanager
def serving(monkeypatch, tmp_path, **server_args):
    """A HubServer that huggingface_hub talks to: the environment and its import-time constants point at it."""
    from huggingface_hub import constants

    with HubServer(lifetime_s=60, **server_args) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        monkeypatch.setenv("HF_TOKEN", next(iter(server_args.get("users", {}))))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        # huggingface_hub reads these at import time, which happened long before the test
        monkeypatch.setattr(constants, "ENDPOINT", srv.url)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
        yield srv

