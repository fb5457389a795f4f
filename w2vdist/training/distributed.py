"""Process-group setup shared by one plain process and torchrun's env:// workers, and the
clock that times what the ranks do together on their device."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from w2vdist.errors import UsageError

log = logging.getLogger("w2vdist")

MEET_SECONDS = 2.0  # how often the ranks meet in `together`
REPORT_SECONDS = 30.0  # how often rank 0 logs their progress there


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device
    host: str
    local_size: int = 1  # the ranks on this host (torchrun's LOCAL_WORLD_SIZE)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str, timeout_seconds: float) -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR...), if any.

    CUDA ranks use NCCL, CPU ranks gloo; the timeout makes a rank whose peer died fail with
    an error instead of waiting forever in a collective.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = _device(device, local_rank)
    if size > 1 and not dist.is_initialized():
        _refuse_stale_restart_store()
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            timeout=timedelta(seconds=timeout_seconds),
            device_id=resolved if resolved.type == "cuda" else None,
        )
    return World(rank, size, local_rank, resolved, socket.gethostname(),
                 int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _refuse_stale_restart_store() -> None:
    """torchrun's c10d rendezvous shares one TCPStore with its workers and keeps it across
    restarts, so a restarted worker can read the gloo/NCCL address its dead predecessor left
    there and fail or hang connecting (pytorch/pytorch#135712). Refuse that combination
    up front: the fix is one variable, an intermittent hang after a failure is not."""
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    if restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        raise UsageError(
            f"torchrun --max-restarts {restarts}: export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
            "before torchrun (its shared rendezvous store hands restarted workers stale peer "
            "addresses, pytorch/pytorch#135712); launch/torchrun.sh and slurm/ set it"
        )


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f"config: train.device is {name!r} but no CUDA device is available")
    device = torch.device(name if ":" in name else f"cuda:{local_rank}")
    torch.cuda.set_device(device)
    return device


def together(
    world: World, what: str, task: Callable[[], None], progress: Callable[[], tuple[int, int]],
    timeout: float,
) -> None:
    """Run `task`, this rank's part of a piece of work that can take minutes longer on one
    rank than on another (copying its shards from a URL), in a thread while the ranks meet
    every MEET_SECONDS (at most a quarter of the collectives' `timeout`): the first collective
    after the work would otherwise wait for the slowest rank only up to that timeout. Rank 0
    logs all ranks' `progress` (bytes done, bytes to do). Returns once every rank's task is
    done; raises this rank's error, or one naming the rank whose task failed."""
    if world.size == 1:
        task()
        return
    failure: list[BaseException] = []

    def work() -> None:
        try:
            task()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=work, name=what, daemon=True)
    thread.start()
    started = time.monotonic()
    reported: float | None = None  # when rank 0 last logged the progress: as its own task
    while True:  # ends, and every REPORT_SECONDS
        thread.join(min(MEET_SECONDS, timeout / 4))
        finished = not thread.is_alive()  # before `failure`, which it then holds for good
        error = failure[0] if failure else None  # raised once the others know of it
        done, planned = progress()
        table = torch.zeros(world.size, 4, dtype=torch.int64, device=world.device)
        table[world.rank] = torch.tensor([finished, error is not None, done, planned])
        dist.all_reduce(table)
        rows = table.tolist()
        if error is not None:
            raise error
        failed = [rank for rank, row in enumerate(rows) if row[1]]
        if failed:
            raise UsageError(f"{what}: rank {failed[0]} failed (its error is in its output)")
        if all(row[0] for row in rows):
            return
        now = time.monotonic()
        if world.is_main and (finished and reported is None
                              or now - (reported or started) >= REPORT_SECONDS):
            reported = now
            done, planned = (sum(row[i] for row in rows) for i in (2, 3))
            rate = done / (now - started)
            left = f"about {(planned - done) / rate:.0f} s left" if rate > 0 else "waiting"
            log.info("%s: %d of %d ranks done, %.1f of %.1f MB (%.0f MB/s, %s)", what,
                     sum(row[0] for row in rows), world.size, done / 1e6, planned / 1e6,
                     rate / 1e6, left)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class DeviceClock:
    """Seconds spent between `start` and `stop`, summed, as the device spends them. A GPU's
    host only enqueues work: timed on the host, a merge would count the wait for the step
    still running (its first read of the device waits for it) and miss its own last
    transfers, and merges scheduled by time would space out for the steps' time. On CUDA,
    events on the current stream time it, read at control steps, when the device is read
    anyway; elsewhere the host clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._total = 0.0
        self._started = 0.0  # the host clock at `start`, or on CUDA its event
        self._start_event: torch.cuda.Event | None = None
        self._pending: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def start(self) -> None:
        if self.cuda:
            self._start_event = self._event()
        else:
            self._started = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            assert self._start_event is not None, "DeviceClock.stop before start"
            self._pending.append((self._start_event, self._event()))
        else:
            self._total += time.perf_counter() - self._started

    @property
    def seconds(self) -> float:
        """The total so far (on CUDA, waits for the last timed work to finish)."""
        for begin, end in self._pending:
            end.synchronize()
            self._total += begin.elapsed_time(end) / 1e3
        self._pending.clear()
        return self._total

    @staticmethod
    def _event() -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
