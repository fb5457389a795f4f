"""The worker pool of `prepare`'s two passes: spawned processes that leave Ctrl-C to the
parent and never run the caller's script again."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

from tqdm import tqdm


@contextlib.contextmanager
def parallel(workers: int) -> Iterator[Callable[[Callable[[Any], Any], Iterable[Any], str], Any]]:
    """`run(fn, items, what)`: fn's results over items, in order, with a progress bar; in this
    process for one worker, else in a pool whose workers leave Ctrl-C to this process. Items
    may come from a generator: the pool takes them as workers free up (each is sent down a
    pipe, which holds few), and an exception the generator raises comes out in its place."""
    pool = None
    if workers > 1:
        # spawn: a fresh interpreter, safe whatever this process has imported or started.
        with _main_not_rerun():
            pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_sigint)

    def run(fn: Callable[[Any], Any], items: Iterable[Any], what: str) -> Iterator[Any]:
        results = pool.imap(fn, items) if pool else map(fn, items)
        total = len(items) if isinstance(items, Sized) else None
        return tqdm(results, total=total, desc=what, unit="piece", disable=None, leave=False)

    try:
        yield run
    finally:
        if pool is not None:
            pool.terminate()  # every result has been used, or an error is on its way out
            pool.join()


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start workers without running the caller's script again in each of them.

    A spawned worker normally imports the parent's `__main__` from its path, so a script that
    calls `w2vdist.prepare(...)` at top level, without an `if __name__ == "__main__"` guard,
    would start workers that start workers until killed. The workers run only w2vdist's own
    functions, so they need nothing from `__main__`: it is hidden while they start.
    """
    main = sys.modules["__main__"]
    hidden = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(hidden)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
