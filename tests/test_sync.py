"""Sync strategies on real torchrun process groups (gloo): exact equals one process on the
global batch, local agrees right after each merge and merges as configured."""

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.sync_worker import DIM, LR, VOCAB, global_batches, slices
from w2vdist.errors import UsageError
from w2vdist.training.backends import batch_words
from w2vdist.training.config import Config, OptimConfig, SyncConfig, TrainConfig
from w2vdist.training.distributed import DeviceClock
from w2vdist.training.merge import pack_changes, unpack_changes
from w2vdist.training.sgns import Embeddings, apply, gradients
from w2vdist.training.sync import LocalSync, resolved

WORKER = Path(__file__).with_name("sync_worker.py")

BIG = 10**12  # corpus tokens: a corpus too large to cut the default step


def _torchrun(
    nproc: int, strategy: str, out: Path, curvature_weight: float = 0.1, every_steps: int = 3,
    damping: float = 1.0, hot_rows: int = 0,
) -> list[dict]:
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={nproc}", str(WORKER), strategy, str(curvature_weight),
         str(every_steps), str(damping), str(out), str(hot_rows)],
        check=True, timeout=180, cwd=Path(__file__).parent.parent,
    )
    return [torch.load(out / f"rank-{r}.pt") for r in range(nproc)]


def _one_process(lr: float = 0.1, damping: float = 1.0) -> Embeddings:
    tables = Embeddings(VOCAB, DIM, torch.Generator().manual_seed(7))
    tables.output.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(8))
    for centres, contexts, negatives in global_batches():
        apply(tables, gradients(tables, centres, contexts, negatives), lr, damping=damping)
    return tables


@pytest.mark.parametrize("nproc", [2, 3])
def test_exact_sync_keeps_ranks_identical_and_equals_one_process(tmp_path, nproc):
    results = _torchrun(nproc, "exact", tmp_path)
    assert all(all(r["identical_after"]) for r in results)
    reference = _one_process()
    for r in results:
        torch.testing.assert_close(r["input"], reference.input.data, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["output"], reference.output.data, rtol=1e-5, atol=1e-6)
        # Duplicate rows are summed before sending: an int64 index, DIM values and one
        # curvature per distinct row, to each of the other ranks.
        assert r["bytes_sent"] == (nproc - 1) * r["distinct_rows"] * (8 + 4 * (8 + 1))


def test_local_sync_agrees_right_after_each_merge(tmp_path):
    results = _torchrun(2, "local", tmp_path)
    # every_steps=3: identical after steps 3 and 6 only (steps are 1-based).
    assert results[0]["identical_after"] == [False, False, True, False, False, True]
    torch.testing.assert_close(results[0]["input"], results[1]["input"], rtol=0, atol=0)
    # Local SGD is not the global batch: it must differ from the one-process run.
    assert not torch.allclose(results[0]["input"], _one_process().input.data)


@pytest.mark.parametrize("curvature_weight", [0.0, 0.5])
def test_local_merge_every_step_weighs_each_rank_by_its_saturation(tmp_path, curvature_weight):
    """Merging after every step, undamped: each rank's change is lr times its slice's gradient
    at the same tables and its saturation lr times the slice's curvature per row; the merge is
    sum_r (1 + c_r) delta_r / (1 + sum_r c_r) with c_r scaled by the curvature weight. Weight 0
    sums the changes, which is one process on the global batch."""
    results = _torchrun(2, "local", tmp_path, curvature_weight, every_steps=1, damping=0.0)
    tables = Embeddings(VOCAB, DIM, torch.Generator().manual_seed(7))
    tables.output.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(8))
    for batch in global_batches():
        packs = []
        for part in slices(2):
            centres, contexts, negatives = (t[part] for t in batch)
            grads = gradients(tables, centres, contexts, negatives)
            rank_packs = []
            for table, rows in ((tables.input, grads.input), (tables.output, grads.output)):
                delta = torch.zeros_like(table).index_add_(0, rows.index, rows.values, alpha=LR)
                sat = torch.zeros(len(table)).index_add_(0, rows.index, rows.curvature, alpha=LR)
                rank_packs.append(pack_changes(table + delta, table, sat * curvature_weight))
            packs.append(rank_packs)
        for which, table in enumerate((tables.input, tables.output)):
            table.data += unpack_changes(packs[0][which] + packs[1][which])
    for r in results:
        assert all(r["identical_after"])
        torch.testing.assert_close(r["input"], tables.input.data, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["output"], tables.output.data, rtol=1e-5, atol=1e-6)
    if curvature_weight == 0:
        reference = _one_process(lr=LR, damping=0.0)
        torch.testing.assert_close(results[0]["input"], reference.input.data, rtol=1e-5, atol=1e-6)


def test_hot_rows_merge_every_step_and_everything_every_third(tmp_path):
    """Hot merges (rows [0, 50) of both tables, every step, overlapped with the next step) and
    full merges (every 3 steps) on real ranks equal the merge arithmetic run here on two
    copies of the tables: a hot merge packs each rank's change as of its step, and the merged
    change lands after the next step, under what each rank trained meanwhile. The worker's
    7-row pack blocks cut across both tables."""
    hot, weight = 50, 0.5
    results = _torchrun(2, "local", tmp_path, weight, every_steps=3, damping=0.0, hot_rows=hot)
    assert results[0]["identical_after"] == [False, False, True, False, False, True]
    assert results[0]["hot_identical_after"] == [False, False, True, False, False, True]
    start = Embeddings(VOCAB, DIM, torch.Generator().manual_seed(7))
    start.output.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(8))
    base = [start.input.data.clone(), start.output.data.clone()]
    ranks = []
    for _ in range(2):
        tables = Embeddings(VOCAB, DIM)
        tables.input.data.copy_(base[0])
        tables.output.data.copy_(base[1])
        ranks.append(([tables.input.data, tables.output.data], [torch.zeros(VOCAB)] * 2))
    ranks = [(t, [s.clone() for s in sat]) for t, sat in ranks]

    def packs(rows: int, which: int) -> list[torch.Tensor]:
        return [pack_changes(t[which][:rows], base[which][:rows], sat[which][:rows] * weight)
                for t, sat in ranks]

    pending = None  # (summed packs, each rank's snapshot) per table
    for step, batch in enumerate(global_batches(), 1):
        for (tables, sat), part in zip(ranks, slices(2)):
            model = Embeddings(VOCAB, DIM)
            model.input.data, model.output.data = tables
            grads = gradients(model, *(t[part] for t in batch))
            for table, rows, s in zip(tables, (grads.input, grads.output), sat):
                s.index_add_(0, rows.index, rows.curvature, alpha=LR)
                table.index_add_(0, rows.index, rows.values, alpha=LR)
        if pending is not None:  # the last step's hot merge lands
            for which, (summed, snapshots) in enumerate(pending):
                merged = base[which][:hot] + unpack_changes(summed)
                for (tables, _), snapshot in zip(ranks, snapshots):
                    tables[which][:hot] += merged - snapshot
                base[which][:hot] = merged
            pending = None
        rows = VOCAB if step % 3 == 0 else hot
        merging = [(sum(packs(rows, which)), [t[which][:rows].clone() for t, _ in ranks])
                   for which in range(2)]  # fmt: skip
        for _, sat in ranks:
            for s in sat:
                s[:rows] = 0
        if rows == hot:
            pending = merging
            continue
        for which, (summed, _) in enumerate(merging):
            base[which] += unpack_changes(summed)
            for tables, _ in ranks:
                tables[which][:] = base[which]
    for r in results:
        torch.testing.assert_close(r["input"], base[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["output"], base[1], rtol=1e-5, atol=1e-6)


def test_merge_keeps_a_lone_change_whole_and_does_not_multiply_agreed_ones():
    """Per row: a change only one rank made is kept in full, whatever its saturation; the same
    change made by every rank is not multiplied by the rank count once the rows are saturated;
    unsaturated rows add up, as if the ranks had trained one after another."""
    ranks, dim = 4, 3
    base = torch.zeros(3, dim)
    lone = torch.tensor([1.0, -2.0, 0.5])
    same = torch.tensor([0.3, 0.1, -0.2])
    packs = []
    for rank in range(ranks):
        rows = base.clone()
        rows[0] = lone if rank == 0 else 0.0  # row 0: rank 0 alone, saturated
        rows[1] = same  # row 1: every rank the same change, saturated
        rows[2] = same  # row 2: every rank the same change, lightly touched
        saturation = torch.tensor([50.0 if rank == 0 else 0.0, 1e6, 0.0])
        packs.append(pack_changes(rows, base, saturation))
    merged = unpack_changes(torch.stack(packs).sum(0))
    torch.testing.assert_close(merged[0], lone)
    torch.testing.assert_close(merged[1], same, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(merged[2], ranks * same)
    # Plain averaging would have divided the lone change by the rank count.
    assert not torch.allclose(merged[0], lone / ranks)


def resolved_for(cfg: Config, ranks: int) -> Config:
    """The sync settings for `ranks` ranks stepping `optim.batch_words` each."""
    return resolved(cfg, ranks, ranks * cfg.optim.batch_words)


def test_sync_intervals_default_to_words_over_all_ranks():
    """Full merges about every 1M words over all ranks (64k from 8 ranks), the hot rows about
    every 16k (at least every step), the control all-reduce about every 4M a rank on GPUs and
    every step on CPUs."""
    cfg = Config(sync=SyncConfig(strategy="local"), optim=OptimConfig(batch_words=65536))
    assert resolved_for(cfg, 2).sync.every_steps == 8
    assert resolved_for(cfg, 2).sync.hot_every_steps == 1
    assert resolved_for(cfg, 64).sync.every_steps == 1
    small = dataclasses.replace(cfg, optim=OptimConfig(batch_words=2048))
    assert resolved_for(small, 4).sync.every_steps == 128
    assert resolved_for(small, 8).sync.every_steps == 4  # 64k words from 8 ranks
    assert resolved_for(small, 4).sync.hot_every_steps == 2
    on_gpu = dataclasses.replace(small, train=TrainConfig(device="cuda"))
    assert resolved_for(on_gpu, 4).sync.control_every_steps == 2048  # a rank's words
    assert resolved_for(on_gpu, 1).sync.control_every_steps == 2048
    gpu_step = dataclasses.replace(on_gpu, optim=OptimConfig(batch_words=262144))
    assert resolved_for(gpu_step, 1).sync.control_every_steps == 16  # the default GPU step
    assert resolved_for(gpu_step, 16).sync.control_every_steps == 16
    assert resolved_for(small, 4).sync.control_every_steps == 1  # on CPU, after every step
    assert resolved_for(cfg, 8).sync.control_every_steps == 1
    chosen = dataclasses.replace(cfg, sync=SyncConfig(strategy="local", every_steps=5))
    assert resolved_for(chosen, 2).sync.every_steps == 5
    exact = dataclasses.replace(cfg, sync=SyncConfig(strategy="exact"))
    assert resolved_for(exact, 2).sync.every_steps == 8  # resolved, unused by exact


def test_hot_rows_default_grows_with_the_rank_count():
    """2,000 hot rows on 2-3 ranks (merging time), 5,000 from 4 (staleness); a chosen count,
    0 included, stays."""
    cfg = Config(sync=SyncConfig(strategy="local"), optim=OptimConfig(batch_words=4096))
    assert [resolved_for(cfg, n).sync.hot_rows for n in (2, 3, 4, 16)] == [2000, 2000, 5000, 5000]
    for chosen in (0, 300):
        fixed = dataclasses.replace(cfg, sync=SyncConfig(strategy="local", hot_rows=chosen))
        assert resolved_for(fixed, 8).sync.hot_rows == chosen
    with pytest.raises(UsageError, match="sync.hot_rows"):
        SyncConfig(hot_rows=-2)


def test_compiled_kernel_steps_shrink_with_ranks_so_hot_rows_merge_often():
    cfg = Config(sync=SyncConfig(strategy="local"), train=TrainConfig(backend="cpu-kernel"))
    # One process has nothing to merge; N ranks take 16k words a step between them, so that
    # the hot rows merge every 16k words over all ranks.
    assert [batch_words(cfg, w, BIG) for w in (1, 2, 4, 8, 16)] == [65536, 8192, 4096, 2048, 1024]
    assert batch_words(cfg, 128, BIG) == 1024
    torch_cfg = dataclasses.replace(cfg, train=TrainConfig(backend="torch"))
    assert batch_words(torch_cfg, 8, BIG) == 4096


def test_gpu_steps_shrink_with_ranks_down_to_what_fills_a_gpu():
    """One GPU takes 262,144 words a step; N GPUs under `local` share 524,288, each at least
    16,384 (the ranks' tables drift apart for a whole step: BENCHMARKS.md)."""
    cfg = Config(sync=SyncConfig(strategy="local"), train=TrainConfig(backend="triton"))
    assert [batch_words(cfg, w, BIG) for w in (1, 2, 4, 8, 16, 32, 64)] == [
        262144, 262144, 131072, 65536, 32768, 16384, 16384]
    chosen = dataclasses.replace(cfg, optim=OptimConfig(batch_words=1 << 20))
    assert batch_words(chosen, 8, BIG) == 1 << 20


def test_a_small_corpus_gets_steps_of_a_32nd_of_it():
    """A default step larger than 1/32 of the corpus would make an "epoch" train up to a step
    more than the corpus (a 100,000-word corpus in one GPU's 262,144-word steps: 2.6 passes);
    a step asked for is kept."""
    gpu = Config(sync=SyncConfig(strategy="local"), train=TrainConfig(backend="triton"))
    assert batch_words(gpu, 1, 100_000) == 3125 and batch_words(gpu, 4, 100_000) == 781
    assert batch_words(gpu, 1, 32 * (1 << 18)) == 1 << 18
    assert batch_words(gpu, 8, 1000) == 256  # at least 256 words a rank
    kernel = dataclasses.replace(gpu, train=TrainConfig(backend="cpu-kernel"))
    assert batch_words(kernel, 1, 1_000_000) == 31_250
    chosen = dataclasses.replace(gpu, optim=OptimConfig(batch_words=1 << 18))
    assert batch_words(chosen, 1, 100_000) == 1 << 18


def test_local_merges_send_only_the_rows_some_rank_changed(tmp_path):
    """A merge all-reduces a byte per row and table (which rows any rank changed), then only
    those rows: here the distinct contexts (input table) and centres and negatives (output
    table) of the three global batches before each merge, whichever rank trained them."""
    results = _torchrun(2, "local", tmp_path)  # every_steps=3: merges after steps 3 and 6
    batches = list(global_batches())
    expected = 0
    for first in (0, 3):
        interval = batches[first : first + 3]
        inputs = torch.cat([contexts.flatten() for _, contexts, _ in interval]).unique()
        outputs = torch.cat([torch.cat([c.flatten(), n.flatten()]) for c, _, n in interval])
        rows = len(inputs) + len(outputs.unique())
        assert rows < 2 * VOCAB
        expected += 2 * VOCAB + rows * (DIM + 1) * 4  # ring all-reduce on 2 ranks: x 1
    assert [r["bytes_sent"] for r in results] == [expected, expected]


def test_full_merges_by_time_space_out_and_close_in_again():
    """sync.merge_time_share: judged at the first control step after a full merge (the
    summed seconds merging, and elapsed): over the share, merges space out in proportion;
    under half of it, they close in again, never below sync.every_steps; between, and in
    windows without a full merge, nothing changes."""
    tables = Embeddings(VOCAB, DIM, torch.Generator().manual_seed(7))
    cfg = SyncConfig(strategy="local", every_steps=4, hot_rows=0, hot_every_steps=1,
                     merge_time_share=0.1)
    sync = LocalSync(2, cfg, tables)  # no collective is made here: decisions only
    schedule = []
    for merging, elapsed in [(0.5, 1.0), (0.0, 3.0), (0.3, 4.0), (0.05, 4.0), (0.001, 4.0),
                             (0.02, 0.1)]:
        sync._on_control([merging, elapsed])
        schedule.append(sync.every_steps)
    # 50% -> 5x; no merge; 7.5%: kept; 1.25% -> to 2.5% (20 -> 5); 0.025% -> floor 4; 20%
    assert schedule == [20, 20, 20, 5, 4, 8]


def test_the_sync_clock_counts_only_what_it_timed():
    """On the host (CPU ranks) the clock sums the spans between start and stop, and nothing
    between them; on CUDA it times the same spans with events (gpu_check's NCCL line checks
    that a merge does not count the work queued before it)."""
    clock = DeviceClock(torch.device("cpu"))
    clock.start()
    time.sleep(0.02)
    clock.stop()
    time.sleep(0.3)  # not timed
    clock.start()
    clock.stop()
    assert 0.02 <= clock.seconds < 0.3
