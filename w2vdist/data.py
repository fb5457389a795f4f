"""Streaming prepared shards into fixed-size token batches, each rank its own shards.

Shards are dealt to ranks by size (largest first, to the rank with the fewest tokens) so that
ranks hold about equal shares; inside a rank, loader workers split the rank's shards. Each
worker cycles through its shards forever, reshuffling their order every cycle from the seed,
and the trainer takes exactly `batch_words` tokens per step. Every rank therefore runs the same
number of steps whatever the shard sizes, and a rank never runs dry and hangs a collective.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from w2vdist.errors import UsageError
from w2vdist.shards import Manifest, decode_sample


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


class ShardSamples(IterableDataset):
    """Endless (tokens, lengths) samples from one rank's shards, split over loader workers."""

    def __init__(self, paths: list[str], seed: int, rank: int) -> None:
        super().__init__()
        self.paths = paths
        self.seed = seed
        self.rank = rank

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = self.paths[worker::workers]
        cycle = 0
        while True:
            order = list(mine)
            random.Random(f"{self.seed}/{self.rank}/{worker}/{cycle}").shuffle(order)
            dataset = wds.WebDataset(
                order, shardshuffle=False, nodesplitter=None, workersplitter=None,
                empty_check=False,
            )
            for sample in dataset:
                yield decode_sample(sample)
            cycle += 1


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """torchrun and SLURM signal the whole process group; a loader worker must not die of a
    stop request, which the trainer answers by finishing the step and checkpointing."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


class TokenBatches:
    """Exactly `batch_words` tokens per batch, with a sentence id per token.

    Batch edges cut sentences; a window never crosses an edge, which loses about
    window / batch_words of the pairs (0.1% at the defaults).
    """

    def __init__(
        self,
        paths: list[str],
        batch_words: int,
        seed: int,
        rank: int,
        loader_workers: int,
        prefetch: int,
        pin_memory: bool,
    ) -> None:
        workers = min(loader_workers, len(paths))
        self.loader = DataLoader(
            ShardSamples(paths, seed, rank),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=prefetch if workers else None,
            persistent_workers=False,
            worker_init_fn=_leave_stop_signals_to_the_trainer,
        )
        self.batch_words = batch_words
        self.pin_memory = pin_memory

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = self.batch_words
        tokens = np.empty(0, dtype=np.int32)
        sentence = np.empty(0, dtype=np.int64)
        next_sentence = 0
        for sample_tokens, sample_lengths in self.loader:
            sample_tokens = np.asarray(sample_tokens)
            sample_lengths = np.asarray(sample_lengths)
            ids = np.repeat(
                np.arange(next_sentence, next_sentence + len(sample_lengths)), sample_lengths
            )
            next_sentence += len(sample_lengths)
            tokens = np.concatenate([tokens, sample_tokens])
            sentence = np.concatenate([sentence, ids])
            start = 0
            while len(tokens) - start >= size:
                yield self._tensors(tokens[start : start + size], sentence[start : start + size])
                start += size
            tokens, sentence = tokens[start:], sentence[start:]

    def _tensors(self, tokens: np.ndarray, sentence: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(np.ascontiguousarray(tokens))  # int32: half the bytes to copy
        s = torch.from_numpy((sentence - sentence[0]).astype(np.int32))
        if self.pin_memory:
            t, s = t.pin_memory(), s.pin_memory()
        return t, s
