"""The reference step: sampled on the device, the sparse SGNS gradient, exchanged, applied.

A step's gradient is computed in pieces of PIECE_CENTRES kept words, all from the same
tables, each piece coalesced to one row per index as it comes (`sgns.pieced`): the same
step, but a 1M-word step holds its distinct rows instead of every contribution (about 13 GB
at dim 100). Steps of that size are above what the batch-synchronous path trains well
(`batch_warning`). Coalescing (`torch.unique`) reads its size from the device, the step's only
host synchronisations (`host_syncs`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from w2vdist.training.sampling import WindowSampler
from w2vdist.training.sgns import Embeddings, apply, gradients, pieced
from w2vdist.training.sync import Sync


PIECE_CENTRES = 1 << 15


def host_syncs(words: int) -> int:
    """The most host synchronisations a step of `words` raw words makes: once per table for
    the step, and in a step of several pieces once per table a piece too (6 a 65,536-word
    step, counted on an H200)."""
    pieces = -(-words // PIECE_CENTRES)
    return 2 + (2 * pieces if pieces > 1 else 0)


def step_bytes(words: int, window: int, negative: int, dim: int, per_pair: bool) -> int:
    """At least what a torch step of `words` raw words holds at its peak: the sampler's context
    slots (int64 and a mask) and negative draws (a slot, a coin and the table's pair, 32
    bytes) for the whole batch, then a piece's gathered rows, their gradients and six score
    tensors (`sgns.gradients`). At window 1,000 and 980 words a step it says 1.8 GB; the run's
    resident memory grew 2.6 GB over window 5's."""
    span = max(1, min(window, words - 1))  # `sampling.windows`
    slots = words * 2 * span
    rows, contexts = (slots, 1) if per_pair else (words, 2 * span)
    piece = min(rows, PIECE_CENTRES)
    targets = negative + 1
    sampled = slots * 9 + rows * negative * 32
    return sampled + 4 * piece * (2 * contexts * dim + 2 * targets * dim + 6 * contexts * targets)


@dataclass
class TorchStep:
    sampler: WindowSampler
    tables: Embeddings
    sync: Sync
    damping: float

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        centres, contexts, mask, negatives = self.sampler(tokens, sentence)
        kept = centres.shape[0]  # the batch's size, not its data: no host sync
        if kept <= PIECE_CENTRES:
            grads = gradients(self.tables, centres, contexts, negatives, mask)
        else:
            pieces = (slice(i, i + PIECE_CENTRES) for i in range(0, kept, PIECE_CENTRES))
            grads = pieced(gradients(self.tables, centres[p], contexts[p], negatives[p], mask[p])
                           for p in pieces)
        grads = self.sync.exchange(grads)
        lr = 0.5 * (lr_start + lr_end)
        apply(self.tables, grads, lr, self.damping, self.sync.saturation)
        return grads.loss, grads.pairs
