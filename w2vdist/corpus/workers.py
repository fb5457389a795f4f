"""The worker pool of `prepare`'s passes: spawned processes that leave Ctrl-C to the parent,
never run the caller's script again, and cannot hang it: a worker that dies (the kernel's
out-of-memory killer, a stray `kill -9`) fails the pass at once instead of leaving its piece
waited for forever, as a `multiprocessing.Pool` would, and one that stops answering fails the
pass within PIECE_SECONDS (a piece) or EACH_SECONDS (a call to every worker, `Workers.each`,
which counting uses to gather what each worker counted)."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from w2vdist.errors import UsageError

JOIN_SECONDS = 10.0  # how long a terminated worker may take to go
EACH_SECONDS = 300.0  # how long `each` waits for every worker to take its call (starting them)
# How long `map` waits for its oldest task: at most 64 MB of text or a 1 GB compressed file
# (`pieces.MAX_WHOLE_BYTES`), seconds to minutes of reading.
PIECE_SECONDS = 3600.0
_barrier: Any = None  # a worker's: every worker waits at it in `each`
_DIED = ("prepare: a worker process died (killed by a signal, or by the system for memory); "
         "nothing was written; run it again (with fewer --workers if memory ran out)")


class Workers:
    """`prepare`'s pool: `map` for the pieces, `each` for what every worker process holds."""

    def __init__(self, size: int, executor: ProcessPoolExecutor | None = None) -> None:
        self.size = size
        self.executor = executor

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], what: str) -> Iterator[Any]:
        """fn's results over items, in order, with a progress bar. Items may come from a
        generator: about two per worker are handed out at a time (so that no worker waits for
        the next while the oldest is still running), so a generator of large items (blocks of
        decompressed text) is not read far ahead, and an exception it raises comes out in its
        place."""
        if self.executor is None:
            return _progress(map(fn, items), items, what)
        return _progress(_in_order(self.executor, fn, items, 2 * self.size + 2), items, what)

    def each(self, fn: Callable[[], Any]) -> list[Any]:
        """fn() run once in every worker process (here, for one worker), in no set order: one
        call each, as each call waits at a barrier until every worker has taken one."""
        if self.executor is None:
            return [fn()]
        try:
            with _main_not_rerun():  # the first call starts the workers
                futures = [self.executor.submit(_at_barrier, fn) for _ in range(self.size)]
        except BrokenProcessPool:
            raise UsageError(_DIED) from None
        # Waited for here too: a stopped worker can hold the task queue, so that no call
        # reaches the barrier at all.
        deadline = time.monotonic() + EACH_SECONDS
        return [_result(f, max(0.0, deadline - time.monotonic())) for f in futures]


@contextlib.contextmanager
def parallel(workers: int) -> Iterator[Workers]:
    """A pool of `workers` processes (none for one: in this process), all started at once, so
    that `each` reaches every one. On an error or an interrupt the workers are terminated, not
    waited for."""
    if workers <= 1:
        yield Workers(1)
        return
    before = set(multiprocessing.active_children())
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                   initargs=(context.Barrier(workers, timeout=EACH_SECONDS),))
    try:
        pool = Workers(workers, executor)
        pool.each(int)  # starts them all: the pool starts only as many as it finds work for
        yield pool
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
                yield _result(pending.popleft(), PIECE_SECONDS)
        while pending:
            yield _result(pending.popleft(), PIECE_SECONDS)
    finally:
        for future in pending:
            future.cancel()


def _result(future: Future[Any], timeout: float | None = None) -> Any:
    try:
        return future.result(timeout)
    except BrokenProcessPool:
        raise UsageError(_DIED) from None
    except (threading.BrokenBarrierError, TimeoutError):
        raise UsageError("prepare: a worker process stopped answering (stopped, or stuck "
                         "reading a file); nothing was written") from None


def _at_barrier(fn: Callable[[], Any]) -> Any:
    _barrier.wait()  # at most EACH_SECONDS, the barrier's timeout
    return fn()


def _start_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


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
    hidden: dict[str, Any] = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__")
                              if k in main.__dict__}
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(hidden)
