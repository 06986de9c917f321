"""The one exception type that the CLI turns into a one-line message and exit code 1."""


class GesturekitError(Exception):
    """A user-facing error: bad input, a missing file, an invalid spec.

    The message is a single line that names the file, line or key at fault.
    """
