"""The one exception type users see: a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input or configuration. The CLI prints ``w2vdist: <message>`` and exits with 2.

    Messages name the file or field at fault, so that a user can fix it without a traceback.
    """

    exit_code = 2
