"""Sync strategies on real torchrun process groups (gloo): exact equals one process on the
global batch, local agrees right after each merge and merges as configured."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.sync_worker import global_batches
from w2vdist.config import Config, OptimConfig, SyncConfig
from w2vdist.sgns import Embeddings, apply, gradients
from w2vdist.sync import with_merge_interval

WORKER = Path(__file__).with_name("sync_worker.py")


def _torchrun(
    nproc: int, strategy: str, out: Path, merge_scale: float = 2.0, every_steps: int = 3,
    damping: float = 1.0,
) -> list[dict]:
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={nproc}", str(WORKER), strategy, str(merge_scale), str(every_steps),
         str(damping), str(out)],
        check=True, timeout=180, cwd=Path(__file__).parent.parent,
    )
    return [torch.load(out / f"rank-{r}.pt") for r in range(nproc)]


def _one_process(lr: float = 0.1, damping: float = 1.0) -> Embeddings:
    tables = Embeddings(40, 8, torch.Generator().manual_seed(7))
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


@pytest.mark.parametrize("merge_scale, lr", [(2.0, 0.1), (4.0, 0.1), (1.0, 0.05), (0.5, 0.025)])
def test_local_merge_every_step_scales_the_mean_change(tmp_path, merge_scale, lr):
    """Merging after every step, undamped: each rank's change is lr times its slice's gradient
    at the same tables, so with 2 ranks a merge scale of 2 (the sum) is one process on the
    global batch (a larger scale is capped there), and a scale s the same at lr * s / 2."""
    results = _torchrun(2, "local", tmp_path, merge_scale=merge_scale, every_steps=1, damping=0.0)
    reference = _one_process(lr=lr, damping=0.0)
    for r in results:
        assert all(r["identical_after"])
        torch.testing.assert_close(r["input"], reference.input.data, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["output"], reference.output.data, rtol=1e-5, atol=1e-6)


def test_merge_interval_defaults_to_about_a_million_words_over_all_ranks():
    cfg = Config(sync=SyncConfig(strategy="local"), optim=OptimConfig(batch_words=65536))
    assert with_merge_interval(cfg, 2).sync.every_steps == 8
    assert with_merge_interval(cfg, 64).sync.every_steps == 1
    small = dataclasses.replace(cfg, optim=OptimConfig(batch_words=4096))
    assert with_merge_interval(small, 4).sync.every_steps == 64
    chosen = dataclasses.replace(cfg, sync=SyncConfig(strategy="local", every_steps=5))
    assert with_merge_interval(chosen, 2).sync.every_steps == 5
    exact = dataclasses.replace(cfg, sync=SyncConfig(strategy="exact"))
    assert with_merge_interval(exact, 2).sync.every_steps == 0
