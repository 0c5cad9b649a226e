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
