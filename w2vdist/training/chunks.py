"""What a rank's loader workers do: read their share of the rank's samples, in a new order
every pass, and hand the trainer chunks of them, sentences mixed, in buffers they reuse.

Each worker cycles through its samples (every W-th of the rank's, from all its shards, so
that all workers pass through theirs alike) forever, in a new order every cycle from the seed,
and mixes the sentences of each chunk of samples it hands over (at least 1M words, from
samples all over its shards): read in order, a corpus's sources train one after another, and the
benchmark corpus as one shard scored 2 analogy points under the same corpus with its lines
shuffled; mixed chunks score as the shuffled lines do.

Chunks also make the loader fast: one hand-over costs about half a millisecond whatever its
size, so handing over single 64k-token samples held it near 40M words/s, and numbering
sentences in the trainer cost another pass over every token. The trainer (`data.TokenBatches`)
only copies chunks, their sentence ids already numbered, into its batches.
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
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from w2vdist.corpus.shards import ShardReader


# A chunk: int32 tokens, int32 sentence ids (from 0, one per sentence) and, in the same
# buffer (`ChunkBuffers`), the chunk's int64 number among its worker's chunks. A shard that
# fails to read is instead (None, one-line message, None).
Chunk = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ShardChunks(IterableDataset):
    """Endless chunks of `chunk` samples, their sentences mixed, from one rank's shards, their
    samples dealt to loader workers in turn.

    `shards` are (path, samples) pairs; each worker first skips `skip` of its own samples,
    without reading them.
    """

    def __init__(
        self, shards: list[tuple[str, int]], seed: int, rank: int, chunk: int, skip: int = 0,
        in_flight: int = 1,
    ) -> None:
        super().__init__()
        self.shards = shards
        self.seed = seed
        self.rank = rank
        self.chunk = chunk
        self.skip = skip
        self.in_flight = in_flight  # chunks of a worker the trainer may not have read yet

    def __iter__(self) -> Iterator[Chunk]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        made = self.skip // self.chunk  # chunks this worker made before, in the whole run
        buffers = ChunkBuffers(self.in_flight + 1, shared=info is not None)
        tokens: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        for sample_tokens, sample_lengths in self._samples(worker, workers):
            if sample_tokens is None:
                yield None, sample_lengths, None
                return
            tokens.append(sample_tokens)
            lengths.append(sample_lengths)
            if len(tokens) == self.chunk:
                seed = random.Random(f"{self.seed}/{self.rank}/{worker}/{made}").getrandbits(64)
                joined, ids, number = buffers.next(sum(len(t) for t in tokens), made)
                _mix(tokens, lengths, np.random.default_rng(seed), joined, ids)
                yield joined, ids, number
                tokens, lengths = [], []
                made += 1

    def _samples(self, worker: int, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Samples, not shards, are dealt to workers: the trainer takes the workers' chunks in
        # turn, so a worker holding fewer samples would pass through them more often.
        samples_of = dict(self.shards)
        every = [(path, i) for path, samples in self.shards for i in range(samples)]
        every = every[worker::workers]
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


class ChunkBuffers:
    """A loader worker's chunk buffers, used in turn: `count` of them, in shared memory when
    the worker is a process. Fresh shared memory costs more than the rest of a chunk (here
    6-12 ms to allocate and touch 4 MB, against 3-4 ms to mix 1M words), so a worker reuses
    its buffers, one more than the chunks the trainer can have yet to read: the DataLoader
    asks a worker for `prefetch` chunks ahead of the one the trainer is reading, and for the
    next only once it has that one. Each buffer carries the number of the chunk in it, which
    the trainer checks when the chunk comes and once it has read it (`data.TokenBatches`)."""

    def __init__(self, count: int, shared: bool) -> None:
        self.count = count
        self.shared = shared
        self.used = 0
        self.slots: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def next(self, size: int, number: int) -> Chunk:
        """The next buffer, as tokens and sentence ids of `size`, numbered `number`."""
        turn = self.used % self.count
        if turn == len(self.slots) or len(self.slots[turn][0]) < size:
            slot = (torch.empty(size, dtype=torch.int32), torch.empty(size, dtype=torch.int32),
                    torch.zeros(1, dtype=torch.int64))
            if self.shared:
                for t in slot:
                    t.share_memory_()
            self.slots[turn:turn + 1] = [slot]
        tokens, ids, stamp = self.slots[turn]
        stamp.fill_(number)
        self.used += 1
        return tokens[:size], ids[:size], stamp


def _mix(
    tokens: list[np.ndarray], lengths: list[np.ndarray], rng: np.random.Generator,
    joined: torch.Tensor, ids: torch.Tensor,
) -> None:
    """The samples' sentences in a random order into `joined`, with their ids into `ids`."""
    sentence_lengths = np.concatenate(lengths).astype(np.intp)
    order = rng.permutation(np.flatnonzero(sentence_lengths))
    if len(order) == 0:
        return
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


MIX_WORDS = 1 << 20


def chunk_samples(tokens: int, samples: int, batch_words: int) -> int:
    """Samples a loader worker mixes and hands over at a time: enough for a batch and at least
    `MIX_WORDS` words, from the shards' mean sample size (16 samples of 64k words mixed scored
    0.9 analogy points over 4 on the benchmark corpus, and as its shuffled lines did)."""
    mean = max(1, tokens // max(1, samples))
    return max(1, -(-max(batch_words, MIX_WORDS) // mean))


class WorkerContext(multiprocessing.context.ForkContext):
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


def leave_stop_signals_to_the_trainer(worker_id: int) -> None:
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
