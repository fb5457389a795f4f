"""The one exception type users see: a one-line message and exit code 2; and what an
allocation that failed said."""

import sys


class UsageError(Exception):
    """Bad input or configuration. The CLI prints ``w2vdist: <message>`` and exits with 2.

    Messages name the file or field at fault, so that a user can fix it without a traceback.
    """

    exit_code = 2


class Diverged(UsageError):
    """Training numbers stopped being finite: the run stops at once, before saving the bad
    tables, so the previous checkpoint stays the newest. Exit code 3."""

    exit_code = 3


def out_of_memory(exc: BaseException) -> str | None:
    """What a failed allocation said, as one line ("" if nothing), or None if `exc` is not
    one: Python's MemoryError, or torch's (CUDA's OutOfMemoryError; the CPU allocator raises
    a RuntimeError). Not a bug to log with a traceback: the settings or the machine."""
    if isinstance(exc, MemoryError):
        return str(exc)
    torch = sys.modules.get("torch")  # not imported: not torch's error
    text = str(exc).strip()
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):  # torch 2.4 on
        return text.splitlines()[0] if text else ""
    cpu = text.find("DefaultCPUAllocator: can't allocate memory")
    return text[cpu:].splitlines()[0] if isinstance(exc, RuntimeError) and cpu >= 0 else None
