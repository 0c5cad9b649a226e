"""`rankedit push` against a local Hub-compatible server (tests/hub_server.py).

Real edits (rankedit.edits.build_edit through mergekit), the real
huggingface_hub client, a real HTTP server on 127.0.0.1: only the Hub's
storage is replaced. Xet is disabled, so weights go through the git-lfs basic
transfer and small files as base64 in the NDJSON commit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants

from rankedit.publish import hub
from rankedit.cli.main import main
from rankedit.edits.build import build_edit
from rankedit.core.errors import RankeditError
from hub_server import serving  # tests/ is on sys.path (no package)

TOKEN = "hf_FAKEtokenDoNotLeak0123456789abcdef"
OTHER_TOKEN = "hf_bobsTOKENxyz9876543210"
BASE_ID = "rankedit-test/tiny-base"
TUNED_ID = "rankedit-test/tiny-rl"


def _set_config(path: Path, **kv) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(kv)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))


@pytest.fixture(scope="module")
def sources(tiny_pair, tmp_path_factory):
    """Copies of the tiny pair that look downloaded from the Hub: the base as a snapshot in
    the HF cache layout (how `rankedit edit` records a Hub id), the tuned model naming its
    Hub id in config.json. Both READMEs state a licence; the tuned model's wins."""
    root = tmp_path_factory.mktemp("hub_sources")
    snapshot = root / "hub" / f"models--{BASE_ID.replace('/', '--')}" / "snapshots" / "0123abcd"
    base = Path(shutil.copytree(tiny_pair[0], snapshot))
    tuned = Path(shutil.copytree(tiny_pair[1], root / "tuned"))
    _set_config(tuned, _name_or_path=TUNED_ID)
    (base / "README.md").write_text("---\nlicense: mit\n---\n# tiny base\n")
    (tuned / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# tiny rl\n")
    return base, tuned


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_edits")
    base, tuned = sources
    full = build_edit("rank-k", base, tuned, root / "rank1", k=1)
    lora = build_edit("rank-k", base, tuned, root / "rank1-lora", k=1, as_lora=True)
    report = root / "report.json"
    report.write_text(json.dumps({
        "scores": {"base": {"arith": {"value": 0.355, "stderr": 0.015, "n": 1000}},
                   "tuned": {"arith": {"value": 0.573, "stderr": 0.016, "n": 1000}},
                   "rank1": {"arith": {"value": 0.504, "stderr": 0.016, "n": 1000}}},
        "rows": [{"edit": "rank1", "task": "arith", "score": 0.504, "retention": 0.683, "ci_low": 0.61,
                  "ci_high": 0.75, "forgetting": None}]}))
    summary = root / "summary.json"
    summary.write_text(json.dumps({"params": {"k": 16}, "model": {"sparsity_bf16": 0.42},
                                   "mean": {"rank1_energy": 0.43, "rel_update_norm": 0.0028},
                                   "by_kind": {"attention": {"rank1_energy": 0.41}, "mlp": {"rank1_energy": 0.45}}}))
    return {"full": full, "lora": lora, "report": report, "summary": summary}


@pytest.fixture
def edit(built, tmp_path):
    """A fresh copy of the full edit (push writes README.md into it)."""
    return Path(shutil.copytree(built["full"], tmp_path / "rank1"))


@pytest.fixture
def server(monkeypatch, tmp_path):
    """The local Hub, with alice (TOKEN) and bob (OTHER_TOKEN); the environment points at it."""
    with serving(monkeypatch, tmp_path, users={TOKEN: "alice", OTHER_TOKEN: "bob"}, orgs={"alice": ["alice-lab"]}) as srv:
        yield srv


def _local_files(folder: Path) -> dict[str, bytes]:
    """What push must upload: every file but rankedit's local record of what it wrote (.rankedit-output.json)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.name != ".rankedit-output.json"}


def _cli(argv, capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- success

def test_push_uploads_checkpoint_byte_identical_with_card(server, edit, built, tmp_path):
    url = hub.push(edit, "alice/tiny-rank1", scores=built["report"], analysis=built["summary"], label="rank1")
    assert url == f"{server.url}/alice/tiny-rank1"

    received = server.files("alice/tiny-rank1")
    local = _local_files(edit)
    assert set(local) <= set(received) and set(received) - set(local) == {".gitattributes"}
    # byte-identical, weights included; the recipe files name the inputs by Hub id instead of local path
    recipes = {n for n in local if n.endswith((".json", ".yml"))}
    assert all(received[name] == data for name, data in local.items() if name not in recipes)
    manifest = json.loads(local["rankedit_edit.json"])
    for name in recipes:
        text = local[name].decode()
        for path, hub_id in ((manifest["inputs"]["base"]["path"], BASE_ID),
                             (manifest["inputs"]["tuned"][0]["path"], TUNED_ID)):
            text = text.replace(json.dumps(path)[1:-1] if name.endswith(".json") else path, hub_id)
        assert received[name].decode() == text, name
    assert len(server.repos["alice/tiny-rank1"]["commits"]) == 1          # one commit
    assert ("POST", "/alice/tiny-rank1.git/info/lfs/objects/batch") in server.requests  # weights went through LFS

    card_path = tmp_path / "received-README.md"
    card_path.write_bytes(received["README.md"])
    card = ModelCard.load(card_path)
    assert card.data.library_name == "transformers"
    assert card.data.base_model == [BASE_ID, TUNED_ID]
    assert card.data.license == "apache-2.0"
    assert {"rankedit", "model-editing", "rank-k"} <= set(card.data.tags)
    metrics = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert metrics == {("arith", "score"): 0.504, ("arith", "gain_retention"): 0.683}
    assert "[0.61, 0.75]" in card.text and "| k | 1 |" in card.text and "mergekit" not in card.data.tags
    manifest = json.loads(received["rankedit_edit.json"])
    assert f"| update energy kept ‖dW_edit‖_F / ‖dW‖_F (all edited matrices) | {manifest['summary']['energy_kept']:.4g} |" in card.text
    assert "sparsity_bf16 | 0.42" in card.text


def test_cli_push_to_branch_private_in_subprocess(server, edit, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf_home")}
    r = subprocess.run([sys.executable, "-m", "rankedit", "push", str(edit), "--repo-id", "alice-lab/rank1",
                        "--private", "--revision", "dev"], env=env, capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"{server.url}/alice-lab/rank1/tree/dev"
    repo = server.repos["alice-lab/rank1"]
    assert repo["private"] is True
    assert set(repo["branches"]["main"]) == {".gitattributes"}
    assert repo["branches"]["dev"]["model.safetensors"] == (edit / "model.safetensors").read_bytes()
    assert TOKEN not in r.stdout + r.stderr


def test_lora_export_publishes_as_peft_adapter(server, built, tmp_path):
    lora = Path(shutil.copytree(built["lora"], tmp_path / "lora"))
    hub.push(lora, "alice/tiny-rank1-lora")
    received = server.files("alice/tiny-rank1-lora")
    assert received["adapter_model.safetensors"] == (lora / "adapter_model.safetensors").read_bytes()
    assert received["adapter_config.json"] == (lora / "adapter_config.json").read_bytes()
    card = ModelCard(received["README.md"].decode())
    assert card.data.library_name == "peft" and card.data.base_model == BASE_ID
    assert "PeftModel.from_pretrained" in card.text and {"lora", "peft"} <= set(card.data.tags)


def test_dry_run_writes_card_lists_files_uploads_nothing(server, edit, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")  # a dry run needs no token
    code, out, err = _cli(["push", str(edit), "--repo-id", "alice/x", "--dry-run"], capsys)
    assert code == 0, err
    assert server.requests == []
    written = (edit / "README.md").read_text()
    assert written in out and "mergekit" not in ModelCard(written).data.tags  # mergekit's card was replaced
    size = (edit / "model.safetensors").stat().st_size
    assert f"{size / 1024:.1f} KB  model.safetensors" in out and "rankedit_edit.json" in out
    assert "dry run: nothing uploaded" in out


def test_hand_edited_card_is_kept_unless_regenerate(server, edit, built, capsys):
    assert _cli(["push", str(edit), "--repo-id", "alice/x", "--dry-run"], capsys)[0] == 0
    first = (edit / "README.md").read_text()
    # an untouched rankedit card follows new inputs (here: scores now given)
    _cli(["push", str(edit), "--repo-id", "alice/x", "--dry-run", "--scores", str(built["report"]), "--label", "rank1"], capsys)
    second = (edit / "README.md").read_text()
    assert second != first and "## Scores" in second

    edited = second.replace("## Recipe", "My own notes.\n\n## Recipe")
    (edit / "README.md").write_text(edited)
    code, _, err = _cli(["push", str(edit), "--repo-id", "alice/x"], capsys)
    assert code == 0 and "kept (edited by hand" in err
    assert server.files("alice/x")["README.md"].decode() == edited

    _cli(["push", str(edit), "--repo-id", "alice/x", "--dry-run", "--regenerate-card"], capsys)
    assert "My own notes." not in (edit / "README.md").read_text()


def test_pipeline_files_in_dir_are_picked_up(server, edit, built):
    shutil.copy(built["report"], edit / hub.SCORES)
    shutil.copy(built["summary"], edit / hub.ANALYSIS)
    p = hub.prepare(edit, "alice/x", label="rank1")
    card = ModelCard(p.card_text)
    assert {r.metric_type for r in card.data.eval_results} == {"score", "gain_retention"}
    assert "## Geometry of the update" in card.text


# --------------------------------------------------------------------------- failures, one line each

def _fails(argv, capsys) -> str:
    code, out, err = _cli(argv, capsys)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()  # progress lines may come first; the error is one line, the last
    assert lines[-1].startswith("error: ") and sum(x.startswith("error") for x in lines) == 1, err
    assert "Traceback" not in err and TOKEN not in out + err
    return lines[-1]


def test_missing_token(server, edit, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    line = _fails(["push", str(edit), "--repo-id", "alice/x"], capsys)
    assert line == "error: no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    assert server.requests == []


def test_rejected_token(server, edit, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_notAValidToken")
    assert "rejected the token (HTTP 401" in _fails(["push", str(edit), "--repo-id", "alice/x"], capsys)


def test_repo_owned_by_someone_else(server, edit, capsys):
    server.add_repo("bob/model", owner="bob")  # exists, public, not alice's
    line = _fails(["push", str(edit), "--repo-id", "bob/model"], capsys)
    assert "no write access to bob/model (HTTP 403" in line
    line = _fails(["push", str(edit), "--repo-id", "bob/new-one"], capsys)  # alice cannot create under bob either
    assert "no write access to bob/new-one (HTTP 403 during creating the repo" in line
    assert server.files("bob/model") == {".gitattributes": server.files("bob/model")[".gitattributes"]}


def test_no_network(server, edit, capsys, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    line = _fails(["push", str(edit), "--repo-id", "alice/x"], capsys)
    assert line.startswith(f"error: cannot reach the Hugging Face Hub at http://127.0.0.1:{port}")


def test_offline_mode_is_named(server, edit, capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE is set" in _fails(["push", str(edit), "--repo-id", "alice/x"], capsys)


def test_server_error_at_commit(server, edit, capsys):
    server.fail["commit"] = 500
    line = _fails(["push", str(edit), "--repo-id", "alice/x"], capsys)
    assert "failed during the commit for alice/x (HTTP 500" in line and "run the same push again" in line
    assert set(server.files("alice/x")) == {".gitattributes"}  # nothing half-committed
    del server.fail["commit"]
    assert _cli(["push", str(edit), "--repo-id", "alice/x"], capsys)[0] == 0  # and a retry completes it
    assert server.files("alice/x")["model.safetensors"] == (edit / "model.safetensors").read_bytes()


def test_storage_error_during_file_upload(server, edit, capsys):
    server.fail["lfs_put"] = 507
    line = _fails(["push", str(edit), "--repo-id", "alice/x"], capsys)
    assert "while uploading 'model.safetensors' for alice/x (HTTP 507" in line
    assert server.repos["alice/x"]["commits"] == []


def test_bad_inputs(server, edit, tmp_path, capsys):
    assert "must be OWNER/NAME" in _fails(["push", str(edit), "--repo-id", "no-owner"], capsys)
    (tmp_path / "empty").mkdir()
    assert "has no rankedit_edit.json" in _fails(["push", str(tmp_path / "empty"), "--repo-id", "alice/x"], capsys)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "scores file is not valid JSON" in _fails(["push", str(edit), "--repo-id", "alice/x", "--scores", str(bad)], capsys)
    (edit / "README.md").write_text("---\nlicense: [unclosed\n---\nhello\n")
    assert "does not parse as a model card" in _fails(["push", str(edit), "--repo-id", "alice/x", "--dry-run"], capsys)
    assert server.requests == []


def test_token_never_leaks(server, edit, built, capsys, caplog, tmp_path):
    """The token reaches the server's Authorization header and nothing else we write or print."""
    outputs = []
    for argv in (["push", str(edit), "--repo-id", "alice/x", "--dry-run"],
                 ["push", str(edit), "--repo-id", "alice/x", "--scores", str(built["report"]), "--label", "rank1",
                  "--regenerate-card"],
                 ["push", str(edit), "--repo-id", "bob/x"]):
        outputs.append(_cli(argv, capsys))
    assert [o[0] for o in outputs] == [0, 0, 1]
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in server.headers_seen)
    everything = "".join(o[1] + o[2] for o in outputs) + caplog.text
    everything += "".join(p.read_text(errors="replace") for p in edit.rglob("*") if p.is_file() and p.suffix != ".safetensors")
    everything += "".join(v.decode(errors="replace") for v in server.files("alice/x").values())
    assert TOKEN not in everything
    with pytest.raises(RankeditError):
        hub.push(edit, "bob/x")  # the API raises the same one-line error


def test_hub_ids_and_licence_of_sources(sources, tmp_path):
    base, tuned = sources
    assert hub.hub_id_of(str(base)) == BASE_ID        # HF cache snapshot path
    assert hub.hub_id_of(str(tuned)) == TUNED_ID      # config.json _name_or_path
    assert hub.hub_id_of("someone/some-model") == "someone/some-model"  # not local, looks like an id
    plain = Path(shutil.copytree(tuned, tmp_path / "plain"))
    _set_config(plain, _name_or_path=str(tmp_path / "elsewhere"))  # a local path is no Hub id
    assert hub.hub_id_of(str(plain)) is None
    assert hub.license_of(str(base), BASE_ID) == "mit" and hub.license_of(str(tmp_path), None) is None


# --------------------------------------------------------------------------- what a Hub user receives

def test_card_names_no_local_path(server, edit, built, tiny_pair):
    hub.push(edit, "alice/paths", scores=built["report"], label="rank1")
    received = server.files("alice/paths")["README.md"].decode()
    manifest = json.loads((edit / "rankedit_edit.json").read_text())
    local = [manifest["inputs"]["base"]["path"], manifest["inputs"]["tuned"][0]["path"], str(edit), str(tiny_pair[0])]
    assert not [p for p in local if p in received]
    assert "/tmp" not in received and "snapshots" not in received
    # no uploaded file names a path of this machine: the recipe and mergekit's config name inputs by Hub id
    for name, data in server.files("alice/paths").items():
        text = data.decode(errors="replace")
        assert not [p for p in local if p in text] and "/tmp/" not in text, name
    assert json.loads(server.files("alice/paths")["rankedit_edit.json"])["inputs"]["base"]["path"] == BASE_ID


def test_base_model_and_license_options(server, tiny_pair, tmp_path, capsys):
    """An edit of plain local copies: no Hub id, no licence, until --base-model and --license say so."""
    full = build_edit("rank-k", *tiny_pair, tmp_path / "local-rank1", k=1)
    assert _cli(["push", str(full), "--repo-id", "alice/x", "--dry-run"], capsys)[0] == 0
    card = ModelCard((full / "README.md").read_text())
    assert card.data.base_model is None and card.data.license is None
    assert "Unknown: no licence was found" in card.text and "`base` (a local checkpoint, not on the Hub)" in card.text

    code, _, err = _cli(["push", str(full), "--repo-id", "alice/x", "--base-model", "org/tiny-base",
                         "--license", "apache-2.0"], capsys)
    assert code == 0, err
    card = ModelCard(server.files("alice/x")["README.md"].decode())
    assert card.data.base_model == "org/tiny-base" and card.data.license == "apache-2.0"
    assert "## License" not in card.text and "[`org/tiny-base`](https://huggingface.co/org/tiny-base)" in card.text


def test_lora_of_a_local_base_needs_base_model_and_names_it_everywhere(server, tiny_pair, tmp_path, capsys):
    lora = build_edit("rank-k", *tiny_pair, tmp_path / "local-lora", k=1, as_lora=True)
    cfg_path = lora / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(tiny_pair[0])  # as rankedit < 0.1.1 wrote it
    cfg_path.write_text(json.dumps(cfg, indent=2))
    line = _fails(["push", str(lora), "--repo-id", "alice/l", "--dry-run"], capsys)
    assert "LoRA adapter of 'base', which has no known Hub id: give --base-model OWNER/NAME" in line
    assert server.requests == []

    assert _cli(["push", str(lora), "--repo-id", "alice/l", "--base-model", "org/tiny-base"], capsys)[0] == 0
    received = server.files("alice/l")
    assert json.loads(received["adapter_config.json"])["base_model_name_or_path"] == "org/tiny-base"
    card = ModelCard(received["README.md"].decode())
    assert card.data.base_model == "org/tiny-base" and card.data.library_name == "peft"
    assert 'AutoModelForCausalLM.from_pretrained("org/tiny-base")' in card.text and "BASE_MODEL" not in card.text
    assert str(tiny_pair[0]) not in received["README.md"].decode() + received["adapter_config.json"].decode()


def test_bad_base_model_and_license(server, edit, capsys):
    assert "--base-model must be a Hub model id OWNER/NAME, got '/abs/path'" in _fails(
        ["push", str(edit), "--repo-id", "alice/x", "--base-model", "/abs/path", "--dry-run"], capsys)
    assert "--license must be a Hub licence id" in _fails(
        ["push", str(edit), "--repo-id", "alice/x", "--license", "Apache 2", "--dry-run"], capsys)


def _write_scored(folder: Path, label: str, correct: dict[str, list[int]]) -> None:
    """A model's lm-eval output as `rankedit score -o` writes it: results.json + samples_TASK.jsonl."""
    from rankedit.scoring.raw_files import save_raw

    save_raw({"results": {t: {"alias": t, "acc,none": sum(c) / len(c), "acc_stderr,none": 0.1} for t, c in correct.items()},
              "samples": {t: [{"doc_id": i, "filter": "none", "metrics": ["acc"], "acc": float(x)} for i, x in enumerate(c)]
                          for t, c in correct.items()}}, folder / label)


def test_scores_json_gets_retention_from_its_samples(edit, tmp_path):
    """`rankedit score base tuned edit -o OUT`: the card shows R from OUT's per-problem samples."""
    out = tmp_path / "scored"
    n = 40
    base = [1] * 8 + [0] * 32           # 0.2
    tuned = [1] * 24 + [0] * 16         # 0.6
    mine = [1] * 16 + [0] * 24          # 0.4: half the gain
    ctrl_base, ctrl_mine = [1] * 20 + [0] * 20, [1] * 18 + [0] * 22
    for lab, c, k in (("base", base, ctrl_base), ("rl", tuned, ctrl_base), ("rank1", mine, ctrl_mine)):
        _write_scored(out, lab, {"t": c, "ctl": k})
    rows = [{"model": lab, "task": t, "metric": "acc,none", "value": v, "stderr": 0.1, "n": n}
            for lab, vals in (("base", (0.2, 0.5)), ("rl", (0.6, 0.5)), ("rank1", (0.4, 0.45)))
            for t, v in zip(("t", "ctl"), vals)]
    doc = {"scores": rows, "suite": "custom", "tasks": ["t", "ctl"], "control_tasks": ["ctl"],
           "primary_metrics": {"t": "acc,none", "ctl": "acc,none"},
           "models": {lab: {"path": f"/x/{lab}", "results": f"{lab}/results.json"} for lab in ("base", "rl", "rank1")}}
    (out / "scores.json").write_text(json.dumps(doc))
    manifest = json.loads((edit / hub.MANIFEST).read_text())
    manifest["inputs"]["base"]["path"], manifest["inputs"]["tuned"][0]["path"] = "/x/base", "/x/rl"
    (edit / hub.MANIFEST).write_text(json.dumps(manifest))

    card = ModelCard(hub.prepare(edit, "alice/x", scores=out / "scores.json").card_text)
    metrics = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert metrics[("t", "gain_retention")] == pytest.approx(0.5)
    assert ("ctl", "gain_retention") not in metrics
    # forgetting on the control task: 0.50 − 0.45, the points lost (positive = worse)
    assert "| t | 0.5 | [" in card.text and "| ctl | – | – | 0.05 |" in card.text

    shutil.rmtree(out / "rl")  # without the tuned model's samples: no R, and the card says why
    card = ModelCard(hub.prepare(edit, "alice/x", scores=out / "scores.json", regenerate_card=True).card_text)
    assert {r.metric_type for r in card.data.eval_results} == {"acc,none"}
    assert "is not shown: its paired-bootstrap interval needs the per-problem samples" in card.text


# --------------------------------------------------------------------------- `hf upload`'s options, artifacts, apply outputs

def test_commit_message_description_include_exclude_and_pull_request(server, edit):
    options = hub.UploadOptions(commit_message="Rank-1 edit", commit_description="the k=1 cut", create_pr=True,
                                include=("*.json", "*.md", "*.safetensors"), exclude=("mergekit_config.yml",))
    url = hub.push(edit, "alice/opts", options=options)
    repo = server.repos["alice/opts"]
    assert url == f"{server.url}/alice/opts/discussions/1"
    assert set(repo["branches"]["main"]) == {".gitattributes"}  # the upload waits in the pull request
    sent = set(repo["branches"]["refs/pr/1"]) - {".gitattributes"}
    local = set(_local_files(edit))
    assert sent == {n for n in local if n.endswith((".json", ".md", ".safetensors"))} and "mergekit_config.yml" in local
    (commit,) = repo["commits"]
    assert (commit["summary"], commit["description"], commit["branch"]) == ("Rank-1 edit", "the k=1 cut", "refs/pr/1")


def test_large_folder_upload_sends_what_one_commit_sends_and_leaves_nothing(server, edit, tmp_path):
    one = Path(shutil.copytree(edit, tmp_path / "one"))
    hub.push(one, "alice/one")
    hub.push(edit, "alice/large", options=hub.UploadOptions(large_folder=True))
    large, one = server.files("alice/large"), server.files("alice/one")
    assert b"alice/large" in large.pop("README.md") and b"alice/one" in one.pop("README.md")  # each card names its repo
    assert large == one and len(large) > 4
    assert not (edit / hub.STAGE).exists() and not any(".cache" in n for n in server.files("alice/large"))


def test_bad_upload_options(server, edit, capsys):
    assert "cannot be combined with --revision" in _fails(
        ["push", str(edit), "--repo-id", "alice/x", "--create-pr", "--revision", "dev"], capsys)
    assert "no file of" in _fails(["push", str(edit), "--repo-id", "alice/x", "--include", "*.bin"], capsys)
    assert "alice/x" not in server.repos


@pytest.fixture(scope="module")
def artifacts(sources, tmp_path_factory):
    """A LoRA artifact and a rankedit delta of the Hub-snapshot base, and the delta applied to that base."""
    from rankedit.edits.apply import apply_artifact
    from rankedit.edits.artifact import write_artifact

    root = tmp_path_factory.mktemp("hub_artifacts")
    base, tuned = sources
    write_artifact(base, tuned, "rank-k", {"k": 1}, root / "lora", progress=False)
    write_artifact(base, tuned, "sign", {}, root / "delta", progress=False)
    apply_artifact(root / "delta", base, root / "applied", progress=False)
    return root


def test_artifacts_are_published_with_their_record(server, artifacts, tmp_path, sources):
    lora = Path(shutil.copytree(artifacts / "lora", tmp_path / "lora"))
    hub.push(lora, "alice/lora-art")
    got = server.files("alice/lora-art")
    assert got["adapter_model.safetensors"] == (lora / "adapter_model.safetensors").read_bytes()
    assert json.loads(got["adapter_config.json"])["base_model_name_or_path"] == BASE_ID
    assert got["delta.json"] == (lora / "delta.json").read_bytes() and "rankedit_edit.json" not in got
    card = ModelCard(got["README.md"].decode())
    assert card.data.library_name == "peft" and card.data.base_model == BASE_ID and "[`delta.json`]" in card.text

    delta = Path(shutil.copytree(artifacts / "delta", tmp_path / "delta"))
    hub.push(delta, "alice/delta-art")
    got = server.files("alice/delta-art")
    assert {n: got[n] for n in ("delta.json", "delta.safetensors")} == {
        n: (delta / n).read_bytes() for n in ("delta.json", "delta.safetensors")}
    card = ModelCard(got["README.md"].decode())
    assert card.data.library_name == "rankedit" and card.data.base_model == BASE_ID
    assert "A rankedit delta holding a **`sign`** edit" in card.text and "rankedit apply artifact base" in card.text
    assert str(sources[0]) not in got["README.md"].decode()


def test_a_damaged_artifact_is_not_published(server, artifacts, tmp_path, capsys):
    delta = Path(shutil.copytree(artifacts / "delta", tmp_path / "delta"))
    raw = bytearray((delta / "delta.safetensors").read_bytes())
    raw[-1] ^= 1
    (delta / "delta.safetensors").write_bytes(bytes(raw))
    assert "its sha256 is not the one delta.json records" in _fails(
        ["push", str(delta), "--repo-id", "alice/bad", "--dry-run"], capsys)


def test_apply_output_is_published_naming_its_inputs_by_hub_id(server, artifacts, tmp_path, sources):
    applied = Path(shutil.copytree(artifacts / "applied", tmp_path / "applied"))
    hub.push(applied, "alice/applied")
    got = server.files("alice/applied")
    assert got["model.safetensors"] == (applied / "model.safetensors").read_bytes()
    manifest = json.loads(got["rankedit_edit.json"])
    assert manifest["method"] == "sign" and manifest["inputs"]["base"]["path"] == BASE_ID
    assert manifest["inputs"]["artifact"]["path"] == "delta" and manifest["summary"]["n_matrices"] > 0
    card = ModelCard(got["README.md"].decode())
    assert card.data.library_name == "transformers" and card.data.base_model == BASE_ID
