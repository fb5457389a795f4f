"""The SGNS model: two embedding tables and the sparse gradient of one batch.

The gradient is computed by hand rather than by autograd so that it comes out as
(row indices, row values) for the rows a batch touches, never as a dense vocab x dim tensor.
That sparse form is what ranks exchange (see `sync.py`) and what `apply` adds into the tables.
`tests/test_sgns.py` checks it against autograd on a dense copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from w2vdist.training.merge import Saturation


class Embeddings(nn.Module):
    """word2vec.c's initialisation: input uniform(-0.5/dim, 0.5/dim), output zeros."""

    def __init__(self, vocab_size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        init = (torch.rand(vocab_size, dim, generator=generator) - 0.5) / dim
        self.input = nn.Parameter(init, requires_grad=False)
        self.output = nn.Parameter(torch.zeros(vocab_size, dim), requires_grad=False)


@dataclass
class SparseRows:
    """Rows `index` of a table get `values` added (duplicates add up).

    `curvature` is each contribution's curvature of the loss along its row, |g| / 2 *
    |other vector|^2 summed over the scores it enters (g = label - sigma(score)); `apply` uses
    it to damp rows that a batch updates many times, `local` merges to weigh ranks' changes.
    |g| / 2 equals the second derivative sigma'(score) at score 0 but, unlike it, does not
    vanish for confidently wrong scores, whose summed steps would otherwise run away (the
    torch path diverged at 16,384-word steps with sigma'; BENCHMARKS.md).
    """

    index: torch.Tensor  # (M,) int64
    values: torch.Tensor  # (M, D) float32
    curvature: torch.Tensor  # (M,) float32

    def packed(self) -> torch.Tensor:
        """(M, D + 1): the values with the curvature as one more column, to move as one."""
        return torch.cat([self.values, self.curvature.unsqueeze(1)], dim=1)

    @classmethod
    def unpacked(cls, index: torch.Tensor, packed: torch.Tensor) -> "SparseRows":
        return cls(index, packed[:, :-1].contiguous(), packed[:, -1].contiguous())

    def coalesced(self) -> "SparseRows":
        """One row per distinct index (`coalesce`)."""
        return SparseRows(*coalesce(self.index, self.values, self.curvature))

    @classmethod
    def joined(cls, parts: list["SparseRows"]) -> "SparseRows":
        """Several sets of rows for one table as one, coalesced."""
        return cls(torch.cat([p.index for p in parts]), torch.cat([p.values for p in parts]),
                   torch.cat([p.curvature for p in parts])).coalesced()


@dataclass
class Gradients:
    """Descent directions (minus the loss gradient) for both tables, and the batch loss."""

    input: SparseRows
    output: SparseRows
    loss: torch.Tensor  # float64 scalar: summed over pairs
    pairs: torch.Tensor  # int64 scalar: (context, centre) pairs trained


def gradients(
    tables: Embeddings,
    centres: torch.Tensor,
    contexts: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor | None = None,
    negative_weight: float = 1.0,
) -> Gradients:
    """SGNS as word2vec.c trains it: each context word's input row against the centre word's
    output row (label 1) and the negatives' output rows (label 0).

    Pairs: `contexts` (P,) and `negatives` (P, K), one row each. Windows: `contexts` (N, C) with
    `mask` (N, C) marking real contexts, and `negatives` (N, K) shared by all contexts of a
    centre: the centre's K+1 output rows are read once for its whole window, which cuts the
    rows read and written per pair from K+2 to about 1 + (K+1)/C. A negative that equals the
    centre word is skipped, as in word2vec.c. `negative_weight` scales each negative's term:
    M negatives at K/M train as K would on average (the Triton kernel's chunk mode).
    """
    if contexts.dim() == 1:
        contexts = contexts.unsqueeze(1)
    if mask is None:
        mask = torch.ones_like(contexts, dtype=torch.bool)
    dim = tables.input.shape[1]
    v = F.embedding(contexts, tables.input)  # (N, C, D)
    targets = torch.cat([centres.unsqueeze(1), negatives], dim=1)  # (N, K+1)
    u = F.embedding(targets, tables.output)  # (N, K+1, D)
    scores = torch.bmm(v, u.transpose(1, 2))  # (N, C, K+1)
    real = targets != centres.unsqueeze(1)
    real[:, 0] = True
    weight = (mask.unsqueeze(2) & real.unsqueeze(1)).to(scores.dtype)
    if negative_weight != 1.0:
        weight[:, :, 1:] *= negative_weight
    label = torch.zeros_like(scores)
    label[:, :, 0] = 1.0
    sig = torch.sigmoid(scores)
    g = (label - sig) * weight  # minus d loss / d score
    signed = torch.where(label.bool(), scores, -scores)
    loss = -(F.logsigmoid(signed) * weight).sum(dtype=torch.float64)
    grad_in = torch.bmm(g, u)  # (N, C, D)
    grad_out = torch.bmm(g.transpose(1, 2), v)  # (N, K+1, D)
    bend = 0.5 * g.abs()  # curvature per score (see SparseRows)
    curv_in = torch.bmm(bend, (u * u).sum(2, keepdim=True)).squeeze(2)  # (N, C)
    curv_out = torch.bmm(bend.transpose(1, 2), (v * v).sum(2, keepdim=True)).squeeze(2)
    # Masked slots stay, with zero rows: shapes follow the batch, not the data (no host sync).
    return Gradients(
        input=SparseRows(contexts.reshape(-1), grad_in.reshape(-1, dim), curv_in.reshape(-1)),
        output=SparseRows(targets.reshape(-1), grad_out.reshape(-1, dim), curv_out.reshape(-1)),
        loss=loss,
        pairs=mask.sum(),
    )


def coalesce(index: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One row per distinct index, each of `values`' contributions summed. `apply` sums a
    row's values and curvatures anyway, so the update is the same; what is held or sent shrinks
    from every contribution to every distinct row, several-fold for Zipfian batches."""
    unique, inverse = torch.unique(index, return_inverse=True)
    return unique, *(v.new_zeros((unique.shape[0], *v.shape[1:])).index_add_(0, inverse, v)
                     for v in values)


def pieced(grads: Iterable[Gradients]) -> Gradients:
    """The gradients of one batch computed in pieces from the same tables, as one. Each piece
    is coalesced as it arrives and its contributions dropped, so a large step holds its
    distinct rows, not every contribution (a 1M-word step's contributions are about 13 GB at
    dim 100)."""
    inputs: list[SparseRows] = []
    outputs: list[SparseRows] = []
    losses: list[torch.Tensor] = []
    pairs: list[torch.Tensor] = []
    for g in grads:
        inputs.append(g.input.coalesced())
        outputs.append(g.output.coalesced())
        losses.append(g.loss)
        pairs.append(g.pairs)
    return Gradients(
        input=SparseRows.joined(inputs), output=SparseRows.joined(outputs),
        loss=torch.stack(losses).sum(), pairs=torch.stack(pairs).sum(),
    )


def apply(
    tables: Embeddings,
    grads: Gradients,
    lr: float,
    damping: float = 0.0,
    saturation: Saturation | None = None,
) -> None:
    """SGD: add lr times each row's summed descent direction, damped where the batch piles up.

    word2vec.c applies updates one pair at a time, so a frequent word's row saturates as it
    goes; a batch computes all of them from the same old row, and their plain sum overshoots
    once a row takes hundreds of contributions (frequent words; negatives shared by a window).
    Each row's step is therefore divided by 1 + damping * lr * H, with H the summed curvature
    of the row's contributions: the implicit (proximal) SGD step of a quadratic model of the
    row's loss, which stays plain SGD for rows the batch touches a few times and bounds rows it
    touches many times. damping = 0 is the exact SGD step on the batch loss. BENCHMARKS.md has
    the measurements behind the default. `saturation` (local sync) gathers lr * H per row.
    """
    sums = (None, None) if saturation is None else (saturation.sat_in, saturation.sat_out)
    for table, rows, sat in zip((tables.input, tables.output), (grads.input, grads.output), sums):
        values = rows.values
        if sat is not None:
            sat.index_add_(0, rows.index, rows.curvature, alpha=lr)
        if damping:
            total = torch.zeros(table.shape[0], dtype=values.dtype, device=values.device)
            total.index_add_(0, rows.index, rows.curvature)
            values = values / (1.0 + damping * lr * total[rows.index]).unsqueeze(1)
        table.index_add_(0, rows.index, values, alpha=lr)
