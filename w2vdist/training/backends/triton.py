"""The GPU training kernel: one fused Triton launch per batch of SGNS groups.

Why fused: SGNS is memory-bound. The torch path (`sgns.gradients`) gathers a
pairs x (K+1) x dim tensor of output rows, writes the same size of gradients and scatters them
with `index_add_`: several passes over P(K+1)D floats in global memory per step. Here each
program gathers its rows straight from the tables, keeps scores and gradients in registers and
adds lr times the gradients into both tables with `tl.atomic_add` (Hogwild, as GPU word2vec
systems do); the only global intermediate is one float of loss per program.

A program trains one *group*: a centre word, up to C context words and K negatives shared by
all of the group's contexts. Each (centre, context) pair trains the context's input row against
the centre's output row (label 1) and the negatives' output rows (label 0); a negative equal to
the centre is skipped, as in word2vec.c and `sgns.gradients`.
- Per-pair negatives (the reference's math): one pair per group, contexts of shape (P,) or
  (P, 1) and negatives (P, K).
- Shared negatives: a centre word with its window, contexts (G, C) padded with -1, negatives
  (G, K). The K+1 output rows are read and written once for all C contexts instead of once per
  pair, which cuts row traffic from 2(K+2) to 2 + 2(K+1)/C rows per pair (Ji et al. 2016,
  "Parallelizing Word2Vec in Shared and Distributed Memory").

Semantics within a program are the reference's: every score and gradient is computed from the
rows as the program read them, before any of its own updates (pass 1 over dim tiles computes
scores; pass 2 reloads each tile, then adds to that same tile, so no tile is read after this
program wrote it; a barrier keeps the program's threads from adding to a tile before all of them
have read it), and duplicate rows within a group add up. Across programs it is Hogwild: a
program may read a row that another program of the same launch has already updated. So the
result equals `sgns.gradients` + `sgns.apply` (up to float summation order) exactly when no
row of either table is touched by two groups; with rows shared between groups it differs by
terms of order lr^2 (the sequential interpreter lets later groups see earlier updates; a GPU
interleaves them nondeterministically). `tests/test_triton_kernel.py` checks both cases.

Ids must lie in [0, V) (contexts may be -1 for "no context"); they are not checked, since that
would cost a device synchronisation per step, and the sampling code produces only valid ids.
The kernel runs on CUDA tensors, or on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1
set before triton is imported; such a process cannot also compile for a GPU), which is how the
tests run it. Tile sizes and warps are untuned: no GPU was at hand to time them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from w2vdist.training.sampling import WindowSampler
    from w2vdist.training.sgns import Embeddings
    from w2vdist.training.sync import Saturation

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # the package works without triton; `available()` says why
    _IMPORT_ERROR = f"triton is not importable ({exc})"

_MAX_TILE = 4096  # elements of the (C, K+1, BLOCK_D) product one program holds in registers
_MAX_BLOCK_D = 128


def available() -> tuple[bool, str]:
    """(True, "") when triton imports and CUDA is present, else (False, why not)."""
    if _IMPORT_ERROR is not None:
        return False, _IMPORT_ERROR
    if not torch.cuda.is_available():
        return False, "no CUDA device is available to torch"
    return True, ""


def sgns_step(
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    centres: torch.Tensor,
    contexts: torch.Tensor,
    negatives: torch.Tensor,
    lr: float,
    block_d: int | None = None,
    saturation: Saturation | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train groups in place; returns (loss, pairs) as 0-d tensors on the tables' device.

    w_in, w_out: float32[V, D], contiguous, same device. centres: int[G]. contexts: int[G]
    (one pair per group: per-pair negatives) or int[G, C] with -1 for no context (shared
    negatives). negatives: int[G, K]. loss is float64, summed over pairs; pairs is int64 (the
    number of contexts that are not -1). block_d: dim tile (power of two), default chosen to
    fit registers. Nothing synchronises with the host, so a caller reads both when it logs.
    `saturation` (local sync): each score adds lr |g| / 2 times the other row's squared norm
    to both rows' totals, as the CPU kernel does.
    """
    if _IMPORT_ERROR is not None:
        raise RuntimeError(f"Triton kernel unavailable: {_IMPORT_ERROR}")
    if contexts.dim() == 1:
        contexts = contexts.unsqueeze(1)
    _check(w_in, w_out, centres, contexts, negatives)
    device = w_in.device
    groups, width = contexts.shape
    n_neg = negatives.shape[1]
    pairs = (contexts >= 0).sum()
    if groups == 0:
        return torch.zeros((), dtype=torch.float64, device=device), pairs
    dim = w_in.shape[1]
    block_c, block_t, block_d = tile_sizes(width, n_neg, dim, block_d)
    losses = torch.empty(groups, dtype=torch.float32, device=device)
    track = saturation is not None
    sat = (saturation.norm_in, saturation.norm_out, saturation.sat_in, saturation.sat_out) \
        if track else (losses,) * 4  # never read without TRACK
    _sgns_groups[(groups,)](
        w_in, w_out, *sat,
        centres.to(torch.int64).contiguous(),
        contexts.to(torch.int64).contiguous(),
        negatives.to(torch.int64).contiguous(),
        losses, float(lr), dim, width, n_neg,
        BLOCK_C=block_c, BLOCK_T=block_t, BLOCK_D=block_d, TRACK=track, num_warps=4,
    )  # fmt: skip
    return losses.sum(dtype=torch.float64), pairs


def tile_sizes(
    width: int, negative: int, dim: int, block_d: int | None = None
) -> tuple[int, int, int]:
    """(BLOCK_C, BLOCK_T, BLOCK_D) for groups of `width` contexts and `negative` negatives.

    The (C, K+1, BLOCK_D) product is kept to 4096 floats, which ptxas fits in about 125
    registers per thread at 4 warps for C=16, K+1=8, without spills.
    """
    block_c = triton.next_power_of_2(width)
    block_t = triton.next_power_of_2(negative + 1)
    if block_d is None:
        fit = max(16, _MAX_TILE // (block_c * block_t))
        block_d = min(_MAX_BLOCK_D, fit, triton.next_power_of_2(dim))
    elif block_d < 1 or block_d & (block_d - 1):
        raise ValueError(f"block_d must be a power of two, got {block_d}")
    return block_c, block_t, block_d


def _check(
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    centres: torch.Tensor,
    contexts: torch.Tensor,
    negatives: torch.Tensor,
) -> None:
    for name, t in (("w_in", w_in), ("w_out", w_out)):
        if t.dtype != torch.float32 or t.dim() != 2 or not t.is_contiguous():
            raise ValueError(
                f"{name} must be a contiguous float32 matrix, got {t.dtype} {tuple(t.shape)}"
            )
    if w_out.shape != w_in.shape:
        raise ValueError(f"w_out has shape {tuple(w_out.shape)}, w_in {tuple(w_in.shape)}")
    groups = centres.shape[0] if centres.dim() == 1 else -1
    if contexts.dim() != 2 or contexts.shape[0] != groups or contexts.shape[1] < 1:
        raise ValueError(
            f"centres {tuple(centres.shape)} and contexts {tuple(contexts.shape)}: expected "
            "(G,) and (G,) or (G, C) with C >= 1"
        )
    if negatives.dim() != 2 or negatives.shape[0] != groups or negatives.shape[1] < 1:
        raise ValueError(f"negatives has shape {tuple(negatives.shape)}, expected ({groups}, K)")
    for name, t in (("w_out", w_out), ("centres", centres), ("contexts", contexts),
                    ("negatives", negatives)):  # fmt: skip
        if t.device != w_in.device:
            raise ValueError(f"{name} is on {t.device}, w_in on {w_in.device}")
    for name, t in (("centres", centres), ("contexts", contexts), ("negatives", negatives)):
        if t.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{name} must be int32 or int64, got {t.dtype}")
    if w_in.device.type != "cuda" and not isinstance(_sgns_groups, InterpretedFunction):
        raise ValueError(
            f"the Triton kernel needs CUDA tensors, got {w_in.device} "
            "(CPU runs only under TRITON_INTERPRET=1, for testing)"
        )


if _IMPORT_ERROR is None:

    @triton.jit
    def _sgns_groups(
        w_in, w_out, norm_in, norm_out, sat_in, sat_out, centres, contexts, negatives, losses,
        lr, dim, width, n_neg,
        BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, TRACK: tl.constexpr,
    ):  # fmt: skip
        """One group: rows c of `contexts` x targets t (t = 0 the centre, 1..K negatives)."""
        g = tl.program_id(0).to(tl.int64)
        c = tl.arange(0, BLOCK_C)
        t = tl.arange(0, BLOCK_T)
        centre = tl.load(centres + g)
        neg = tl.load(negatives + g * n_neg + t - 1, mask=(t >= 1) & (t <= n_neg), other=0)
        target = tl.where(t == 0, centre, neg)
        t_ok = (t == 0) | ((t <= n_neg) & (neg != centre))
        ctx = tl.load(contexts + g * width + c, mask=c < width, other=-1)
        c_ok = ctx >= 0
        ctx = tl.where(c_ok, ctx, 0)
        in_rows = w_in + ctx[:, None] * dim
        out_rows = w_out + target[:, None] * dim

        # Pass 1: scores (C, T) over dim tiles, from the rows as read before any update.
        scores = tl.zeros([BLOCK_C, BLOCK_T], dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            d_ok = d < dim
            v = tl.load(in_rows + d[None, :], mask=c_ok[:, None] & d_ok[None, :], other=0.0)
            u = tl.load(out_rows + d[None, :], mask=t_ok[:, None] & d_ok[None, :], other=0.0)
            scores += tl.sum(v[:, None, :] * u[None, :, :], axis=2)

        positive = (t == 0)[None, :]
        ok = c_ok[:, None] & t_ok[None, :]
        grad = tl.where(ok, tl.where(positive, 1.0, 0.0) - tl.sigmoid(scores), 0.0)
        signed = tl.where(positive, -scores, scores)  # loss = softplus(signed), computed stably
        loss = tl.maximum(signed, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(signed)))
        tl.store(losses + g, tl.sum(tl.sum(tl.where(ok, loss, 0.0), axis=1), axis=0))
        if TRACK:  # each row's saturation for `local` merges (sync.Saturation)
            h = 0.5 * lr * tl.abs(grad)
            n_out = tl.load(norm_out + target, mask=t_ok, other=0.0)
            n_in = tl.load(norm_in + ctx, mask=c_ok, other=0.0)
            sat_ctx = tl.sum(h * n_out[None, :], axis=1)
            sat_target = tl.sum(h * n_in[:, None], axis=0)
            tl.atomic_add(sat_in + ctx, sat_ctx, mask=c_ok, sem="relaxed")
            tl.atomic_add(sat_out + target, sat_target, mask=t_ok, sem="relaxed")

        # Pass 2: per tile, reload (this program has not written it yet), then add lr * grad.
        for d0 in range(0, dim, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            d_ok = d < dim
            in_mask = c_ok[:, None] & d_ok[None, :]
            out_mask = t_ok[:, None] & d_ok[None, :]
            v = tl.load(in_rows + d[None, :], mask=in_mask, other=0.0)
            u = tl.load(out_rows + d[None, :], mask=out_mask, other=0.0)
            grad_in = tl.sum(grad[:, :, None] * u[None, :, :], axis=1)  # (C, D)
            grad_out = tl.sum(grad[:, :, None] * v[:, None, :], axis=0)  # (T, D)
            tl.debug_barrier()  # no thread adds to this tile before every thread has read it
            tl.atomic_add(in_rows + d[None, :], lr * grad_in, mask=in_mask, sem="relaxed")
            tl.atomic_add(out_rows + d[None, :], lr * grad_out, mask=out_mask, sem="relaxed")


class TritonStep:
    """The torch path's sampling, then one fused launch (`sgns_step`) updating both tables."""

    def __init__(
        self, sampler: "WindowSampler", tables: "Embeddings", saturation: "Saturation | None"
    ) -> None:
        self.sampler = sampler
        self.tables = tables
        self.saturation = saturation

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[float, int]:
        centres, contexts, mask, negatives = self.sampler(tokens, sentence)
        if mask is not None:
            contexts = contexts.masked_fill(~mask, -1)  # the kernel's "no context"
        loss, pairs = sgns_step(
            self.tables.input.data, self.tables.output.data, centres, contexts, negatives,
            0.5 * (lr_start + lr_end), saturation=self.saturation,
        )
        return float(loss), int(pairs)
