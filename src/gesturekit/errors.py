"""The exceptions that the CLI turns into one-line messages and an exit code."""


class GesturekitError(Exception):
    """A user-facing error: bad input, a missing file, an invalid spec.

    The message is a single line that names the file, line or key at fault (a few such lines
    when several things are wrong at once).
    """

    exit_code = 1


class UsageError(GesturekitError):
    """A command that cannot run as given (an output over an input, say): exit code 2, as for a bad option."""

    exit_code = 2
