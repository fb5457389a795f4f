"""The worker pool of `prepare`'s passes: spawned processes that leave Ctrl-C to the parent,
never run the caller's script again, and cannot hang it: a worker that dies (the kernel's
out-of-memory killer, a stray `kill -9`) fails the pass at once instead of leaving its piece
waited for forever, as a `multiprocessing.Pool` would."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from w2vdist.errors import UsageError

Run = Callable[[Callable[[Any], Any], Iterable[Any], str], Iterator[Any]]
JOIN_SECONDS = 10.0  # how long a terminated worker may take to go


@contextlib.contextmanager
def parallel(workers: int) -> Iterator[Run]:
    """`run(fn, items, what)`: fn's results over items, in order, with a progress bar; in this
    process for one worker, else in a pool of `workers` processes. Items may come from a
    generator: about two per worker are handed out at a time (so that no worker waits for the
    next while the oldest is still running), so a generator of large items (blocks of
    decompressed text) is not read far ahead, and an exception it raises comes out in its
    place. On an error or an interrupt the workers are terminated, not waited for."""
    if workers <= 1:
        yield lambda fn, items, what: _progress(map(fn, items), items, what)
        return
    before = set(multiprocessing.active_children())
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_ignore_sigint)

    def run(fn: Callable[[Any], Any], items: Iterable[Any], what: str) -> Iterator[Any]:
        return _progress(_in_order(executor, fn, items, 2 * workers + 2), items, what)

    try:
        yield run
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        ours = set(multiprocessing.active_children()) - before
        for process in ours:
            process.terminate()  # the piece it works on is no longer wanted
        for process in ours:
            process.join(JOIN_SECONDS)
        raise
    executor.shutdown(wait=True)


def _in_order(executor: ProcessPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any],
              window: int) -> Iterator[Any]:
    pending: collections.deque[Future[Any]] = collections.deque()
    try:
        for item in items:
            with _main_not_rerun():  # submitting may spawn a worker
                pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:
        for future in pending:
            future.cancel()


def _result(future: Future[Any]) -> Any:
    try:
        return future.result()
    except BrokenProcessPool:
        raise UsageError("prepare: a worker process died (killed by a signal, or by the system "
                         "for memory); nothing was written; run it again (with fewer --workers "
                         "if memory ran out)") from None


def _progress(results: Iterator[Any], items: Iterable[Any], what: str) -> Iterator[Any]:
    total = len(items) if isinstance(items, Sized) else None
    return tqdm(results, total=total, desc=what, unit="piece", disable=None, leave=False)


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
