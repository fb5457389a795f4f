"""The reference step: sampled on the device, the sparse SGNS gradient, exchanged, applied."""

from __future__ import annotations

import torch

from w2vdist.training.sampling import WindowSampler
from w2vdist.training.sgns import Embeddings, apply, gradients
from w2vdist.training.sync import Sync


class TorchStep:
    def __init__(
        self, sampler: WindowSampler, tables: Embeddings, sync: Sync, damping: float
    ) -> None:
        self.sampler = sampler
        self.tables = tables
        self.sync = sync
        self.damping = damping

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        centres, contexts, mask, negatives = self.sampler(tokens, sentence)
        grads = self.sync.exchange(gradients(self.tables, centres, contexts, negatives, mask))
        lr = 0.5 * (lr_start + lr_end)
        apply(self.tables, grads, lr, self.damping, self.sync.saturation)
        return grads.loss, grads.pairs
