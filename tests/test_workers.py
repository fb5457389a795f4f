"""`prepare`'s worker pool: `each` reaches every worker process once, and a worker that stops
answering fails `each` or `map` in bounded time."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

import pytest

from w2vdist.corpus import workers as corpus_workers
from w2vdist.corpus.workers import Workers, parallel
from w2vdist.errors import UsageError


def test_each_runs_once_in_every_worker() -> None:
    with parallel(3) as pool:
        assert list(pool.map(abs, [-1], "one item")) == [1]  # work for one worker only
        pids = pool.each(os.getpid)
        assert len(set(pids)) == 3 and os.getpid() not in pids
        assert sorted(pool.each(os.getpid)) == sorted(pids)  # the barrier serves again
    with parallel(1) as pool:
        assert pool.each(os.getpid) == [os.getpid()]


def fails_when_stopped(stop: int, then: Callable[[Workers], object]) -> None:
    """`then(pool)` on a pool of two workers, `stop` of them stopped (alive, taking no call),
    must fail with one line in bounded time."""
    stopped: list[int] = []
    start = time.monotonic()
    try:
        with pytest.raises(UsageError, match="a worker process stopped answering"):
            with parallel(2) as pool:
                stopped += pool.each(os.getpid)[:stop]
                for pid in stopped:
                    os.kill(pid, signal.SIGSTOP)
                then(pool)
        assert time.monotonic() - start < 30
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("stop", [1, 2], ids=["one worker stopped", "both stopped"])
def test_a_worker_that_stops_answering_fails_each_in_bounded_time(
    stop: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopped worker either never reaches the barrier (whose timeout then breaks it for
    the others) or holds the task queue, so that no call reaches it: the wait for the results
    is bounded too."""
    monkeypatch.setattr(corpus_workers, "EACH_SECONDS", 2.0)
    monkeypatch.setattr(corpus_workers, "JOIN_SECONDS", 1.0)
    fails_when_stopped(stop, lambda pool: pool.each(os.getpid))


def test_stopped_workers_fail_a_pass_in_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_workers, "PIECE_SECONDS", 2.0)
    monkeypatch.setattr(corpus_workers, "JOIN_SECONDS", 1.0)
    fails_when_stopped(2, lambda pool: list(pool.map(abs, range(10), "pieces")))
