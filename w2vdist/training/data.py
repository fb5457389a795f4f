"""Streaming prepared shards into fixed-size token batches, each rank its own shards.

Shards are dealt to ranks by size (largest first, to the rank with the fewest tokens) so that
ranks hold about equal shares; inside a rank, the samples are dealt to loader workers in turn,
which hand over chunks of them, sentences mixed (`chunks`). The trainer takes exactly its share
of a step (`spec.Plan.rank_words`, proportional to the rank's tokens) per step. Every rank
therefore runs the same number of steps and passes through its data as often as the others,
and a rank never runs dry and hangs a collective. A rank of a run resumed on another number of
ranks first reads its share of what the ranks before had not read of the epoch (`redeal`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from w2vdist.corpus.shards import Manifest
from w2vdist.errors import UsageError
from w2vdist.training.chunks import (
    Chunk, Failed, ShardChunks, Stream, WorkerContext, leave_stop_signals_to_the_trainer,
)

log = logging.getLogger("w2vdist")


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
    """Where a rank's token stream stands: `offset` tokens into the chunk that begins at
    sample `sample` of the stream its loader delivers. Loader workers take turns a chunk of
    `chunk` samples each, so sample j is in round j // (n x chunk), and each worker read
    `chunk` samples a round. A checkpoint stores it; a resumed run seeks there instead of
    reading what came before."""

    sample: int = 0
    offset: int = 0
    workers: int = 1
    chunk: int = 1
    order: str = "shards"  # positions saved before samples were mixed: whole shards in order


MIXED = "mixed"  # `Position.order` of streams of mixed chunks, each worker its own shards
DEALT = "dealt"  # of streams of mixed chunks, the samples dealt to workers in turn


def loader_workers(setting: int, device: torch.device, samples: int, cores: int) -> int:
    """`data.loader_workers`, -1 resolved: on CUDA, where the step leaves the host's cores to
    the loader, GPU_LOADER_WORKERS, which keep it several times ahead of the step (on an
    H200's host at 1M-word steps two workers delivered 182-210M words/s, under twice the
    dim-100 step's 113M, four 320-381M; BENCHMARKS.md), but no more than the rank's `cores`
    leave beside the trainer; else 1, beside the CPU step's threads; never more than
    `samples`, the fewest a rank has to deal to them. The count decides the order a rank reads
    its samples in, so a resume keeps the run's (`spec.CHOSEN_AT_START`)."""
    if setting >= 0:
        return setting
    if device.type != "cuda":
        return 1
    return max(1, min(GPU_LOADER_WORKERS, cores - 1, samples))


GPU_LOADER_WORKERS = 4


class TokenBatches:
    """Exactly `batch_words` tokens per batch, with a sentence id per token, from `start` on,
    from the rank's `stream` over the shards `mine` (all by default) of `shards`; with
    `vocab`, every token id checked to be below it (`chunks.SampleReader`).

    Batch edges cut sentences; a window never crosses an edge, which loses (window + 2) / 3
    batch_words of the pairs or more (`backends.edge_warning`; 0.06% at 4,096 words, twice that
    where subsampling keeps half of them). `position` is where the batch
    after the last one delivered begins. Batches are new tensors each (pinned for a GPU),
    so the copy of one to the device may still be running while the next is filled.
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
        *,
        chunk: int,
        start: Position = Position(),
        mine: list[int] | None = None,
        stream: Stream | None = None,
        vocab: int | None = None,
    ) -> None:
        mine = list(range(len(shards))) if mine is None else mine
        samples = sum(shards[i][1] for i in mine)
        workers = min(loader_workers, samples)
        if workers < loader_workers:
            log.warning("data.loader_workers is %d, but rank %d has %d sample(s) to deal to "
                        "them: %d worker(s)", loader_workers, rank, samples, workers)
        self.workers = max(1, workers)
        self.chunk = chunk
        # A stream dealt otherwise is kept to the amount of data already read, not the order.
        self.reordered = _reordered(start, self.workers, chunk)
        if self.reordered:  # from the start of the chunk that the data already read ends in
            start = Position(start.sample - start.sample % chunk, 0)
        start = Position(start.sample, start.offset, self.workers, chunk, DEALT)
        # Each worker skips its share of the whole rounds before `start`; the trainer drops
        # the rest, less than a round.
        self.rounds = start.sample // (self.workers * chunk)
        # A worker's chunks not yet read: the trainer's and the `prefetch` asked for ahead;
        # it reuses one buffer more than that (`chunks.ChunkBuffers`).
        in_flight = prefetch + 1 if workers else 1
        self.buffer_count = workers * (in_flight + 1)  # the buffers all workers reuse
        self.loader = DataLoader(
            ShardChunks(shards, mine, seed, stream or Stream(str(rank)), chunk,
                        skip=self.rounds * chunk, in_flight=in_flight, vocab=vocab),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=prefetch if workers else None,
            persistent_workers=False,
            worker_init_fn=leave_stop_signals_to_the_trainer,
            multiprocessing_context=WorkerContext() if workers else None,
        )
        self.batch_words = batch_words
        self.pin_memory = pin_memory
        self.start = start
        self.position = start
        self.wait_seconds = 0.0  # the trainer's time blocked on the workers' next chunk

    def __iter__(self) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
        size = self.batch_words
        pending: deque[int] = deque()  # tokens still to deliver from each chunk taken in
        self.position = self.start
        batch = self._empty()
        tokens, sentence = batch[0].numpy(), batch[1].numpy()
        filled = 0
        chunks = self._waited(iter(self.loader))
        for chunk_tokens, chunk_ids, number, expected in self._from_start(chunks):
            pending.append(len(chunk_tokens))
            taken = 0
            while taken < len(chunk_tokens):
                n = min(size - filled, len(chunk_tokens) - taken)
                # Ids from 0 in each batch; a chunk that joins a batch begins a new sentence.
                first = 0 if filled == 0 else int(sentence[filled - 1]) + 1
                tokens[filled : filled + n] = chunk_tokens[taken : taken + n]
                np.add(chunk_ids[taken : taken + n], np.int32(first - chunk_ids[taken]),
                       out=sentence[filled : filled + n])
                filled, taken = filled + n, taken + n
                if filled == size:
                    self.position = _advance(self.position, pending, size, self.chunk)
                    yield batch
                    batch = self._empty()
                    tokens, sentence = batch[0].numpy(), batch[1].numpy()
                    filled = 0
            _check_number(number, expected)  # not written over while it was read

    def _waited(self, chunks: Iterator[Chunk | Failed]) -> Iterator[Chunk | Failed]:
        """`chunks`, the time spent waiting for each added to `wait_seconds`: the loader's part
        of handing batches over (the rest is the trainer's own cutting and copying), so that a
        run tells a loader short of workers from a trainer short of time."""
        while True:
            started = time.perf_counter()
            chunk = next(chunks, None)
            self.wait_seconds += time.perf_counter() - started
            if chunk is None:
                return
            yield chunk

    def _from_start(
        self, chunks: Iterator[Chunk | Failed]
    ) -> Iterator[tuple[np.ndarray, np.ndarray, torch.Tensor, tuple[int, int]]]:
        """The workers' chunks as arrays with their number and the (worker, number) they
        must have, less the chunks and tokens before `start` that the workers did not skip; a
        failed shard's marker raised as its error."""
        drop = self.start.sample % (self.workers * self.chunk) // self.chunk
        offset = self.start.offset
        # The workers' buffers stay mapped here while they reuse them: a buffer comes over
        # as a file descriptor with every chunk, which torch maps anew, its pages faulted in
        # as the trainer reads them, unless a mapping of it is still alive (0.8-1.7 ms of the
        # trainer's 3.0-4.2 a 1M-word batch; BENCHMARKS.md, "The loader's own time").
        mapped: deque[Chunk] = deque(maxlen=self.buffer_count)
        for i, chunk in enumerate(chunks):
            if chunk[0] is None:
                raise UsageError(chunk[1])
            mapped.append(chunk)
            chunk_tokens, chunk_ids, number = chunk
            # Workers take turns, and each numbers its chunks on from the rounds it skipped.
            expected = (i % self.workers, self.rounds + i // self.workers)
            _check_number(number, expected)
            if drop:
                drop -= 1
                continue
            yield chunk_tokens.numpy()[offset:], chunk_ids.numpy()[offset:], number, expected
            offset = 0

    def _empty(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's tokens and sentence ids, to fill in place."""
        return (torch.empty(self.batch_words, dtype=torch.int32, pin_memory=self.pin_memory),
                torch.empty(self.batch_words, dtype=torch.int32, pin_memory=self.pin_memory))


def _check_number(number: torch.Tensor, expected: tuple[int, int]) -> None:
    """Refuse a chunk whose buffer holds another chunk than the one due
    (`chunks.ChunkBuffers`)."""
    worker, due = expected
    if int(number) != due:
        raise RuntimeError(f"loader: worker {worker}'s buffer for its chunk {due} holds its "
                           f"chunk {int(number)}: a chunk was written over before it was read")


def older_dealing(position: Position) -> str | None:
    """Why `position` counts samples of a stream dealt otherwise than today's (None when it
    counts today's, of its own worker count and chunk)."""
    if position.order == MIXED and position.workers > 1:
        return "it was saved when each loader worker read its own shards"
    if position.order not in (MIXED, DEALT):
        return "it was saved when whole shards were read in order"
    return None


def _reordered(start: Position, workers: int, chunk: int) -> str | None:
    """Why a stream of `workers` workers, `chunk` samples at a time, does not continue the one
    that `start` was saved in (None when it does)."""
    if (start.sample, start.offset) == (0, 0):
        return None
    older = older_dealing(start)
    if older:
        return older
    if (start.workers, start.chunk) != (workers, chunk):
        return (f"the loader now deals the samples to {workers} worker(s), {chunk} sample(s) at "
                f"a time, not {start.workers}, {start.chunk} at a time")
    return None


def _advance(position: Position, pending: deque[int], count: int, chunk: int) -> Position:
    """`position` moved on by `count` tokens, taking them off the chunks still `pending`."""
    sample, offset = position.sample, position.offset
    while pending and count >= pending[0]:
        count -= pending.popleft()
        sample, offset = sample + chunk, 0
    if count:
        pending[0] -= count
        offset += count
    return Position(sample, offset, position.workers, position.chunk, position.order)


class OnDevice:
    """The loader's batches on the training device; on CUDA one step ahead, copied on a side
    stream while the current step trains (on the default stream the copy would queue behind
    the step's kernels). `position` is the loader's position after the batch last handed out,
    not after the one in flight, so that checkpoints resume at the right batch; `seconds` the
    host time spent handing batches out: waiting for the loader's chunks (`wait_seconds`), and
    cutting them into batches and starting their copies."""

    def __init__(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], loader: TokenBatches,
        device: torch.device,
    ) -> None:
        self.batches = batches
        self.loader = loader
        self.device = device
        self.position = loader.position
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.ahead: tuple[tuple[torch.Tensor, ...], Position, torch.cuda.Event] | None = None
        self.seconds = 0.0

    def __iter__(self) -> "OnDevice":
        return self

    @property
    def wait_seconds(self) -> float:
        return self.loader.wait_seconds

    def __next__(self) -> tuple[torch.Tensor, ...]:
        started = time.perf_counter()
        batch = self._next()
        self.seconds += time.perf_counter() - started
        return batch

    def _next(self) -> tuple[torch.Tensor, ...]:
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

    def _copy(self) -> tuple[tuple[torch.Tensor, ...], Position, torch.cuda.Event]:
        host = next(self.batches)
        position = self.loader.position
        with torch.cuda.stream(self.stream):
            batch = tuple(t.to(self.device, non_blocking=True) for t in host)
            copied = torch.cuda.Event()
            copied.record(self.stream)
        return batch, position, copied
