"""word2vec.c's sampling, vectorised on the training device.

Frequent-word subsampling, the dynamic (shrinking) window and unigram^0.75 negatives, written as
whole-tensor operations over a block of tokens: no per-token Python loop.
"""

from __future__ import annotations

import torch

from w2vdist.config import ModelConfig


def keep_probabilities(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """word2vec.c's probability of keeping each word: (sqrt(f/t) + 1) * t/f, capped at 1.

    f is the word's share of the corpus and t the `sample` threshold; t = 0 keeps everything.
    """
    counts = counts.to(torch.float64)
    if sample <= 0:
        return torch.ones_like(counts, dtype=torch.float32)
    threshold = sample * counts.sum()
    keep = (torch.sqrt(counts / threshold) + 1) * threshold / counts
    return keep.clamp(max=1.0).to(torch.float32)


class NegativeSampler:
    """Draws negatives from the unigram distribution raised to `exponent` (word2vec.c: 0.75)."""

    def __init__(self, counts: torch.Tensor, exponent: float, device: torch.device) -> None:
        weights = counts.to(torch.float64) ** exponent
        cdf = torch.cumsum(weights, 0)
        self.cdf = (cdf / cdf[-1]).to(device)
        self.vocab_size = len(counts)
        self.exponent = exponent

    def probabilities(self) -> torch.Tensor:
        return torch.diff(self.cdf, prepend=self.cdf.new_zeros(1))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, device=self.cdf.device, dtype=torch.float64)
        ids = torch.searchsorted(self.cdf, u, right=True)
        return ids.clamp_(max=self.vocab_size - 1)


def subsample(
    tokens: torch.Tensor,
    sentence: torch.Tensor,
    keep_prob: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop frequent words before windowing, as word2vec.c does (windows then span the gaps)."""
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    kept = draw < keep_prob[tokens]
    return tokens[kept], sentence[kept]


def windows(
    tokens: torch.Tensor,
    sentence: torch.Tensor,
    window: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """word2vec.c's dynamic window around every token, inside its sentence.

    Each centre word draws its effective window b uniformly from 1..window; every word within b
    positions in the same sentence is a context. Returns `contexts` (N, 2*window) token ids and
    `mask` (N, 2*window) marking the real ones (the others hold a placeholder id).
    """
    n = tokens.numel()
    device = tokens.device
    reach = torch.randint(1, window + 1, (n, 1), generator=generator, device=device)
    offsets = torch.cat(
        [torch.arange(-window, 0, device=device), torch.arange(1, window + 1, device=device)]
    )
    pos = torch.arange(n, device=device).unsqueeze(1)
    ctx = pos + offsets
    mask = (ctx >= 0) & (ctx < n) & (offsets.abs() <= reach)
    ctx = ctx.clamp(0, max(n - 1, 0))
    mask &= sentence[ctx] == sentence.unsqueeze(1)
    return tokens[ctx], mask


class WindowSampler:
    """A batch of raw tokens to what the torch and Triton steps train on, from one generator.

    Built once per run from the vocabulary's counts; the compiled CPU kernel draws in C from
    the same keep probabilities (`keep`) and counts.
    """

    def __init__(
        self, counts: torch.Tensor, model: ModelConfig, generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.counts = counts
        self.keep = keep_probabilities(counts, model.sample).to(device)
        self.negatives = NegativeSampler(counts, model.ns_exponent, device)
        self.window = model.window
        self.negative = model.negative
        self.shared_negatives = model.shared_negatives
        self.generator = generator

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(centres, contexts, mask, negatives) as `sgns.gradients` takes them: whole windows
        with shared negatives, or one row per pair (mask None) with its own negatives."""
        g = self.generator
        centres, sentence = subsample(tokens.long(), sentence, self.keep, g)
        contexts, mask = windows(centres, sentence, self.window, g)
        if self.shared_negatives:
            busy = mask.any(1)
            centres, contexts, mask = centres[busy], contexts[busy], mask[busy]
        else:
            centres = centres.unsqueeze(1).expand_as(contexts)[mask]
            contexts, mask = contexts[mask].unsqueeze(1), None
        negatives = self.negatives.sample((centres.numel(), self.negative), g)
        return centres, contexts, mask, negatives
