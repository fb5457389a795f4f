"""The Triton step's crowd on a GPU, emulated on CPU: what its damping (`crowd.Damping`) is for.

    python benchmarks/gpu_crowd.py --in-flight 2112 --damping 0.1 -- \
        --data.shards deb --train.run_dir RUN [more `w2vdist train` flags]

On a GPU every resident program reads its rows, computes, then adds its updates, so each update
misses those of about `in_flight` centres (its chunk and the chunks trained alongside it: one
program per SM at 16 centres each is 2,112 centres on an H100 or H200). No GPU is needed to see
what that does to the vectors: this script trains with the torch backend's pairs and negatives
(windows with a centre's negatives shared, as the kernel's default, or one set of M per chunk
of 16 centres, each at K / M: `--share-negatives chunk`, M the kernel's 16 at K = 5;
`--negatives M` sets M, and in centre mode draws M a centre at K / M), the step's kept centres
`in_flight` at a time, each piece's gradients from the tables as the pieces before it left
them, and each row's update divided by 1 + damping x lr x its crowd estimated as the kernel
does (`crowd.Damping`: the row's curvature per centre trained before the piece, decayed over
steps, x in_flight; `--damping 0`: plain Hogwild). It runs `w2vdist train` in this process with
the torch step replaced by this one; pass the Triton step's words per step
(`--optim.batch_words 262144`) and rate (`--optim.alpha 0.05`) to compare with the compiled
kernel, which trains pair by pair and misses nothing. A model of the kernel, not the kernel: a
piece's centres all read at once, where a GPU's programs start one after another. Under
torchrun with `--sync.strategy local` each rank emulates one GPU of a several-GPU run (the
saturation its merges weigh by recorded as the torch step records it).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import torch

from w2vdist import cli
from w2vdist.training import backends
from w2vdist.training.backends.crowd import Damping
from w2vdist.training.backends.tiling import CHUNK, chunk_negatives
from w2vdist.training.merge import Saturation
from w2vdist.training.sampling import WindowSampler
from w2vdist.training.sgns import Embeddings, gradients


class CrowdStep:
    """A GPU's Triton step as CPU torch ops: pieces of `in_flight` kept centres, damped."""

    def __init__(self, sampler: WindowSampler, tables: Embeddings, in_flight: int,
                 damping: float, chunk_negatives: int = 0, negative_weight: float = 1.0,
                 saturation: Saturation | None = None) -> None:
        self.sampler, self.tables, self.saturation = sampler, tables, saturation
        self.in_flight = in_flight
        self.chunk_negatives, self.negative_weight = chunk_negatives, negative_weight
        # The kernel's totals and their decay between steps, not a copy of them.
        self.damping = Damping.zeros(damping, tables.input.shape[0], tables.input.device)

    def __call__(self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float,
                 lr_end: float) -> tuple[torch.Tensor, torch.Tensor]:
        centres, contexts, mask, negatives = self.sampler(tokens, sentence)
        kept = centres.shape[0]
        if self.chunk_negatives:  # `share_negatives chunk`: the first M the chunk drew, for all
            k = negatives.shape[1]
            start = torch.arange(kept) // CHUNK * CHUNK * k
            at = (start[:, None] + torch.arange(self.chunk_negatives)).clamp_(max=kept * k - 1)
            negatives = negatives.reshape(-1)[at]
        loss = torch.zeros((), dtype=torch.float64)
        pairs = torch.zeros((), dtype=torch.int64)
        damping = self.damping
        for lo in range(0, kept, self.in_flight):
            piece = slice(lo, lo + self.in_flight)
            lr = lr_start + (lr_end - lr_start) * (lo + self.in_flight / 2) / kept
            grads = gradients(self.tables, centres[piece], contexts[piece], negatives[piece],
                              mask[piece], self.negative_weight)  # fmt: skip
            per_centre = lr * damping.factor * self.in_flight / max(float(damping.centres), 1.0)
            sat = self.saturation
            sums = (sat.sat_in, sat.sat_out) if sat else (None, None)
            for table, rows, crowd, summed in zip((self.tables.input, self.tables.output),
                                                  (grads.input, grads.output), damping.crowd,
                                                  sums):
                factor = 1.0 / (1.0 + per_centre * crowd[rows.index])
                table.data.index_add_(0, rows.index, rows.values * factor.unsqueeze(1),
                                      alpha=lr)
                crowd.index_add_(0, rows.index, rows.curvature)
                if summed is not None:  # what `local` merges weigh the ranks' changes by
                    summed.index_add_(0, rows.index, rows.curvature, alpha=lr)
            damping.centres += min(self.in_flight, kept - lo)
            loss += grads.loss
            pairs += grads.pairs
        damping.advance(torch.tensor(kept))
        return loss, pairs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in-flight", type=int, default=2112,
                   help="centres whose updates each update misses")
    p.add_argument("--damping", type=float, default=0.1, help="as optim.damping; 0: none")
    p.add_argument("--share-negatives", choices=("centre", "chunk"), default="centre",
                   help=f"the kernel's negatives: a centre's own, or one set per {CHUNK} centres")
    p.add_argument("--negatives", type=int, default=0,
                   help="M, the size of a centre's set (or a chunk's), each weighted K/M; "
                        "default the kernel's: K, and `chunk_negatives(K)` a chunk")
    p.add_argument("train", nargs=argparse.REMAINDER, help="-- then `w2vdist train` flags")
    args = p.parse_args()
    flags = args.train[1:] if args.train[:1] == ["--"] else args.train
    if args.negatives < 0:
        p.error("--negatives must be >= 0 (0: the kernel's)")

    def build(cfg, tables, counts, sync, generator):  # noqa: ANN001, ANN202 (backends.build)
        counts_t = torch.from_numpy(np.asarray(counts, dtype=np.int64))
        k, chunk = cfg.model.negative, args.share_negatives == "chunk"
        m = args.negatives or (chunk_negatives(k) if chunk else k)
        if chunk and m > CHUNK * k:  # a chunk's M come from the K its CHUNK centres drew
            raise SystemExit(f"gpu_crowd.py: --negatives {m} is more than a chunk draws "
                             f"({CHUNK} x model.negative {k})")
        model = cfg.model if chunk else dataclasses.replace(cfg.model, negative=m)
        sampler = WindowSampler(counts_t, model, generator, tables.input.device)
        return CrowdStep(sampler, tables, args.in_flight, args.damping, m if chunk else 0, k / m,
                         sync.saturation)

    backends.build = build  # Session.build asks the module for the step
    return cli.main(["train", "--train.backend", "torch", "--train.device", "cpu", *flags])


if __name__ == "__main__":
    sys.exit(main())
