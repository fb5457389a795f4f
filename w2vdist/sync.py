"""How ranks keep their embedding tables in agreement.

`exact`: every step, each rank all-gathers the touched rows' descent directions (one summed
row per distinct index, padded to the largest rank's count) and every rank applies all of them
in rank order: synchronous data parallelism equal to one process on the global batch. Only all_gather is used,
which NCCL and gloo both implement (stock NCCL has no sparse all-reduce, so DDP's sparse
buckets cannot run there).

`local`: local SGD. Each rank updates its own tables; every `every_steps` steps the ranks'
mean change since the last merge, times `merge_scale`, is added to it (a dense all-reduce), and
the same for the `hot_rows` most frequent rows (the rows that change most) every
`hot_every_steps` steps, the schedule pWord2Vec uses. Tables are fully merged at every epoch end
and before every checkpoint or export. `merge_scale` 1 is classic parameter averaging, which
divides what each rank learnt by the world size; the world size (the cap) adds the ranks'
changes as if their steps had run one after another, which overshoots once several ranks push
the same frequent rows. The default 2 was the best measured on 2 and 4 ranks (BENCHMARKS.md).

Bytes each rank sends per step are in README.md ("Synchronising ranks").
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.distributed as dist

from w2vdist.config import Config, SyncConfig
from w2vdist.sgns import Embeddings, Gradients, SparseRows


class Sync:
    """One process: nothing to agree with. Also the base of the strategies."""

    def __init__(self, world_size: int = 1) -> None:
        self.world_size = world_size
        self.seconds = 0.0
        self.bytes_sent = 0

    def exchange(self, grads: Gradients) -> Gradients:
        return grads

    def after_step(self, tables: Embeddings, step: int) -> None:
        """Called after the step's update; `step` counts completed steps."""

    def merge(self, tables: Embeddings) -> None:
        """Make all ranks' tables identical (before checkpoints, exports, epoch ends)."""


class ExactSync(Sync):
    def exchange(self, grads: Gradients) -> Gradients:
        start = time.perf_counter()
        # One buffer for both tables (output rows shifted past the input rows), the curvature
        # riding as one more column of values.
        index = torch.cat([grads.input.index, grads.output.index + _SHIFT])
        values = torch.cat(
            [_with_curvature(grads.input), _with_curvature(grads.output)]
        )
        index, values = _coalesce(index, values)
        gathered_index, gathered = _all_gather_rows(index, values, self.world_size)
        is_output = gathered_index >= _SHIFT
        self.bytes_sent += (self.world_size - 1) * (index.numel() * 8 + values.numel() * 4)
        self.seconds += time.perf_counter() - start
        return Gradients(
            input=_rows(gathered_index[~is_output], gathered[~is_output]),
            output=_rows(gathered_index[is_output] - _SHIFT, gathered[is_output]),
            loss=grads.loss,
            pairs=grads.pairs,
        )


class LocalSync(Sync):
    def __init__(self, world_size: int, cfg: SyncConfig, tables: Embeddings) -> None:
        super().__init__(world_size)
        self.cfg = cfg
        # The tables as of the last merge, identical on every rank.
        self.base = [tables.input.data.clone(), tables.output.data.clone()]

    def after_step(self, tables: Embeddings, step: int) -> None:
        if step % self.cfg.every_steps == 0:
            self.merge(tables)
        elif self.cfg.hot_rows and step % self.cfg.hot_every_steps == 0:
            self._merge_rows(tables, self.cfg.hot_rows)

    def merge(self, tables: Embeddings) -> None:
        self._merge_rows(tables, tables.input.shape[0])

    def _merge_rows(self, tables: Embeddings, rows: int) -> None:
        """Rows [0, rows) of both tables become the last merge plus the ranks' mean change
        since, times `merge_scale` (at most the world size: the sum)."""
        start = time.perf_counter()
        for table, base in zip((tables.input, tables.output), self.base):
            block, before = table.data[:rows], base[:rows]
            delta = block - before
            dist.all_reduce(delta, op=dist.ReduceOp.SUM)
            delta.mul_(min(self.cfg.merge_scale, self.world_size) / self.world_size)
            torch.add(before, delta, out=block)
            before.copy_(block)
            # A ring all-reduce sends 2 (W-1)/W of the buffer from each rank.
            self.bytes_sent += int(2 * (self.world_size - 1) / self.world_size * delta.numel() * 4)
        self.seconds += time.perf_counter() - start


_SHIFT = 1 << 40  # larger than any vocabulary


def _with_curvature(rows: SparseRows) -> torch.Tensor:
    return torch.cat([rows.values, rows.curvature.unsqueeze(1)], dim=1)


def _coalesce(index: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per distinct index, its contributions summed. `apply` sums a row's values and
    curvatures anyway, so the result is the same; what a rank sends shrinks from every
    contribution to every distinct row, several-fold for Zipfian batches."""
    unique, inverse = torch.unique(index, return_inverse=True)
    summed = values.new_zeros(len(unique), values.shape[1]).index_add_(0, inverse, values)
    return unique, summed


def _rows(index: torch.Tensor, packed: torch.Tensor) -> SparseRows:
    return SparseRows(index, packed[:, :-1].contiguous(), packed[:, -1].contiguous())


def _all_gather_rows(
    index: torch.Tensor, values: torch.Tensor, world_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ranks' (index, values), concatenated in rank order; sizes may differ per rank."""
    count = torch.tensor([index.numel()], device=index.device, dtype=torch.int64)
    counts = [torch.empty_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    longest = max(sizes)
    pad = longest - index.numel()
    if pad:
        index = torch.cat([index, index.new_zeros(pad)])
        values = torch.cat([values, values.new_zeros(pad, values.shape[1])])
    all_index = [torch.empty_like(index) for _ in range(world_size)]
    all_values = [torch.empty_like(values) for _ in range(world_size)]
    dist.all_gather(all_index, index)
    dist.all_gather(all_values, values)
    return (
        torch.cat([t[:n] for t, n in zip(all_index, sizes)]),
        torch.cat([t[:n] for t, n in zip(all_values, sizes)]),
    )


MERGE_WORDS = 1 << 20  # global words between full merges when sync.every_steps is 0


def with_merge_interval(cfg: Config, world_size: int) -> Config:
    """The config with `sync.every_steps` resolved for `local` (0: about MERGE_WORDS words over
    all ranks between merges). Two ranks at the CPU kernel's 65,536-word steps merge every 8
    steps, the interval BENCHMARKS.md measures; each added rank adds its own stale changes to
    a merge, so more ranks merge after fewer steps."""
    if cfg.sync.every_steps or cfg.sync.strategy != "local" or world_size == 1:
        return cfg
    every = max(1, round(MERGE_WORDS / (world_size * cfg.optim.batch_words)))
    return dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, every_steps=every))


def build_sync(cfg: SyncConfig, world_size: int, tables: Embeddings) -> Sync:
    if world_size == 1:
        return Sync()
    if cfg.strategy == "exact":
        return ExactSync(world_size)
    return LocalSync(world_size, cfg, tables)
