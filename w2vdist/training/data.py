"""Streaming prepared shards into fixed-size token batches, each rank its own shards.

Shards are dealt to ranks by size (largest first, to the rank with the fewest tokens) so that
ranks hold about equal shares; inside a rank, loader workers split the rank's shards. Each
worker cycles through its shards forever, reshuffling their order every cycle from the seed,
and the trainer takes exactly its share of a step (`spec.Plan.rank_words`, proportional to the
rank's tokens) per step. Every rank therefore runs the same number of steps and passes through
its data as often as the others, and a rank never runs dry and hangs a collective.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import random
import signal
import sys
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from w2vdist.errors import UsageError
from w2vdist.corpus.shards import Manifest, decode_sample


def assign_shards(manifest: Manifest, world_size: int, directory: str | Path) -> list[list[int]]:
    """Shard indices for each rank, balanced by token count; deterministic."""
    n = len(manifest.shards)
    if n < world_size:
        per_rank = max(1, manifest.total_tokens // world_size)
        raise UsageError(
            f"{directory}: {n} shard(s) for {world_size} ranks; every rank needs its own shard "
            f"(re-run prepare with --shard-tokens {per_rank} or less)"
        )
    order = sorted(range(n), key=lambda i: (-manifest.shards[i].tokens, i))
    loads = [0] * world_size
    owned: list[list[int]] = [[] for _ in range(world_size)]
    for i in order:
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        owned[rank].append(i)
        loads[rank] += manifest.shards[i].tokens
    return [sorted(s) for s in owned]


@dataclass(frozen=True)
class Position:
    """Where a rank's token stream stands: `offset` tokens into sample `sample` of the stream
    its loader delivers (loader workers take turns, so sample j is worker j % n's j // n-th).
    A checkpoint stores it; a resumed run seeks there instead of reading what came before."""

    sample: int = 0
    offset: int = 0
    workers: int = 1


class ShardSamples(IterableDataset):
    """Endless (tokens, lengths) samples from one rank's shards, split over loader workers.

    `shards` are (path, samples) pairs; each worker first skips `skip` of its own samples,
    whole shards by their sample counts without opening them, the rest undecoded.
    """

    def __init__(self, shards: list[tuple[str, int]], seed: int, rank: int, skip: int = 0) -> None:
        super().__init__()
        self.shards = shards
        self.seed = seed
        self.rank = rank
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = self.shards[worker::workers]
        cycle, skip = divmod(self.skip, sum(samples for _, samples in mine))
        while True:
            order = list(mine)
            random.Random(f"{self.seed}/{self.rank}/{worker}/{cycle}").shuffle(order)
            for path, samples in order:
                if skip >= samples:
                    skip -= samples
                    continue
                try:
                    yield from self._read(path, skip)
                except Exception as exc:  # noqa: BLE001 - any failure of one shard's bytes
                    # An exception raised in a loader worker reaches the trainer wrapped in
                    # a traceback; a marker carries the one line that says what failed.
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    yield None, f"{path}: unreadable shard ({first})"
                    return
                skip = 0
            cycle += 1

    @staticmethod
    def _read(path: str, skip: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        dataset = wds.WebDataset(
            [path], shardshuffle=False, nodesplitter=None, workersplitter=None,
            empty_check=False,
        )
        for sample in dataset:
            if skip:
                skip -= 1
                continue
            yield decode_sample(sample)


class _WorkerContext(multiprocessing.context.ForkContext):
    """Forks loader workers and keeps a weak list of them, so that they are killed when the
    trainer's interpreter exits. They ignore SIGTERM (below), which is how multiprocessing
    stops daemonic children at exit before it joins them: a script that ended while a loader
    was still open (a run that raised, say) waited forever on its workers."""

    class Process(multiprocessing.context.ForkProcess):
        def start(self) -> None:
            super().start()
            _workers.add(self)


_workers: "weakref.WeakSet[multiprocessing.process.BaseProcess]" = weakref.WeakSet()


@atexit.register  # after multiprocessing's own exit hook, so it runs before it
def _kill_workers() -> None:
    live = [worker for worker in list(_workers) if worker.is_alive()]
    if live:
        # torch's SIGCHLD handler would report each kill as a worker that failed.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for worker in live:
            worker.kill()


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """torchrun and SLURM signal the whole process group; a loader worker must not die of a
    stop request, which the trainer answers by finishing the step and checkpointing. It dies
    with the trainer instead: Linux kills it when its parent ends, however that ends."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the line above ran
            os._exit(1)


_PR_SET_PDEATHSIG = 1


class TokenBatches:
    """Exactly `batch_words` tokens per batch, with a sentence id per token, from `start` on.

    Batch edges cut sentences; a window never crosses an edge, which loses about
    window / batch_words of the pairs (0.1% at the defaults). `position` is where the batch
    after the last one delivered begins.
    """

    def __init__(
        self,
        shards: list[tuple[str, int]],
        batch_words: int,
        seed: int,
        rank: int,
        loader_workers: int,
        prefetch: int,
        pin_memory: bool,
        start: Position = Position(),
    ) -> None:
        workers = min(loader_workers, len(shards))
        self.workers = max(1, workers)
        if start.workers != self.workers:
            # Another worker count deals the shards differently: keep the amount of data
            # already read, not the exact order.
            start = Position(start.sample, 0, self.workers)
        # Each worker skips its share of the whole rounds before `start`; the trainer reads
        # the rest of the last round, fewer samples than there are workers.
        rounds = start.sample // self.workers
        self.loader = DataLoader(
            ShardSamples(shards, seed, rank, skip=rounds),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=prefetch if workers else None,
            persistent_workers=False,
            worker_init_fn=_leave_stop_signals_to_the_trainer,
            multiprocessing_context=_WorkerContext() if workers else None,
        )
        self.batch_words = batch_words
        self.pin_memory = pin_memory
        self.start = start
        self.position = start

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = self.batch_words
        # Samples wait in lists until they fill a batch, then are joined once: joining each
        # sample onto a growing buffer would copy a 1M-word batch about a hundred times.
        parts: list[np.ndarray] = []
        part_ids: list[np.ndarray] = []
        held = 0  # tokens in `parts`
        pending: deque[int] = deque()  # tokens the buffer still holds from each sample
        next_sentence = 0
        self.position = self.start
        samples = iter(self.loader)
        for _ in range(self.start.sample % self.workers):  # the workers skipped whole rounds
            next(samples)
        for i, (sample_tokens, sample_lengths) in enumerate(samples):
            if sample_tokens is None:  # ShardSamples' marker of a shard that failed
                raise UsageError(sample_lengths)
            sample_tokens = np.asarray(sample_tokens)
            sample_lengths = np.asarray(sample_lengths)
            if i == 0 and self.start.offset:
                sample_tokens, sample_lengths = _drop_head(
                    sample_tokens, sample_lengths, self.start.offset
                )
            pending.append(len(sample_tokens))
            ids = np.repeat(
                np.arange(next_sentence, next_sentence + len(sample_lengths)), sample_lengths
            )
            next_sentence += len(sample_lengths)
            parts.append(sample_tokens)
            part_ids.append(ids)
            held += len(sample_tokens)
            if held < size:
                continue
            tokens, sentence = np.concatenate(parts), np.concatenate(part_ids)
            start = 0
            while len(tokens) - start >= size:
                self.position = _advance(self.position, pending, size, self.workers)
                yield self._tensors(tokens[start : start + size], sentence[start : start + size])
                start += size
            parts, part_ids, held = [tokens[start:]], [sentence[start:]], len(tokens) - start

    def _tensors(self, tokens: np.ndarray, sentence: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(np.ascontiguousarray(tokens))  # int32: half the bytes to copy
        s = torch.from_numpy((sentence - sentence[0]).astype(np.int32))
        if self.pin_memory:
            t, s = t.pin_memory(), s.pin_memory()
        return t, s


def _drop_head(
    tokens: np.ndarray, lengths: np.ndarray, offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """A sample without its first `offset` tokens; the sentence they cut keeps its tail."""
    ends = np.cumsum(lengths)
    cut = int(np.searchsorted(ends, offset, side="right"))
    rest = np.concatenate([[ends[cut] - offset], lengths[cut + 1 :]]).astype(lengths.dtype)
    return tokens[offset:], rest


def _advance(position: Position, pending: deque[int], count: int, workers: int) -> Position:
    """`position` moved on by `count` tokens, taking them off the samples still `pending`."""
    sample, offset = position.sample, position.offset
    while pending and count >= pending[0]:
        count -= pending.popleft()
        sample, offset = sample + 1, 0
    if count:
        pending[0] -= count
        offset += count
    return Position(sample, offset, workers)


class OnDevice:
    """The loader's batches on the training device; on CUDA one step ahead, copied on a side
    stream while the current step trains (on the default stream the copy would queue behind
    the step's kernels). `position` is the loader's position after the batch last handed out,
    not after the one in flight, so that checkpoints resume at the right batch."""

    def __init__(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], loader: TokenBatches,
        device: torch.device,
    ) -> None:
        self.batches = batches
        self.loader = loader
        self.device = device
        self.position = loader.position
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.ahead: tuple[tuple[torch.Tensor, ...], Position, object] | None = None

    def __iter__(self) -> "OnDevice":
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        if self.stream is None:
            batch = tuple(t.to(self.device) for t in next(self.batches))
            self.position = self.loader.position
            return batch
        if self.ahead is None:
            self.ahead = self._copy()
        batch, self.position, copied = self.ahead
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        for t in batch:
            t.record_stream(current)  # the side stream's allocation is now used here
        self.ahead = self._copy()
        return batch

    def _copy(self) -> tuple[tuple[torch.Tensor, ...], Position, object]:
        host = next(self.batches)
        position = self.loader.position
        with torch.cuda.stream(self.stream):
            batch = tuple(t.to(self.device, non_blocking=True) for t in host)
            copied = torch.cuda.Event()
            copied.record(self.stream)
        return batch, position, copied
