"""Streaming prepared shards into fixed-size token batches, each rank its own shards.

Shards are dealt to ranks by size (largest first, to the rank with the fewest tokens) so that
ranks hold about equal shares; inside a rank, loader workers split the rank's shards. Each
worker cycles through its shards' samples forever, in a new order every cycle from the seed,
and mixes the sentences of each chunk of samples it hands over (at least 1M words, from samples
all over its shards): read in order, a corpus's sources train one after another, and the
benchmark corpus as one shard scored 2 analogy points under the same corpus with its lines
shuffled; mixed chunks score as the shuffled lines do. The trainer takes exactly its share of a
step (`spec.Plan.rank_words`, proportional to the rank's tokens) per step. Every rank therefore
runs the same number of steps and passes through its data as often as the others, and a rank
never runs dry and hangs a collective.

Chunks also make the loader fast: one hand-over costs about half a millisecond whatever its
size, so handing over single 64k-token samples held it near 40M words/s, and numbering
sentences in the trainer cost another pass over every token. The trainer only copies chunks,
their sentence ids already numbered, into its batches.
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
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from w2vdist.errors import UsageError
from w2vdist.corpus.shards import Manifest, ShardReader


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


MIXED = "mixed"  # `Position.order` of streams of mixed chunks


# A chunk: int32 tokens and int32 sentence ids (from 0, one per sentence). A shard that fails
# to read is instead (None, one-line message).
Chunk = tuple[torch.Tensor, torch.Tensor]


class ShardChunks(IterableDataset):
    """Endless chunks of `chunk` samples, their sentences mixed, from one rank's shards split
    over loader workers.

    `shards` are (path, samples) pairs; each worker first skips `skip` of its own samples,
    without reading them.
    """

    def __init__(
        self, shards: list[tuple[str, int]], seed: int, rank: int, chunk: int, skip: int = 0
    ) -> None:
        super().__init__()
        self.shards = shards
        self.seed = seed
        self.rank = rank
        self.chunk = chunk
        self.skip = skip

    def __iter__(self) -> Iterator[Chunk]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        made = self.skip // self.chunk  # chunks this worker made before, in the whole run
        tokens: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        for sample_tokens, sample_lengths in self._samples(worker, workers):
            if sample_tokens is None:
                yield None, sample_lengths
                return
            tokens.append(sample_tokens)
            lengths.append(sample_lengths)
            if len(tokens) == self.chunk:
                seed = random.Random(f"{self.seed}/{self.rank}/{worker}/{made}").getrandbits(64)
                yield _mixed_chunk(tokens, lengths, np.random.default_rng(seed))
                tokens, lengths = [], []
                made += 1

    def _samples(self, worker: int, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        mine = self.shards[worker::workers]
        samples_of = dict(mine)
        every = [(path, i) for path, samples in mine for i in range(samples)]
        cycle, skip = divmod(self.skip, len(every))
        readers: dict[str, ShardReader] = {}
        while True:
            order = list(every)
            random.Random(f"{self.seed}/{self.rank}/{worker}/{cycle}").shuffle(order)
            for path, i in order[skip:]:
                try:
                    if path not in readers:
                        readers[path] = ShardReader(path, samples_of[path])
                    yield readers[path].read(i)
                except Exception as exc:  # noqa: BLE001 - any failure of one shard's bytes
                    # An exception raised in a loader worker reaches the trainer wrapped in
                    # a traceback; a marker carries the one line that says what failed.
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    yield None, f"{path}: unreadable shard ({first})"
                    return
            skip = 0
            cycle += 1


def _mixed_chunk(
    tokens: list[np.ndarray], lengths: list[np.ndarray], rng: np.random.Generator
) -> Chunk:
    """Samples' sentences in a random order, with their ids, straight into the shared memory
    where a loader worker hands them over (handing over an unshared tensor copies it there)."""
    joined, ids = (torch.empty(sum(len(t) for t in tokens), dtype=torch.int32) for _ in range(2))
    if get_worker_info() is not None:
        joined.share_memory_()
        ids.share_memory_()
    sentence_lengths = np.concatenate(lengths).astype(np.intp)
    order = rng.permutation(np.flatnonzero(sentence_lengths))
    if len(order) == 0:
        return joined, ids
    was = (np.cumsum(sentence_lengths) - sentence_lengths)[order]  # where each sentence began
    sentence_lengths = sentence_lengths[order]
    ends = np.cumsum(sentence_lengths)[:-1]  # where each sentence but the last now ends
    # Where each token comes from: one on from the token before, except where a sentence
    # starts (a running sum: a third of the time of building the index from repeats).
    source = np.ones(len(ids), dtype=np.intp)
    source[0] = was[0]
    source[ends] = was[1:] - (was[:-1] + sentence_lengths[:-1]) + 1
    np.cumsum(source, out=source)
    np.take(np.concatenate(tokens), source, out=joined.numpy())
    starts = ids.numpy()
    starts[:] = 0
    starts[ends] = 1
    np.cumsum(starts, out=starts)
    return joined, ids


MIX_WORDS = 1 << 20


def chunk_samples(tokens: int, samples: int, batch_words: int) -> int:
    """Samples a loader worker mixes and hands over at a time: enough for a batch and at least
    `MIX_WORDS` words, from the shards' mean sample size (16 samples of 64k words mixed scored
    0.9 analogy points over 4 on the benchmark corpus, and as its shuffled lines did)."""
    mean = max(1, tokens // max(1, samples))
    return max(1, -(-max(batch_words, MIX_WORDS) // mean))


def loader_workers(setting: int, device: torch.device) -> int:
    """`data.loader_workers`, -1 resolved: 2 on CUDA, where the step leaves the host's cores
    to the loader (mixed 1M-word chunks: one worker 77M words/s, two 104M on two shared cores,
    BENCHMARKS.md; the dim-100 target is 100M), else 1, beside the CPU step's threads."""
    if setting >= 0:
        return setting
    return 2 if device.type == "cuda" else 1


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
    ) -> None:
        workers = min(loader_workers, len(shards))
        self.workers = max(1, workers)
        self.chunk = chunk
        # A stream dealt otherwise is kept to the amount of data already read, not the order.
        self.reordered = _reordered(start, self.workers, chunk)
        if self.reordered:  # from the start of the chunk that the data already read ends in
            start = Position(start.sample - start.sample % chunk, 0)
        start = Position(start.sample, start.offset, self.workers, chunk, MIXED)
        # Each worker skips its share of the whole rounds before `start`; the trainer drops
        # the rest, less than a round.
        rounds = start.sample // (self.workers * chunk)
        self.loader = DataLoader(
            ShardChunks(shards, seed, rank, chunk, skip=rounds * chunk),
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
        pending: deque[int] = deque()  # tokens still to deliver from each chunk taken in
        self.position = self.start
        batch = self._empty()
        tokens, sentence = batch[0].numpy(), batch[1].numpy()
        filled = 0
        for chunk_tokens, chunk_ids in self._from_start(iter(self.loader)):
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

    def _from_start(self, chunks: Iterator[Chunk]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The workers' chunks as arrays, less the chunks and tokens before `start` that the
        workers did not skip; a failed shard's marker raised as its error."""
        drop = self.start.sample % (self.workers * self.chunk) // self.chunk
        offset = self.start.offset
        for chunk_tokens, chunk_ids in chunks:
            if chunk_tokens is None:
                raise UsageError(chunk_ids)
            if drop:
                drop -= 1
                continue
            yield chunk_tokens.numpy()[offset:], chunk_ids.numpy()[offset:]
            offset = 0

    def _empty(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's tokens and sentence ids, to fill in place."""
        return (torch.empty(self.batch_words, dtype=torch.int32, pin_memory=self.pin_memory),
                torch.empty(self.batch_words, dtype=torch.int32, pin_memory=self.pin_memory))


def _reordered(start: Position, workers: int, chunk: int) -> str | None:
    """Why a stream of `workers` workers, `chunk` samples at a time, does not continue the one
    that `start` was saved in (None when it does)."""
    if (start.sample, start.offset) == (0, 0):
        return None
    if start.order != MIXED:
        return "it was saved when whole shards were read in order"
    if (start.workers, start.chunk) != (workers, chunk):
        return (f"the loader now deals the shards to {workers} worker(s), {chunk} sample(s) at "
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
