"""One exception type for every problem a user can cause.

The CLI turns a RankeditError into one line on stderr and exit code 1, with no
traceback. Library code raises it with a message that names the problem and,
where possible, the file or tensor it concerns.
"""


class RankeditError(Exception):
    """A user-facing error: bad path, bad input, impossible parameter."""
