"""The user's files are sacred: which OUT each command may write or replace, and how I/O failures end.

Every command goes through one mechanism (rankedit.files.atomic + rankedit.files.outdir):
OUT is never an input, the current directory or one of its parents; an
existing OUT is replaced only when it is rankedit's own output of the same
kind and holds nothing else, or with --overwrite. System errors are real, not
mocked: the file-size limit (RLIMIT_FSIZE, EFBIG) in a subprocess, a directory
on sysfs (which refuses new files, even to root) for an unwritable OUT, and
/dev/full (ENOSPC) for a full device.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import clirun  # tests/ is on sys.path (no package)
from test_scoring import LIMIT, TASK, TINY, constant_model

ROOT = Path(__file__).resolve().parent.parent


def _cli(args, capsys):
    code, out, err = clirun.run_cli(args, capsys)
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [seg for line in err.splitlines() for seg in line.split("\r") if seg.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _tree(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under folder: proof that nothing in it changed."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_pair(tiny_pair, tmp_path_factory):
    """The shared tiny pair, copied with a tokenizer: `run` refuses to score a model it cannot tokenize for."""
    import shutil

    from rankedit.organism.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("safety_pair")
    pair = []
    for src in tiny_pair:
        dst = shutil.copytree(src, root / Path(src).name)
        build_tokenizer().save_pretrained(dst)
        pair.append(Path(dst))
    return tuple(pair)


def _analyze(tiny_pair, out):
    base, tuned = tiny_pair
    return ["analyze", base, tuned, "-o", out, "--no-plots"]


def _edit(tiny_pair, out):
    base, tuned = tiny_pair
    return ["edit", "rank-k", base, tuned, "--k", "1", "-o", out, "--quiet"]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """A tiny Llama with a tokenizer (scores are known, see test_scoring) and a private score cache."""
    root = tmp_path_factory.mktemp("safety_scoring")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RANKEDIT_CACHE", str(root / "cache"))
        yield constant_model(root / "m3", 3)


def _score(model, out):
    return ["score", f"m3={model}", "--tasks", TASK, "--include-path", TINY, "--limit", LIMIT, "--batch-size", 4,
            "--device", "cpu", "-o", out]


def _plan(tmp_path, tiny_pair, **extra) -> Path:
    base, tuned = tiny_pair
    plan = {"base": str(base), "tuned": str(tuned), "analyze": {"enabled": False},
            "score": {"tasks": [TASK], "include_paths": [str(TINY)], "limit": 2},
            "edits": [{"name": "r1", "method": "rank-k", "params": {"k": 1}}], **extra}
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump(plan))
    return p


# ---- 1. OUT is the current directory, a parent of it, or an input ------------------------

def test_analyze_into_the_current_directory_deletes_nothing(tiny_pair, tmp_path, capsys, monkeypatch):
    project = tmp_path / "myproject"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('mine')\n")
    monkeypatch.chdir(project / "src")
    before = _tree(project)
    for out in (".", "..", str(project)):
        code, _, err = _cli(_analyze(tiny_pair, out), capsys)
        line = _one_error_line(err)
        assert code == 1 and "current directory" in line, line
    assert _tree(project) == before


@pytest.mark.parametrize("where", ["is", "inside", "contains"])
def test_edit_never_writes_over_its_inputs(tiny_pair, tmp_path, capsys, where):
    base, tuned = tiny_pair
    out = {"is": tuned, "inside": tuned / "checkpoints", "contains": tuned.parent}[where]
    before = _tree(tuned.parent)
    code, _, err = _cli(_edit(tiny_pair, out), capsys)
    line = _one_error_line(err)
    assert code == 1 and f"{where} the input" in line, line
    assert _tree(tuned.parent) == before and not (tuned / "checkpoints").exists()


def test_every_command_refuses_an_input_as_out(tiny_pair, scorer, tmp_path, capsys):
    from rankedit.testing import synthetic

    base, tuned = tiny_pair
    other = synthetic.perturb(base, tmp_path / "runs" / "other", scale=1e-2, seed=2)
    before = _tree(tuned.parent)
    cases = [
        _analyze(tiny_pair, tuned),
        ["analyze", base, tuned, "--other-tuned", other, "-o", other.parent, "--no-plots"],
        ["edit", "mask", base, tuned, "--source", "from", "--from", other, "-o", other],
        ["edit", "scale", base, tuned, "--factor", "2", "-o", base],
        _score(scorer, scorer),
        _score(scorer, TINY),  # a task folder is an input too
        ["run", _plan(tmp_path, tiny_pair), "-o", tuned],
        ["run", _plan(tmp_path, tiny_pair), "-o", tmp_path],  # holds the plan file
    ]
    for args in cases:
        code, _, err = _cli(args, capsys)
        assert code == 1 and "refusing to write output" in _one_error_line(err), (args, err)
    assert _tree(tuned.parent) == before


# ---- 2. an existing OUT: replaced only when it is rankedit's own, or with --overwrite -------

def test_foreign_files_are_never_lost_without_overwrite(tiny_pair, scorer, tmp_path, capsys):
    for name, args in (("analyze", _analyze), ("edit", _edit)):
        d = tmp_path / name
        d.mkdir()
        (d / "notes.txt").write_text("mine\n")
        code, _, err = _cli(args(tiny_pair, d), capsys)
        line = _one_error_line(err)
        assert code == 1 and "notes.txt" in line and "--overwrite" in line, line
        assert (d / "notes.txt").read_text() == "mine\n" and sorted(os.listdir(d)) == ["notes.txt"]
    d = tmp_path / "score"
    d.mkdir()
    (d / "notes.txt").write_text("mine\n")
    code, _, err = _cli(_score(scorer, d), capsys)
    assert code == 1 and "notes.txt" in _one_error_line(err) and sorted(os.listdir(d)) == ["notes.txt"]
    d = tmp_path / "run"
    d.mkdir()
    (d / "notes.txt").write_text("mine\n")
    code, _, err = _cli(["run", _plan(tmp_path, tiny_pair), "-o", d, "--quiet"], capsys)
    assert code == 1 and "notes.txt" in _one_error_line(err) and sorted(os.listdir(d)) == ["notes.txt"]


def test_many_foreign_files_are_counted(tiny_pair, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    for i in range(7):
        (d / f"f{i}.txt").write_text(str(i))
    code, _, err = _cli(_analyze(tiny_pair, d), capsys)
    line = _one_error_line(err)
    assert code == 1 and "f0.txt, f1.txt, f2.txt and 4 more (7 file(s))" in line, line


def test_own_output_is_replaced_but_not_with_a_users_file_in_it(tiny_pair, tmp_path, capsys):
    for name, args, manifest in (("a", _analyze, "summary.json"), ("e", _edit, "rankedit_edit.json")):
        d = tmp_path / name
        code, _, err = _cli(args(tiny_pair, d), capsys)
        assert code == 0, err
        code, _, err = _cli(args(tiny_pair, d), capsys)  # a rerun replaces its own output
        assert code == 0, err
        assert (d / manifest).is_file()
        (d / "mine.txt").write_text("x")
        code, _, err = _cli(args(tiny_pair, d), capsys)
        assert code == 1 and "holds files rankedit did not write" in _one_error_line(err) and "mine.txt" in err
        (d / "mine.txt").unlink()
        # a file rankedit wrote and the user changed is the user's now
        target = d / manifest
        target.write_text(target.read_text() + " ")
        changed = target.read_text()
        for flags in ([], ["--overwrite"]):  # no flag deletes a user's file
            code, _, err = _cli([*args(tiny_pair, d), *flags], capsys)
            assert code == 1 and manifest in _one_error_line(err)
            assert target.read_text() == changed
        target.write_text(changed[:-1])  # as rankedit wrote it: its own again
        code, _, err = _cli(args(tiny_pair, d), capsys)
        assert code == 0, err
        assert json.loads(target.read_text())
    # an output of another command is replaced only with --overwrite
    code, _, err = _cli(_analyze(tiny_pair, tmp_path / "e"), capsys)
    line = _one_error_line(err)
    assert code == 1 and "holds a rankedit rank-k edit output (nothing else); pass --overwrite" in line, line
    code, _, err = _cli([*_analyze(tiny_pair, tmp_path / "e"), "--overwrite"], capsys)
    assert code == 0 and (tmp_path / "e" / "summary.json").is_file() and not (tmp_path / "e" / "config.json").exists()


def test_overwrite_never_replaces_a_foreign_directory(tiny_pair, tmp_path, capsys):
    """Before: --overwrite deleted any folder that was not an input, a user's home folder included."""
    d = tmp_path / "d"
    (d / "empty").mkdir(parents=True)
    (d / "old.txt").write_text("old")
    code, _, err = _cli([*_analyze(tiny_pair, d), "--overwrite"], capsys)
    line = _one_error_line(err)
    assert code == 1 and "old.txt, empty/ (2 file(s))" in line and "never deletes anything else" in line, line
    assert "pass --overwrite" not in line  # the hint says what is safe
    assert (d / "old.txt").read_text() == "old" and (d / "empty").is_dir() and sorted(os.listdir(d)) == ["empty", "old.txt"]


def test_score_replaces_its_own_scores_only(scorer, tmp_path, capsys):
    d = tmp_path / "s"
    for _ in range(2):
        code, _, err = _cli(_score(scorer, d), capsys)
        assert code == 0, err
    (d / "m3" / "notes.md").write_text("mine")
    code, _, err = _cli(_score(scorer, d), capsys)
    assert code == 1 and "m3/notes.md" in _one_error_line(err)
    code, _, err = _cli([*_score(scorer, d), "--overwrite"], capsys)
    assert code == 1 and "m3/notes.md" in _one_error_line(err) and (d / "m3" / "notes.md").read_text() == "mine"


def test_python_api_has_the_same_policy(tiny_pair, tmp_path):
    import rankedit

    base, tuned = tiny_pair
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep.txt").write_text("x")
    with pytest.raises(rankedit.RankeditError, match="keep.txt"):
        rankedit.analyze(base, tuned, d, plots=False, progress=False)
    with pytest.raises(rankedit.RankeditError, match="keep.txt"):
        rankedit.build_edit("scale", base, tuned, d, factor=0.5)
    with pytest.raises(rankedit.RankeditError, match="keep.txt"):
        rankedit.build_edit("scale", base, tuned, d, factor=0.5, overwrite=True)
    assert (d / "keep.txt").read_text() == "x"


# ---- 3. run: resumable, and no OUT at all after an input error -------------------------------

def test_run_input_error_leaves_no_out(tiny_pair, tmp_path, capsys):
    plan = _plan(tmp_path, tiny_pair, edits=[{"name": "r9", "method": "rank-k", "params": {"k": 999}}])
    out = tmp_path / "nested" / "out"
    code, _, err = _cli(["run", plan, "-o", out, "--quiet"], capsys)
    # the first input error found (the tiny pair has no tokenizer to score with, and k=999 is too large)
    line = _one_error_line(err)
    assert code == 1 and ("k=999" in line or "no tokenizer" in line), line
    assert not out.exists() and not out.parent.exists()


def test_run_never_writes_over_its_kl_prompts_file(tiny_pair, tmp_path, capsys):
    """The plan's kl prompts file is an input like the checkpoints: OUT may not hold it."""
    out = tmp_path / "prompts-here"
    out.mkdir()
    prompts = out / "prompts.txt"
    prompts.write_text("1+1=\n")
    plan = _plan(tmp_path, tiny_pair, kl={"prompts_file": str(prompts)})
    code, _, err = _cli(["run", plan, "-o", out, "--quiet"], capsys)
    line = _one_error_line(err)
    assert code == 1 and "input" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["prompts.txt"] and prompts.read_text() == "1+1=\n"


def test_run_out_of_rankedit_files_only_is_resumed_and_a_users_file_stops_it(tiny_pair, tmp_path, capsys):
    from rankedit.files.outdir import claim_dir
    from rankedit.core.errors import RankeditError

    out = tmp_path / "run"
    claim_dir(out, "run")
    (out / "edits").mkdir()
    code, _, err = _cli(_edit(tiny_pair, out / "edits" / "r1"), capsys)  # what a run writes there
    assert code == 0, err
    from rankedit.files.atomic import atomic_write_text

    atomic_write_text(out / "report.json", "{}\n")  # registered as rankedit's
    claim_dir(out, "run")  # resumable: nothing to lose
    (out / "edits" / "r1" / "notes.txt").write_text("mine")
    with pytest.raises(RankeditError, match="edits/r1/notes.txt"):
        claim_dir(out, "run")
    with pytest.raises(RankeditError, match="edits/r1/notes.txt"):
        claim_dir(out, "run", overwrite=True)  # no flag makes a user's folder rankedit's
    assert (out / "edits" / "r1" / "notes.txt").read_text() == "mine"


# ---- 4. permissions follow the umask; stale temporaries are cleaned --------------------------

@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(tiny_pair, tmp_path, capsys, mask):
    old = os.umask(mask)
    try:
        for name, args in (("a", _analyze), ("e", _edit)):
            code, _, err = _cli(args(tiny_pair, tmp_path / name), capsys)
            assert code == 0, err
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o777 & ~mask
            for f in (tmp_path / name).iterdir():
                assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f
    finally:
        os.umask(old)


def test_stale_temporaries_of_dead_processes_are_removed(tiny_pair, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".out.tmp-{dead.pid}-abc123"
        (stale / "sub").mkdir(parents=True)
        (stale / "sub" / "model.safetensors").write_bytes(b"x" * 100)
        busy = tmp_path / f".out.tmp-{live.pid}-def456"
        busy.mkdir()
        users = [tmp_path / ".out.tmp-notes", tmp_path / f".other.tmp-{dead.pid}"]
        for u in users:
            u.mkdir()
        code, _, err = _cli(_analyze(tiny_pair, tmp_path / "out"), capsys)
        assert code == 0, err
        assert not stale.exists()  # its process is gone: it can only be a killed run's leftover
        assert busy.is_dir()  # another rankedit still writing
        assert all(u.is_dir() for u in users)  # not names rankedit makes
    finally:
        live.kill()
        live.wait()


# ---- 5. system errors: one line, exit 1, nothing half-written -------------------------------

def _limited(cases: dict, cwd: Path) -> dict[str, tuple[int, str]]:
    """name -> (exit code, stderr) of `rankedit ARGS` for each (ARGS, limit) of ``cases``, run one after
    the other in one process with files capped at ``limit`` bytes: writes past it fail with EFBIG.

    One process for all (its soft limit set anew for each command) rather than one each: the
    refusal is the same, and the suite starts torch, transformers and lm-eval once."""
    code = textwrap.dedent("""
        import json, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write returns EFBIG instead of killing us
        cases = json.loads(sys.argv[1])
        top = max(limit for _, limit in cases.values())
        resource.setrlimit(resource.RLIMIT_FSIZE, (top, top))
        from rankedit.cli.main import run_command
        for name, (args, limit) in cases.items():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, top))
            code = run_command(args)  # what main(ARGS) exits with
            print(f"\\n@@ {name} {code} @@", file=sys.stderr, flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    spec = json.dumps({name: ([str(a) for a in args], limit) for name, (args, limit) in cases.items()})
    r = subprocess.run([sys.executable, "-c", code, spec], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    out, rest = {}, r.stderr
    for name in cases:
        err, _, rest = rest.partition(f"\n@@ {name} ")
        code, _, rest = rest.partition(" @@\n")
        out[name] = (int(code), err)
    return out


def _no_trace_of(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]


@pytest.fixture(scope="module")
def file_size_limited(tiny_pair, scorer, tmp_path_factory):
    """Every writing command, and push's dry run, under a file-size limit: (their results, the work folder,
    the edit pushed and its files before)."""
    from rankedit.cli.main import run_command

    tmp = tmp_path_factory.mktemp("fsize")
    work = tmp / "w"
    work.mkdir()
    edit = tmp / "edit"
    assert run_command([str(a) for a in ["edit", "scale", *tiny_pair, "--factor", "0.5", "-o", edit, "--quiet"]]) == 0
    before = _tree(edit)
    cases = {
        "analyze": (_analyze(tiny_pair, work / "a"), 4000),
        "edit": (_edit(tiny_pair, work / "e"), 20_000),
        "score": (_score(scorer, work / "s"), 4000),
        "run": (["run", _plan(tmp, tiny_pair), "-o", work / "r", "--quiet"], 20_000),
        "push": (["push", edit, "--repo-id", "me/x", "--dry-run"], 300),  # the card is longer
    }
    return _limited(cases, work), cases, work, edit, before


def test_file_size_limit_in_every_command(file_size_limited):
    results, cases, work, _, _ = file_size_limited
    for name, (args, _) in cases.items():
        if name == "push":
            continue
        code, err = results[name]
        line = _one_error_line(err)
        assert code == 1 and "File too large" in line and "cannot write" in line, (name, err)
        if name == "run":  # resumable: OUT may stay, but only with complete parts, and no edit at all
            assert not (work / "r" / "edits" / "r1").exists()
            assert not list((work / "r" / "edits").glob(".*tmp-*"))
        else:
            _no_trace_of(work / args[args.index("-o") + 1].name)


def test_file_size_limit_in_push(file_size_limited):
    results, _, _, edit, before = file_size_limited
    code, err = results["push"]
    line = _one_error_line(err)
    assert code == 1 and "File too large" in line and "README.md" in line, err
    assert _tree(edit) == before and not list(edit.glob(".*tmp-*"))


def test_unwritable_out_in_every_command(tiny_pair, scorer, tmp_path, capsys):
    # sysfs lets nobody, root included, create a directory: the kernel's own refusal
    out = Path("/sys/rankedit-out")
    for args in (_analyze(tiny_pair, out), _edit(tiny_pair, out), _score(scorer, out),
                 ["run", _plan(tmp_path, tiny_pair), "-o", out, "--quiet"]):
        code, _, err = _cli(args, capsys)
        line = _one_error_line(err)
        assert code == 1 and str(out) in line and "Operation not permitted" in line, (args, err)
        assert ".tmp-" not in line


def test_a_file_where_an_out_folder_would_go_is_named(tiny_pair, tmp_path, capsys):
    """The system says "File exists" (or "Not a directory") when a folder of OUT's path is a file: say which."""
    (tmp_path / "afile").write_text("mine")
    for out in (tmp_path / "afile" / "x", tmp_path / "afile" / "x" / "y"):
        code, _, err = _cli(_edit(tiny_pair, out), capsys)
        assert code == 1 and _one_error_line(err) == f"error: cannot write below {tmp_path / 'afile'}: it is a file, not a folder"
    assert (tmp_path / "afile").read_text() == "mine"


def test_full_device_is_one_line(tiny_pair, tmp_path):
    """ENOSPC from a real device: the summary goes to /dev/full."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    base, tuned = tiny_pair
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "rankedit", "analyze", str(base), str(tuned), "-o",
                            str(tmp_path / "a"), "--no-plots"], stdout=full, stderr=subprocess.PIPE, text=True,
                           env=env, timeout=600)
    line = _one_error_line(r.stderr)
    assert r.returncode == 1 and "No space left on device" in line, r.stderr
