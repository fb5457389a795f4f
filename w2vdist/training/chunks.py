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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from w2vdist.corpus.shards import ShardReader


# A chunk: int32 tokens, int32 sentence ids (from 0, one per sentence) and, in the same
# buffer (`ChunkBuffers`), the chunk's int64 number among its worker's chunks. A shard that
# fails to read is instead `Failed`: (None, one-line message, None).
Chunk = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Failed = tuple[None, str, None]
Sample = tuple[int, int]  # a shard's index in the manifest, a sample's index in the shard


@dataclass(frozen=True)
class Rest:
    """What was left unread of a mixed chunk when its run went on over another number of
    ranks, or a part of it: the chunk's `samples` mixed again as then (`key` seeded the mix),
    its tokens from `offset` to `until` (None: its end), but only the sentences of its first
    `keep` samples (the others belong to the next pass)."""

    key: str
    offset: int
    samples: tuple["Item", ...]
    keep: int
    until: int | None = None


Item = Sample | Rest


@dataclass(frozen=True)
class Stream:
    """Which samples a rank's loader reads: `owed` first (dealt to its workers in turn), then
    its shards' samples pass after pass, in orders seeded by `tag`; `base` is the run's epoch
    of its first pass. A run's first ranks owe nothing; the ranks of a run resumed on another
    number of ranks owe the rest of the epoch in progress (`redeal`)."""

    tag: str
    base: int = 0
    owed: tuple[Item, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "base": self.base, "owed": [_listed(i) for i in self.owed]}

    def owed_shards(self) -> set[int]:
        """The shards that what it owes is read from."""
        items, shards = list(self.owed), set()
        while items:
            item = items.pop()
            if isinstance(item, Rest):
                items.extend(item.samples)
            else:
                shards.add(item[0])
        return shards

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stream":
        return cls(d["tag"], d["base"], tuple(_item(i) for i in d["owed"]))


def _listed(item: Item) -> list[Any]:
    if isinstance(item, Rest):
        return [item.key, item.offset, [_listed(i) for i in item.samples], item.keep,
                item.until]
    return list(item)


def _item(listed: list[Any]) -> Item:
    if len(listed) == 2:
        return int(listed[0]), int(listed[1])
    key, offset, samples, keep, until = listed
    return Rest(key, offset, tuple(_item(i) for i in samples), keep, until)


class ShardChunks(IterableDataset):
    """Endless chunks of `chunk` samples, their sentences mixed, from one rank's shards (`mine`
    of the corpus's `sources`, (path, samples) pairs), their samples dealt to loader workers in
    turn, after what the rank's `stream` owes.

    Each worker first skips `skip` of its own samples, without reading them.
    """

    def __init__(
        self, sources: list[tuple[str, int]], mine: list[int], seed: int, stream: Stream,
        chunk: int, skip: int = 0, in_flight: int = 1, vocab: int | None = None,
    ) -> None:
        super().__init__()
        self.sources = sources
        self.vocab = vocab
        self.mine = mine
        self.seed = seed
        self.stream = stream
        self.chunk = chunk
        self.skip = skip
        self.in_flight = in_flight  # chunks of a worker the trainer may not have read yet

    def __iter__(self) -> Iterator[Chunk | Failed]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        made = self.skip // self.chunk  # chunks this worker made before, in the whole run
        buffers = ChunkBuffers(self.in_flight + 1, shared=info is not None)
        reader = SampleReader(self.sources, self.vocab)
        tokens: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        counts = [samples for _, samples in self.sources]
        for item in worker_items(self.mine, counts, self.stream, self.seed, worker, workers,
                                 self.skip):
            try:
                sample_tokens, sample_lengths = reader.read(item)
            except UnreadableShard as exc:
                yield None, str(exc), None
                return
            tokens.append(sample_tokens)
            lengths.append(sample_lengths)
            if len(tokens) == self.chunk:
                joined, ids, number = buffers.next(sum(len(t) for t in tokens), made)
                _mix(tokens, lengths, mix_key(self.seed, self.stream, worker, made), joined, ids)
                yield joined, ids, number
                tokens, lengths = [], []
                made += 1


def mix_key(seed: int, stream: Stream, worker: int, made: int) -> str:
    """What seeds the mix of a worker's chunk number `made`."""
    return f"{seed}/{stream.tag}/{worker}/{made}"


def worker_items(
    mine: list[int], counts: list[int], stream: Stream, seed: int, worker: int, workers: int,
    skip: int = 0,
) -> Iterator[Item]:
    """A loader worker's samples, endlessly, from its `skip`-th on: its share of what the
    stream owes, then every `workers`-th sample of the rank's shards `mine` (`counts`: every
    shard's samples), in a new order every pass. Samples, not shards, are dealt: the trainer
    takes the workers' chunks in turn, so a worker holding fewer samples would pass through
    them more often."""
    owed = stream.owed[worker::workers]
    yield from owed[skip:]
    every = [(s, i) for s in mine for i in range(counts[s])][worker::workers]
    cycle, skip = divmod(max(0, skip - len(owed)), len(every))
    while True:
        order = list(every)
        random.Random(f"{seed}/{stream.tag}/{worker}/{cycle}").shuffle(order)
        yield from order[skip:]
        skip = 0
        cycle += 1


class UnreadableShard(Exception):
    """A shard's bytes failed to read; the message names the shard."""


class SampleReader:
    """Samples and chunks' rests, from shards opened as they are first needed (`ShardReader`,
    with `vocab` checking the token ids); a failure names its shard."""

    def __init__(self, sources: list[tuple[str, int]], vocab: int | None = None) -> None:
        self.sources = sources
        self.vocab = vocab
        self.open: dict[int, ShardReader] = {}

    def read(self, item: Item) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, sentence lengths) of a sample or a chunk's rest."""
        if isinstance(item, Rest):
            return self._rest(item)
        shard, index = item
        path, samples = self.sources[shard]
        try:
            if shard not in self.open:
                self.open[shard] = ShardReader(path, samples, self.vocab)
            return self.open[shard].read(index)
        except Exception as exc:  # noqa: BLE001 - any failure of one shard's bytes
            # An exception raised in a loader worker reaches the trainer wrapped in a
            # traceback; a marker carries the one line that says what failed.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UnreadableShard(f"{path}: unreadable shard ({first})") from None

    def _rest(self, rest: Rest) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.read(item) for item in rest.samples]
        lengths = [p[1] for p in parts]
        sentence_lengths, order = _mix_order(lengths, rest.key)
        owner = np.repeat(np.arange(len(parts)), [len(x) for x in lengths])[order]
        begins = (np.cumsum(sentence_lengths) - sentence_lengths)[order]  # in the samples
        mixed = sentence_lengths[order]
        ends = np.cumsum(mixed)  # where each sentence ends in the mixed chunk
        until = ends[-1] if rest.until is None or len(ends) == 0 else rest.until
        head = np.maximum(0, rest.offset - (ends - mixed))  # its tokens before `offset`
        length = np.minimum(mixed, until - (ends - mixed))  # its tokens before `until`
        kept = (head < length) & (owner < rest.keep)
        begins, head, length = begins[kept], head[kept], length[kept]
        flat = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
        pieces = [flat[b + h : b + n] for b, h, n in zip(begins, head, length)]
        tokens = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        return tokens.astype(np.int32), (length - head).astype(np.int32)


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


def _mix_order(lengths: list[np.ndarray], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The samples' sentence lengths, one array, and the random order of its non-empty ones
    that `key` seeds: the order a chunk's sentences are mixed in."""
    sentence_lengths = np.concatenate(lengths).astype(np.intp)
    rng = np.random.default_rng(random.Random(key).getrandbits(64))
    return sentence_lengths, rng.permutation(np.flatnonzero(sentence_lengths))


def _mix(
    tokens: list[np.ndarray], lengths: list[np.ndarray], key: str, joined: torch.Tensor,
    ids: torch.Tensor,
) -> None:
    """The samples' sentences in a random order into `joined`, with their ids into `ids`."""
    sentence_lengths, order = _mix_order(lengths, key)
    if len(order) == 0:
        return
    was = (np.cumsum(sentence_lengths) - sentence_lengths)[order]  # where each sentence began
    sentence_lengths = sentence_lengths[order]
    ends = np.cumsum(sentence_lengths)[:-1]  # where each sentence but the last now ends
    # Where each token comes from: one on from the token before, except where a sentence
    # starts (a running sum: a third of the time of building the index from repeats). The
    # token-long running sums are torch's (vectorised: a third of numpy's time here), and
    # `take` is told to clip, not raise, on indices out of range (there are none), which
    # spares it buffering its output: the mix takes half the time it did (BENCHMARKS.md,
    # "The loader's own time"). Filled by numpy: torch fills with all its threads, which
    # then spin, in the trainer's process where it mixes itself (`data.loader_workers 0`).
    steps = torch.empty(len(ids), dtype=torch.int64)
    source = steps.numpy()
    source.fill(1)
    source[0] = was[0]
    source[ends] = was[1:] - (was[:-1] + sentence_lengths[:-1]) + 1
    steps.cumsum_(0)
    np.take(np.concatenate(tokens), source, out=joined.numpy(), mode="clip")
    starts = ids.numpy()
    starts[:] = 0
    starts[ends] = 1
    ids.cumsum_(0)


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
