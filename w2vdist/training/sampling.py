"""word2vec.c's sampling, vectorised on the training device, in fixed shapes.

Frequent-word subsampling, the dynamic (shrinking) window and unigram^0.75 negatives, written as
whole-tensor operations over a block of tokens: no per-token Python loop, and no operation
whose output size depends on the data (boolean indexing, `nonzero`, reading a count back), so
a step never waits for the device to tell the host a size: kept words are compacted to the
front of a buffer as long as the batch, with their count left on the device, and what a
window does not reach is masked, not dropped.
"""

from __future__ import annotations

import functools
import operator

import numpy as np
import torch

from w2vdist.training.config import ModelConfig


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


class AliasTable:
    """Walker's alias method for unigram^`exponent` negatives (word2vec.c: 0.75): a draw is one
    uniform slot and one coin, two reads, where a CDF search makes about log2(V) dependent
    reads. `table` is int32[V, 2]: slot i keeps i when a 31-bit coin is below `table[i, 0]`,
    else the draw is `table[i, 1]`. The compiled CPU kernel and the Triton kernel draw from
    this same table; the torch step draws here."""

    def __init__(self, counts: torch.Tensor, exponent: float, device: torch.device) -> None:
        self.table = alias_table(counts.numpy(), exponent).to(device)
        self.vocab_size = len(counts)
        self.exponent = exponent

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        device = self.table.device
        slot = torch.randint(self.vocab_size, shape, generator=generator, device=device)
        coin = torch.randint(2**31, shape, generator=generator, device=device)
        row = self.table[slot]
        return torch.where(coin < row[..., 0], slot, row[..., 1].long())


def alias_table(counts: np.ndarray, exponent: float = 0.75) -> torch.Tensor:
    """The alias table of count^exponent, int32[V, 2] (`AliasTable`): built in C when the CPU
    kernel is available (V can be millions), else by the same Vose construction here."""
    from w2vdist.training.backends import cpu

    weights = np.ascontiguousarray(np.asarray(counts, dtype=np.float64) ** exponent)
    if weights.ndim != 1 or not 0 < weights.size < 2**31 or not weights.sum() > 0:
        raise ValueError("alias_table needs a 1-D array of counts, at least one positive")
    if cpu.available():
        return cpu.alias_table(weights)
    n = len(weights)
    # Summed one after another and scaled in C's order: the same table (Python 3.12's `sum`
    # compensates its rounding, which C's loop does not).
    total = functools.reduce(operator.add, weights.tolist(), 0.0)
    scaled = [w * n / total for w in weights.tolist()]
    table = np.empty((n, 2), dtype=np.int64)
    table[:, 0], table[:, 1] = 2**31 - 1, np.arange(n)  # full slots keep themselves
    small = [i for i, q in enumerate(scaled) if q < 1.0]
    large = [i for i, q in enumerate(scaled) if q >= 1.0]
    while small and large:
        s, g = small.pop(), large[-1]
        table[s] = min(int(scaled[s] * 2**31), 2**31 - 1), g
        scaled[g] -= 1.0 - scaled[s]
        if scaled[g] < 1.0:
            small.append(large.pop())
    return torch.from_numpy(table.astype(np.int32))


def subsample(
    tokens: torch.Tensor,
    sentence: torch.Tensor,
    keep_prob: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop frequent words before windowing, as word2vec.c does (windows then span the gaps).

    Returns (tokens, sentence, kept): the kept words in order at the front of buffers as long
    as the batch (the rest: token 0, sentence -1) and their count as a 0-d device tensor.
    """
    n = tokens.numel()
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    keep = draw < keep_prob[tokens]
    rank = torch.cumsum(keep, 0)
    slot = torch.where(keep, rank - 1, n)  # dropped words all go to a spare last slot
    out_tokens = tokens.new_zeros(n + 1).scatter_(0, slot, tokens)
    out_sentence = sentence.new_full((n + 1,), -1).scatter_(0, slot, sentence)
    kept = rank[-1] if n else rank.new_zeros(())
    return out_tokens[:n], out_sentence[:n], kept


def windows(
    tokens: torch.Tensor,
    sentence: torch.Tensor,
    window: int,
    generator: torch.Generator,
    kept: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """word2vec.c's dynamic window around every token, inside its sentence.

    Each centre word draws its effective window b uniformly from 1..window; every word within b
    positions in the same sentence is a context. Returns `contexts` (N, 2S) token ids and `mask`
    (N, 2S) marking the real ones (the others hold a placeholder id), S = min(window, N - 1):
    no context lies farther than the batch, so a window past it (item2vec's whole sentence,
    2^31 - 1) spans the batch instead of allocating slots that never hold one. With `kept`
    (subsample's count) only the first `kept` tokens are centres or contexts.
    """
    n = tokens.numel()
    device = tokens.device
    reach = torch.randint(1, window + 1, (n, 1), generator=generator, device=device)
    span = max(1, min(window, n - 1))
    offsets = torch.cat(
        [torch.arange(-span, 0, device=device), torch.arange(1, span + 1, device=device)]
    )
    pos = torch.arange(n, device=device).unsqueeze(1)
    ctx = pos + offsets
    end = n if kept is None else kept
    mask = (ctx >= 0) & (ctx < end) & (pos < end) & (offsets.abs() <= reach)
    ctx = ctx.clamp(0, max(n - 1, 0))
    mask &= sentence[ctx] == sentence.unsqueeze(1)
    return tokens[ctx], mask


class WindowSampler:
    """A batch of raw tokens to what the torch step trains on, from one generator.

    Built once per run from the vocabulary's counts; the compiled CPU kernel draws in C from
    the same keep probabilities (`keep`) and counts, the Triton kernel from `keep` and the
    alias table (`negatives`).
    """

    def __init__(
        self, counts: torch.Tensor, model: ModelConfig, generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.counts = counts
        self.keep = keep_probabilities(counts, model.sample).to(device)
        self.negatives = AliasTable(counts, model.ns_exponent, device)
        self.window = model.window
        self.negative = model.negative
        self.per_pair = model.share_negatives == "pair"
        self.generator = generator

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(centres, contexts, mask, negatives) as `sgns.gradients` takes them, shaped by the
        batch alone: every kept word's window with shared negatives ((N,), (N, 2W), (N, 2W),
        (N, K)), or one row per window slot with its own negatives ((N 2W,), (N 2W, 1), ...)."""
        g = self.generator
        centres, sentence, kept = subsample(tokens.long(), sentence, self.keep, g)
        contexts, mask = windows(centres, sentence, self.window, g, kept)
        if self.per_pair:
            centres = centres.unsqueeze(1).expand_as(contexts).reshape(-1)
            contexts, mask = contexts.reshape(-1, 1), mask.reshape(-1, 1)
        negatives = self.negatives.sample((centres.numel(), self.negative), g)
        return centres, contexts, mask, negatives
