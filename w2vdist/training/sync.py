"""How ranks keep their embedding tables in agreement.

`exact`: every step, each rank all-gathers the touched rows' descent directions (one summed
row per distinct index, padded to the largest rank's count) and every rank applies all of them
in rank order: synchronous data parallelism equal to one process on the global batch. Only
all_gather is used, which NCCL and gloo both implement (stock NCCL has no sparse all-reduce,
so DDP's sparse buckets cannot run there).

`local`: local SGD. Each rank updates its own tables; every `every_steps` steps the rows some
rank changed are merged, the `hot_rows` most frequent rows (which every rank updates) every
`hot_every_steps` steps, as pWord2Vec does, in the background while the next step trains,
and all rows at every epoch end and before every checkpoint or export. A merge adds to the
last merged tables each rank's change to a row weighted by how far that rank saturated the
row: the rule and its arithmetic are in `merge`.

Bytes each rank sends per step are in README.md ("Synchronising ranks").
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import torch
import torch.distributed as dist

from w2vdist.training.config import Config, SyncConfig
from w2vdist.training.distributed import DeviceClock
from w2vdist.training.merge import Saturation, curvature_norms, pack_changes, unpack_changes
from w2vdist.training.sgns import Embeddings, Gradients, SparseRows, coalesce

log = logging.getLogger("w2vdist")


class Sync:
    """What every strategy provides: the exchange of a step's gradients (`exact`), the merges
    after steps and before checkpoints (`local`), the run's small control all-reduce, and the
    time and bytes all of that cost. Subclasses say which hooks they use."""

    saturation: Saturation | None = None  # what steps record for `local` merges

    def __init__(self, world_size: int, device: torch.device) -> None:
        self.world_size = world_size
        self.device = device
        self.clock = DeviceClock(device)
        self.bytes_sent = 0

    @property
    def seconds(self) -> float:
        """Time spent synchronising, as the device spent it (`DeviceClock`)."""
        return self.clock.seconds

    def exchange(self, grads: Gradients) -> Gradients:
        raise NotImplementedError

    def after_step(self, tables: Embeddings, step: int) -> None:
        """Called after the step's update; `step` counts completed steps."""
        raise NotImplementedError

    def merge(self, tables: Embeddings) -> None:
        """Make all ranks' tables identical (before checkpoints, exports, epoch ends)."""
        raise NotImplementedError

    def control(self, values: list[float | torch.Tensor]) -> list[float]:
        """`values` (numbers, or 0-d tensors on the device) summed over the ranks, in float64:
        the loop's one small collective and one read from the device per control step. The
        strategy's own figures ride along, so that every rank takes the same decisions."""
        mine = self._control_figures()
        t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device)
                         for v in [*values, *mine]])
        if self.world_size > 1:
            self.clock.start()
            dist.all_reduce(t)
            self.clock.stop()
        summed = t.tolist()
        self._on_control(summed[len(values):])
        return summed[: len(values)]

    def _control_figures(self) -> list[float]:
        return []

    def _on_control(self, summed: list[float]) -> None:
        pass


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
        self.clock.start()
        # One buffer for both tables (output rows shifted past the input rows), the curvature
        # riding as one more column of values.
        index = torch.cat([grads.input.index, grads.output.index + _SHIFT])
        values = torch.cat([grads.input.packed(), grads.output.packed()])
        index, values = coalesce(index, values)
        gathered_index, gathered = _all_gather_rows(index, values, self.world_size)
        is_output = gathered_index >= _SHIFT
        self.bytes_sent += (self.world_size - 1) * (index.numel() * 8 + values.numel() * 4)
        self.clock.stop()
        return Gradients(
            input=SparseRows.unpacked(gathered_index[~is_output], gathered[~is_output]),
            output=SparseRows.unpacked(gathered_index[is_output] - _SHIFT, gathered[is_output]),
            loss=grads.loss,
            pairs=grads.pairs,
        )


class LocalSync(Sync):
    saturation: Saturation  # what its steps record, always

    def __init__(self, world_size: int, cfg: SyncConfig, tables: Embeddings) -> None:
        super().__init__(world_size, tables.input.device)
        self.cfg = cfg
        # The tables as of the last merge, identical on every rank.
        self.base = [tables.input.data.clone(), tables.output.data.clone()]
        rows = tables.input.shape[0]
        device = tables.input.device
        # The merges' pack buffer: grown to the largest block merged so far, then reused.
        self._buffer = torch.empty(0, tables.input.shape[1] + 1, device=device)
        if cfg.hot_rows < 0:
            raise ValueError("LocalSync needs sync.hot_rows resolved (sync.resolved), not -1")
        # Hot merges' pack and the rows as packed (input rows, then output rows), reused.
        hot = min(cfg.hot_rows, rows)
        self._hot_pack = torch.empty(2 * hot, tables.input.shape[1] + 1, device=device)
        self._hot_rows = torch.empty(2 * hot, tables.input.shape[1], device=device)
        self._hot: dist.Work | None = None  # the hot merge in flight
        self.every_steps = cfg.every_steps  # full merges; by time, if merge_time_share is set
        self._full = DeviceClock(device)  # full merges since the schedule was last judged
        self._since = time.perf_counter()
        self.saturation = Saturation(
            curvature_norms(self.base[0]), curvature_norms(self.base[1]),
            torch.zeros(rows, device=device), torch.zeros(rows, device=device),
        )

    def exchange(self, grads: Gradients) -> Gradients:
        return grads  # each rank applies its own; merges reconcile them

    def after_step(self, tables: Embeddings, step: int) -> None:
        self._finish_hot(tables)  # the last hot merge, which ran alongside this step
        if step % self.every_steps == 0:
            self.merge(tables)
        elif self.cfg.hot_rows and step % self.cfg.hot_every_steps == 0:
            self._start_hot(tables)

    def merge(self, tables: Embeddings) -> None:
        self._finish_hot(tables)
        self._full.start()
        self._merge_rows(tables, tables.input.shape[0])
        self._full.stop()

    def _start_hot(self, tables: Embeddings) -> None:
        """Start merging the hot rows of both tables in the background: their changes since
        the last merge, as of now, are packed and all-reduced while the next step trains
        (`_finish_hot` then adds the merged change under what the rank trained meanwhile).
        Hot merges come every few thousand words; overlapped, the ranks' wait for the slowest
        and the transfer hide behind a step instead of adding to it."""
        self.clock.start()
        for part, table, base, sat in self._hot_sides(tables):
            rows = sat.shape[0]
            self._hot_rows[part] = table.data[:rows]
            pack_changes(self._hot_rows[part], base[:rows],
                         sat * self.cfg.curvature_weight, out=self._hot_pack[part])
            sat.zero_()
        self._hot = dist.all_reduce(self._hot_pack, async_op=True)
        self.bytes_sent += int(self._ring * self._hot_pack.numel() * 4)
        self.clock.stop()

    def _finish_hot(self, tables: Embeddings) -> None:
        if self._hot is None:
            return
        self.clock.start()
        self._hot.wait()
        self._hot = None
        change = unpack_changes(self._hot_pack)
        norms = (self.saturation.norm_in, self.saturation.norm_out)
        for (part, table, base, sat), norm in zip(self._hot_sides(tables), norms):
            rows = sat.shape[0]
            base[:rows] += change[part]
            # What the rank trained since the snapshot stays on top of the merged rows.
            moved = torch.sub(base[:rows], self._hot_rows[part], out=self._hot_rows[part])
            table.data[:rows] += moved
            norm[:rows] = curvature_norms(base[:rows])
        self.clock.stop()

    def _hot_sides(self, tables: Embeddings) -> list[tuple[slice, torch.Tensor, torch.Tensor,
                                                           torch.Tensor]]:
        """(slice of the hot buffers, table, its last merge, its hot rows' saturation) for the
        input, then the output table."""
        rows = self._hot_rows.shape[0] // 2
        sat = self.saturation
        return [(slice(0, rows), tables.input, self.base[0], sat.sat_in[:rows]),
                (slice(rows, 2 * rows), tables.output, self.base[1], sat.sat_out[:rows])]

    def _control_figures(self) -> list[float]:
        return [self._full.seconds, time.perf_counter() - self._since]

    def _on_control(self, summed: list[float]) -> None:
        """Full merges scheduled by time, judged at the first control step after one: when
        they took more than `merge_time_share` of the ranks' time, the whole tables merge
        proportionally less often; under half of it, proportionally more often again, down to
        sync.every_steps (so that a slow first merge, as NCCL sets up its rings, or a busy
        spell does not space them out for the rest of the run). The hot rows keep their
        interval. Every rank sees the same sums, so all take the same decision at the same
        step."""
        merging, elapsed = summed
        target = self.cfg.merge_time_share
        if merging <= 0 or target <= 0:
            return  # no full merge to judge by since the last judgement
        self._full, self._since = DeviceClock(self.device), time.perf_counter()
        share = merging / elapsed
        if share > target:
            every = math.ceil(self.every_steps * share / target)
        elif share < target / 2:
            every = max(self.cfg.every_steps, math.ceil(self.every_steps * 2 * share / target))
        else:
            return
        if every != self.every_steps:
            log.info("full merges took %.1f%% of the time (sync.merge_time_share %.2g): the "
                     "whole tables now merge every %d steps, not %d", 100 * share, target,
                     every, self.every_steps)
            self.every_steps = every

    def _merge_rows(self, tables: Embeddings, rows: int) -> None:
        """Rows [0, rows) of both tables become the last merge plus the ranks' changes since,
        each rank's change to a row weighted by 1 + its saturation c_r of the row:
        sum_r (1 + c_r) delta_r / (1 + sum_r c_r). See `merge.unpack_changes`.

        Only rows that some rank changed travel: a row's saturation is positive exactly when
        the row was updated (`merge.curvature_norms`), the ranks agree on the union with a one-byte
        -per-row all-reduce, and a merge then costs the rows touched, not the vocabulary (a
        few thousand rows a step against 2M). Both tables' rows go through one reused buffer
        of up to MERGE_BLOCK_BYTES, one all-reduce per block: no temporary is as large as a
        table.
        """
        self.clock.start()
        sat = self.saturation
        rows = min(rows, tables.input.shape[0])
        sides = ((tables.input, self.base[0], sat.sat_in, sat.norm_in),
                 (tables.output, self.base[1], sat.sat_out, sat.norm_out))
        touched = torch.stack([sat.sat_in[:rows] > 0, sat.sat_out[:rows] > 0]).to(torch.uint8)
        dist.all_reduce(touched, op=dist.ReduceOp.MAX)
        self.bytes_sent += int(self._ring * touched.numel())
        indices = [t.nonzero().squeeze(1) for t in touched]  # merges wait for the ranks anyway
        dim = tables.input.shape[1]
        block_rows = MERGE_BLOCK_BYTES // (4 * (dim + 1))
        pieces = [(side, index[lo : lo + block_rows]) for side, index in zip(sides, indices)
                  for lo in range(0, len(index), block_rows)]  # fmt: skip
        block: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]] = []
        for piece in pieces:
            if block and sum(len(p) for _, p in block) + len(piece[1]) > block_rows:
                self._merge_block(block)
                block = []
            block.append(piece)
        if block:
            self._merge_block(block)
        for (_, _, sat_rows, _), index in zip(sides, indices):
            sat_rows[:rows] = 0
            self.bytes_sent += int(self._ring * len(index) * (dim + 1) * 4)
        self.clock.stop()

    @property
    def _ring(self) -> float:
        return 2 * (self.world_size - 1) / self.world_size  # share of a buffer a rank sends

    def _merge_block(self, block: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]]) -> None:
        """Pack each (side, rows) of `block` into the buffer, all-reduce it once, write back."""
        total = sum(len(part) for _, part in block)
        if self._buffer.shape[0] < total:
            self._buffer = torch.empty(total, self._buffer.shape[1], device=self.device)
        befores, lo = [], 0
        for (table, base, sat_rows, _), part in block:
            before = base.index_select(0, part)
            pack_changes(table.data.index_select(0, part), before,
                         sat_rows[part] * self.cfg.curvature_weight,
                         out=self._buffer[lo : lo + len(part)])  # fmt: skip
            befores.append(before)
            lo += len(part)
        packed = self._buffer[:total]
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        lo = 0
        for ((table, base, _, norm), part), before in zip(block, befores):
            merged = before.add_(unpack_changes(packed[lo : lo + len(part)]))
            table.data.index_copy_(0, part, merged)
            base.index_copy_(0, part, merged)
            norm[part] = curvature_norms(merged)
            lo += len(part)


MERGE_BLOCK_BYTES = 64 << 20


_SHIFT = 1 << 40  # larger than any vocabulary


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
MERGE_WORDS_MANY, MERGE_WORDS_MANY_FROM = 1 << 16, 8  # the same from this many ranks
HOT_MERGE_WORDS = 1 << 14  # and between merges of the hot rows when sync.hot_every_steps is 0
CONTROL_WORDS = 1 << 22  # a rank's words between control all-reduces on GPUs (the same)
GPU_MERGE_TIME_SHARE = 0.1  # sync.merge_time_share's auto value on CUDA (off on CPU)
HOT_ROWS = 2000  # sync.hot_rows's auto value below HOT_ROWS_MANY_FROM ranks
HOT_ROWS_MANY, HOT_ROWS_MANY_FROM = 5000, 4


def resolved(cfg: Config, world_size: int, step: int) -> Config:
    """The config with the sync's auto settings resolved for steps of `step` words over all
    ranks: intervals of about MERGE_WORDS and HOT_MERGE_WORDS words, CONTROL_WORDS words a
    rank, and the hot rows. Stale changes add
    up with the words trained between merges, whatever the rank count, and the hot rows, which
    every rank updates, are what must be merged often: on 4 ranks, merging them every 16k
    words over all ranks instead of every 256k gained a point of analogies and 0.02 WordSim353
    (BENCHMARKS.md), while merging everything four times as often gained nothing measurable.
    More ranks leave more rows stale between full merges: from 4 ranks 5,000 hot rows keep
    analogies within a point of one process where 2,000 lost 1.6 at 8 ranks; on 2 ranks 2,000
    keep the time spent merging under a fifth. From 8 ranks everything is merged every 64k
    words: at 8 ranks 256k had gained 0.41 analogy points and 0.009 WordSim353 over 1M (six
    seeds), and 64k gained 0.91 more at dim 200, window 8, negative 10, sample 1e-5 (four
    seeds, each ahead), leaving the same at the benchmark setting (on GPUs, whose large steps
    merge every step anyway, `merge_time_share` spaces merges out where they cost more than
    their share of the time).
    The control all-reduce reads the loss from the device, which drains the GPU's queue: the
    GPU then idles while the host hands over and launches the next step. On GPUs it runs about
    every 4M words a rank (the idle time is each rank's, whatever their number, as is the
    time a stop request waits), where that costs a few percent (one H200 at the benchmark
    corpus's 219,538-word steps trained 67-72M words/s reading every step, 110-123M every 16:
    about 1.3 ms a read; BENCHMARKS.md, "The control read drained the GPU"), yet a stop
    request or a non-finite loss is seen within a second even at the torch step's 5M words/s;
    on CPUs, where the read costs nothing and a step takes up to seconds, after every step, so
    that a stop request is honoured after the step in flight whatever the step size (a
    scheduler's grace period is tens of seconds: 256k words at dim 200 take longer than that
    on a busy CPU)."""
    merge = MERGE_WORDS_MANY if world_size >= MERGE_WORDS_MANY_FROM else MERGE_WORDS
    every = cfg.sync.every_steps or max(1, round(merge / step))
    hot = cfg.sync.hot_every_steps or max(1, round(HOT_MERGE_WORDS / step))
    cuda = cfg.train.device.startswith("cuda")
    control = cfg.sync.control_every_steps or (
        max(1, round(CONTROL_WORDS * world_size / step)) if cuda else 1)
    share = cfg.sync.merge_time_share
    if share < 0:  # auto: merging by time only on GPUs, where a full merge is costly next to
        share = GPU_MERGE_TIME_SHARE if cuda else 0.0  # steps
    hot_rows = cfg.sync.hot_rows
    if hot_rows < 0:
        hot_rows = HOT_ROWS_MANY if world_size >= HOT_ROWS_MANY_FROM else HOT_ROWS
    sync = dataclasses.replace(cfg.sync, every_steps=every, hot_rows=hot_rows,
                               hot_every_steps=hot, control_every_steps=control,
                               merge_time_share=share)
    return dataclasses.replace(cfg, sync=sync)


def build(cfg: SyncConfig, world_size: int, tables: Embeddings) -> Sync:
    if world_size == 1:
        return OneProcess(1, tables.input.device)
    if cfg.strategy == "exact":
        return ExactSync(world_size, tables.input.device)
    return LocalSync(world_size, cfg, tables)
