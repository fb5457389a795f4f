"""The Triton step as training runs it: subsampling compacted on the device, a seed from the
run's generator, one launch of the kernel (`triton.py`), at a rate read from the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from w2vdist.training.backends.crowd import Damping
from w2vdist.training.backends.triton import sgns_chunks
from w2vdist.training.sampling import subsample

if TYPE_CHECKING:
    from w2vdist.training.merge import Saturation
    from w2vdist.training.sampling import WindowSampler
    from w2vdist.training.sgns import Embeddings


@dataclass
class TritonStep:
    """Subsampling compacted on the device, a seed from the run's generator, one launch.

    `rate` then `train`: the rate goes into a device buffer that the kernel reads, so `train`
    holds no per-step value (a CUDA graph could capture it once and replay it)."""

    sampler: WindowSampler
    tables: Embeddings
    saturation: Saturation | None
    share: str
    damping: Damping | None = None
    precision: str = "tf32"

    def __post_init__(self) -> None:
        self.lr = torch.zeros(2, device=self.tables.input.device)

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.rate(lr_start, lr_end)
        return self.train(tokens, sentence)

    def rate(self, lr_start: float, lr_end: float) -> None:
        """The next step's rate, from its first kept word to after its last: two fills, which
        queue like kernels (a copy from host memory could wait for the device)."""
        self.lr[0].fill_(lr_start)
        self.lr[1].fill_(lr_end)

    def train(
        self, tokens: torch.Tensor, sentence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step at the rate last set: (loss, pairs), 0-d on the device."""
        s, g = self.sampler, self.sampler.generator
        kept_tokens, kept_sentence, kept = subsample(tokens.long(), sentence, s.keep, g)
        seed = torch.randint(2**62, (1,), generator=g, device=tokens.device)
        result = sgns_chunks(
            self.tables.input.data, self.tables.output.data, kept_tokens, kept_sentence, kept,
            s.negatives.table, seed, self.lr, s.window, s.negative, self.share,
            self.saturation, self.precision, damping=self.damping,
        )
        if self.damping is not None:
            self.damping.advance(kept)
        return result

