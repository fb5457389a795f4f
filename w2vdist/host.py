"""What the host gives this process."""

from __future__ import annotations

import os


def cores() -> int:
    """The cores this process may run on: its affinity on Linux (a SLURM or container limit
    shows there, not in the machine's count), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
