"""Run rankedit's real CLI entry point in-process, the way a user's shell would."""

from rankedit.cli.main import main


def run_cli(args, capsys):
    """(exit code, stdout, stderr) of `rankedit ARGS...`."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
