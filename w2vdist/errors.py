"""The one exception type users see: a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input or configuration. The CLI prints ``w2vdist: <message>`` and exits with 2.

    Messages name the file or field at fault, so that a user can fix it without a traceback.
    """

    exit_code = 2


class Diverged(UsageError):
    """Training numbers stopped being finite: the run stops at once, before saving the bad
    tables, so the previous checkpoint stays the newest. Exit code 3."""

    exit_code = 3
