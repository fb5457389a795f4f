"""Graceful stop on SIGUSR1 / SIGTERM / SIGINT: finish the step, checkpoint, exit 75.

SLURM sends SIGUSR1 ahead of a time limit or preemption (`--signal`), schedulers send
SIGTERM, a user presses Ctrl-C. The handler only records the request; the training loop
agrees on it across ranks at the end of a step, so every rank stops at the same step.
A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpoint written, run again with --resume auto

_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Installed for a `with` block. On a clean exit the default handlers come back; when the
    block raises, they stay until the caller has logged the failure and calls `restore`:
    torchrun SIGTERMs a survivor as soon as another rank dies, and a default handler there
    would kill it before it says why it stopped."""

    def __init__(self) -> None:
        self.signal: str | None = None
        for sig in _SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signal == "SIGINT":
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> "StopRequest":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            restore()


def restore() -> None:
    """The default handlers (Ctrl-C raising KeyboardInterrupt) back."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
