"""How ranks keep their embedding tables in agreement.

`exact`: every step, each rank all-gathers the touched rows' descent directions (one summed
row per distinct index, padded to the largest rank's count) and every rank applies all of them
in rank order: synchronous data parallelism equal to one process on the global batch. Only all_gather is used,
which NCCL and gloo both implement (stock NCCL has no sparse all-reduce, so DDP's sparse
buckets cannot run there).

`local`: local SGD. Each rank updates its own tables; every `every_steps` steps all rows are
merged (a dense all-reduce), the `hot_rows` most frequent rows (which every rank updates) every
`hot_every_steps` steps, as pWord2Vec does, and all rows at every epoch end and before every
checkpoint or export. A merge adds to the last merged tables each rank's change to a row
weighted by how far that rank saturated the row (`Saturation`): sum_r (1 + c_r) delta_r /
(1 + sum_r c_r). A row one rank touched keeps its change whole (averaging would divide it by
the world size); rows that every rank pushed to the same optimum get about the mean (summing
would multiply it); lightly touched rows add up, as if the ranks had run one after another.
c_r is `curvature_weight` times the rank's lr-weighted curvature of the row's updates; the
curvature summed over a row's updates overstates how far they saturate it along the change
(the updates point many ways), and 0.1 measured best on 4 and 8 ranks (BENCHMARKS.md).

Bytes each rank sends per step are in README.md ("Synchronising ranks").
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from w2vdist.config import Config, SyncConfig
from w2vdist.training.sgns import Embeddings, Gradients, SparseRows


@dataclass
class Saturation:
    """What a `local` merge needs to weigh each rank's change to a row, float32[V] each.

    `sat_in`/`sat_out` sum, over a row's updates since the last merge, lr times the curvature
    of the update's loss along the row; `norm_in`/`norm_out` are the rows' squared norms as of
    the last merge, which the compiled kernel uses for the curvature |g| / 2 * |other row|^2.
    """

    norm_in: torch.Tensor
    norm_out: torch.Tensor
    sat_in: torch.Tensor
    sat_out: torch.Tensor


class Sync:
    """What every strategy provides: the exchange of a step's gradients (`exact`), the merges
    after steps and before checkpoints (`local`), the run's small control all-reduce, and the
    time and bytes all of that cost. Subclasses say which hooks they use."""

    saturation: Saturation | None = None  # what steps record for `local` merges

    def __init__(self, world_size: int, device: torch.device) -> None:
        self.world_size = world_size
        self.device = device
        self.seconds = 0.0
        self.bytes_sent = 0

    def exchange(self, grads: Gradients) -> Gradients:
        raise NotImplementedError

    def after_step(self, tables: Embeddings, step: int) -> None:
        """Called after the step's update; `step` counts completed steps."""
        raise NotImplementedError

    def merge(self, tables: Embeddings) -> None:
        """Make all ranks' tables identical (before checkpoints, exports, epoch ends)."""
        raise NotImplementedError

    def all_sum(self, values: list[float]) -> list[float]:
        """`values` summed over the ranks (float64): the loop's one small collective a step."""
        if self.world_size == 1:
            return values
        start = time.perf_counter()
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        self.seconds += time.perf_counter() - start
        return t.tolist()


class OneProcess(Sync):
    """Nothing to agree with."""

    def exchange(self, grads: Gradients) -> Gradients:
        return grads

    def after_step(self, tables: Embeddings, step: int) -> None:
        pass

    def merge(self, tables: Embeddings) -> None:
        pass


class ExactSync(Sync):
    def after_step(self, tables: Embeddings, step: int) -> None:
        pass  # every step's gradients were already shared

    def merge(self, tables: Embeddings) -> None:
        pass

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
        super().__init__(world_size, tables.input.device)
        self.cfg = cfg
        # The tables as of the last merge, identical on every rank.
        self.base = [tables.input.data.clone(), tables.output.data.clone()]
        rows = tables.input.shape[0]
        device = tables.input.device
        self.saturation = Saturation(
            *(_squared_norms(t) for t in self.base),
            torch.zeros(rows, device=device), torch.zeros(rows, device=device),
        )

    def exchange(self, grads: Gradients) -> Gradients:
        return grads  # each rank applies its own; merges reconcile them

    def after_step(self, tables: Embeddings, step: int) -> None:
        if step % self.cfg.every_steps == 0:
            self.merge(tables)
        elif self.cfg.hot_rows and step % self.cfg.hot_every_steps == 0:
            self._merge_rows(tables, self.cfg.hot_rows)

    def merge(self, tables: Embeddings) -> None:
        self._merge_rows(tables, tables.input.shape[0])

    def _merge_rows(self, tables: Embeddings, rows: int) -> None:
        """Rows [0, rows) of both tables become the last merge plus the ranks' changes since,
        each rank's change to a row weighted by 1 + its saturation c_r of the row:
        sum_r (1 + c_r) delta_r / (1 + sum_r c_r). See `unpack_changes`."""
        start = time.perf_counter()
        sat = self.saturation
        for table, base, sat_rows, norm in (
            (tables.input, self.base[0], sat.sat_in, sat.norm_in),
            (tables.output, self.base[1], sat.sat_out, sat.norm_out),
        ):
            block, before = table.data[:rows], base[:rows]
            packed = pack_changes(block, before, sat_rows[:rows] * self.cfg.curvature_weight)
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
            torch.add(before, unpack_changes(packed), out=block)
            before.copy_(block)
            sat_rows[:rows] = 0
            norm[:rows] = _squared_norms(block)
            # A ring all-reduce sends 2 (W-1)/W of the buffer from each rank.
            self.bytes_sent += int(2 * (self.world_size - 1) / self.world_size * packed.numel() * 4)
        self.seconds += time.perf_counter() - start


def pack_changes(rows: torch.Tensor, base: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    """One rank's share of a merge, (R, D + 1): its change (1 + c) * (rows - base), then c."""
    dim = rows.shape[1]
    packed = torch.empty(rows.shape[0], dim + 1, dtype=rows.dtype, device=rows.device)
    torch.sub(rows, base, out=packed[:, :dim])
    packed[:, :dim].mul_(saturation.unsqueeze(1) + 1)
    packed[:, dim] = saturation
    return packed


def unpack_changes(summed: torch.Tensor) -> torch.Tensor:
    """The merged change from the ranks' summed packs: sum (1 + c_r) delta_r / (1 + sum c_r).

    A row only one rank touched keeps that rank's change in full; a row that every rank
    saturated (c_r >> 1) gets about their mean; rows touched lightly everywhere, the sum, as if
    the ranks' steps had run one after another. This is the implicit-SGD step of the ranks'
    pooled quadratic models: rank r's change is lr g_r / (1 + c_r), so the one-process step
    lr sum g_r / (1 + sum c_r) follows from the changes and saturations alone.
    """
    dim = summed.shape[1] - 1
    return summed[:, :dim] / (summed[:, dim:] + 1)


def _squared_norms(table: torch.Tensor) -> torch.Tensor:
    return (table * table).sum(1)


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
HOT_MERGE_WORDS = 1 << 18  # and between merges of the hot rows when sync.hot_every_steps is 0


def with_merge_interval(cfg: Config, world_size: int) -> Config:
    """The config with `local`'s merge intervals resolved (0: about MERGE_WORDS and
    HOT_MERGE_WORDS words over all ranks). Stale changes add up with the words trained between
    merges, whatever the rank count: 4 and 8 ranks merging every 256k words over all ranks
    score alike, at 1M both lose two analogy points more (BENCHMARKS.md); the hot rows, which
    every rank updates, are what must be merged often."""
    step = world_size * cfg.optim.batch_words
    every = cfg.sync.every_steps or max(1, round(MERGE_WORDS / step))
    hot = cfg.sync.hot_every_steps or max(1, round(HOT_MERGE_WORDS / step))
    sync = dataclasses.replace(cfg.sync, every_steps=every, hot_every_steps=hot)
    return dataclasses.replace(cfg, sync=sync)


def build(cfg: SyncConfig, world_size: int, tables: Embeddings) -> Sync:
    if world_size == 1:
        return OneProcess(1, tables.input.device)
    if cfg.strategy == "exact":
        return ExactSync(world_size, tables.input.device)
    return LocalSync(world_size, cfg, tables)
