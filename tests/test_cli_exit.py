"""The console entry point ends the process itself (``rankedit.cli.main.exit_now``): what an
orderly exit owes still happens (atexit handlers, flushed output, the exit code, waiting for a
non-daemon thread), and what it skips, the teardown of every imported module, is not waited for."""

import subprocess
import sys
import textwrap


def entry(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` (which ends by calling the entry point as the script does) in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_success_flushes_output_and_runs_atexit_handlers():
    p = entry("""
        import atexit, sys
        from rankedit.cli.main import main
        atexit.register(lambda: print("atexit ran"))  # buffered, not flushed: the exit must flush it
        sys.argv = ["rankedit", "--version"]
        main()
        print("never reached")
    """)
    assert p.returncode == 0
    assert "rankedit, version" in p.stdout and p.stdout.rstrip().endswith("atexit ran")
    assert "never reached" not in p.stdout


def test_a_user_error_is_one_line_and_exit_code_1(tmp_path):
    p = entry(f"""
        import sys
        from rankedit.cli.main import main
        sys.argv = ["rankedit", "edit", "rank-k", "{tmp_path / 'nope'}", "{tmp_path / 'nope2'}", "-o", "{tmp_path / 'out'}"]
        main()
    """)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'nope'}"]
    assert not (tmp_path / "out").exists()


def test_a_running_non_daemon_thread_is_waited_for():
    p = entry("""
        import sys, threading, time
        from rankedit.cli.main import main
        def late():
            time.sleep(0.5)
            print("thread finished", flush=True)
        threading.Thread(target=late).start()
        sys.argv = ["rankedit", "--version"]
        main()
    """)
    assert p.returncode == 0 and "thread finished" in p.stdout


def test_the_teardown_is_skipped():
    """Module objects are not torn down: a finalizer of an object kept alive by a module global
    (run by the interpreter's teardown, not by atexit) never runs."""
    p = entry("""
        import sys
        from rankedit.cli.main import main
        class Noisy:
            def __del__(self):
                print("teardown ran", flush=True)
        keep = Noisy()
        sys.argv = ["rankedit", "--version"]
        main()
    """)
    assert p.returncode == 0 and "teardown ran" not in p.stdout


def test_closed_standard_streams_are_not_an_error():
    """`rankedit --version >&-`: a closed stdout (or stderr) is None in Python; the exit still succeeds."""
    for redirect in (">&-", "2>&-"):
        p = subprocess.run(f"'{sys.executable}' -m rankedit --version {redirect}", shell=True, timeout=120,
                           stdout=subprocess.DEVNULL if redirect == "2>&-" else None,
                           stderr=subprocess.PIPE if redirect == ">&-" else None)
        assert p.returncode == 0, (redirect, p.stderr)


def test_edit_alone_is_a_usage_error_with_its_help():
    """`rankedit edit` with neither METHOD nor --config: the help, exit 2, as `rankedit` alone."""
    for args in (["edit"], []):
        p = subprocess.run([sys.executable, "-m", "rankedit", *args], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and "Usage: rankedit" in p.stdout + p.stderr, (args, p.returncode)


def test_sigterm_removes_the_output_under_way(tmp_path):
    """``kill`` (or a scheduler's time limit) mid-build: exit 143, one line, and neither the output
    folder nor a hidden temporary one beside it is left."""
    import os
    import signal
    import time

    from rankedit.testing import synthetic

    base = synthetic.build_random(tmp_path / "base", "llama", seed=0)
    tuned = synthetic.perturb(base, tmp_path / "tuned", scale=1e-2, seed=1)
    out = tmp_path / "outs" / "edit"
    out.parent.mkdir()
    code = textwrap.dedent(f"""
        import sys, time
        import rankedit.edits.build as b
        from rankedit.cli.main import main
        def slow(tmp, *a, **k):
            (tmp / "model.safetensors").write_bytes(b"partial")
            print("merging", flush=True)
            time.sleep(60)
        b.merge_into = slow
        sys.argv = ["rankedit", "edit", "rank-k", "{base}", "{tuned}", "-o", "{out}", "--k", "1"]
        main()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "merging"
    p.send_signal(signal.SIGTERM)
    t0 = time.perf_counter()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and time.perf_counter() - t0 < 30
    assert err.strip().splitlines()[-1] == "terminated" and "Traceback" not in err
    assert os.listdir(out.parent) == []


def test_a_usage_error_is_one_line_naming_the_help(tmp_path):
    """A missing option, a bad choice or an unknown command: one line, exit 2, the command's help named."""
    cases = {
        ("edit", "rank-k", "a", "b", "--k", "1"): "error: Missing option '-o' / '--out' (see 'rankedit edit rank-k --help')",
        ("edit", "sub-rank-1", "a", "b", "-o", str(tmp_path / "o"), "--direction", "up"):
            "error: Invalid value for '--direction': 'up' is not one of 'delta', 'base' "
            "(see 'rankedit edit sub-rank-1 --help')",
        ("bogus",): "error: No such command 'bogus' (see 'rankedit --help')",
    }
    for args, line in cases.items():
        p = subprocess.run([sys.executable, "-m", "rankedit", *args], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.strip().splitlines() == [line], (args, p.stderr)
    assert not (tmp_path / "o").exists()
