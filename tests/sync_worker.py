"""Run under torchrun by tests/test_sync.py: checks the sync strategies on real process groups.

Every rank builds the same global batches from a shared seed and trains its own slice;
results are written to OUT/rank-R.pt for the test to compare.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from w2vdist.training import sync as sync_module
from w2vdist.training.config import SyncConfig
from w2vdist.training.sgns import Embeddings, apply, gradients
from w2vdist.training.sync import build as build_sync

# Merges go through the pack buffer 7 rows at a time (7 does not divide the 40 rows), so the
# merge tests check the blocked merge against the whole-table arithmetic.
sync_module.MERGE_BLOCK_BYTES = 7 * (8 + 1) * 4

VOCAB, DIM, PAIRS, K, STEPS, LR = 200, 8, 96, 3, 6, 0.1


def global_batches():
    g = torch.Generator().manual_seed(123)
    for _ in range(STEPS):
        yield (
            torch.randint(0, VOCAB, (PAIRS,), generator=g),
            torch.randint(0, VOCAB, (PAIRS,), generator=g),
            torch.randint(0, VOCAB, (PAIRS, K), generator=g),
        )


def slices(world: int) -> list[slice]:
    """Uneven slices of each global batch, one per rank, so that padding is exercised."""
    bounds = torch.linspace(0, PAIRS, world + 1).long().tolist()
    bounds[1] = max(1, bounds[1] - 7)
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def main(
    strategy: str, curvature_weight: float, every_steps: int, damping: float, out: Path,
    hot_rows: int = 0,
) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    tables = Embeddings(VOCAB, DIM, torch.Generator().manual_seed(7))
    tables.output.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(8))
    cfg = SyncConfig(
        strategy=strategy, every_steps=every_steps, hot_rows=hot_rows, hot_every_steps=1,
        curvature_weight=curvature_weight,
    )
    sync = build_sync(cfg, world, tables)
    identical_after, hot_identical_after = [], []
    distinct_rows = 0  # what `exact` should send: one row per distinct index and table
    for step, (centres, contexts, negatives) in enumerate(global_batches(), 1):
        # Uneven slices: rank r takes a different share, so padding is exercised.
        part = slices(world)[rank]
        grads = gradients(tables, centres[part], contexts[part], negatives[part])
        targets = torch.cat([centres[part], negatives[part].flatten()])
        distinct_rows += len(contexts[part].unique()) + len(targets.unique())
        apply(tables, sync.exchange(grads), LR, damping=damping, saturation=sync.saturation)
        sync.after_step(tables, step)
        gathered = [torch.empty_like(tables.input.data) for _ in range(world)]
        dist.all_gather(gathered, tables.input.data)
        same = all(torch.equal(gathered[0], t) for t in gathered)
        gathered_out = [torch.empty_like(tables.output.data) for _ in range(world)]
        dist.all_gather(gathered_out, tables.output.data)
        same = same and all(torch.equal(gathered_out[0], t) for t in gathered_out)
        identical_after.append(same)
        hot_identical_after.append(
            all(torch.equal(gathered[0][:hot_rows], t[:hot_rows]) for t in gathered)
            and all(torch.equal(gathered_out[0][:hot_rows], t[:hot_rows]) for t in gathered_out)
        )
    torch.save(
        {
            "input": tables.input.data,
            "output": tables.output.data,
            "identical_after": identical_after,
            "hot_identical_after": hot_identical_after,
            "bytes_sent": sync.bytes_sent,
            "distinct_rows": distinct_rows,
        },
        out / f"rank-{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    strategy, curvature_weight, every_steps, damping, out, hot_rows = sys.argv[1:]
    main(strategy, float(curvature_weight), int(every_steps), float(damping), Path(out),
         int(hot_rows))
