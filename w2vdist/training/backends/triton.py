"""The GPU step: subsampling in fixed shapes, then one chunked Triton kernel that draws the
windows and negatives and trains both tables. Nothing in a step waits for the host.

Why this shape. SGNS is bound by moving rows unless rows are reused: a kept word is a centre
once and a context of up to 2 x window neighbours, so a program that trains CHUNK
consecutive centres reads the band of CHUNK + 2 x window input rows once for all of their
pairs (FULL-W2V keeps that band on chip; wombat tiles contexts x targets) and the centres'
output rows with their negatives once for every context (pWord2Vec's shared negatives). Every
score of the chunk is then one small matrix product, band (B x D) times targets (D x J), and
both gradients are two more (J x B by B x D, B x J by J x D), on Tensor Cores: `tl.dot`, TF32
operands and fp32 accumulation by default, exact fp32 (`precision="ieee"`) for tests. Scores
that are not pairs (a band row outside a centre's window, another sentence, a negative equal
to its centre) are masked to weight 0; the waste is cheap next to the rows' traffic.

Per program: positions first .. first + CHUNK - 1 of the compacted kept words are centres
(CHUNK 16; fewer past 7 negatives a centre or window 24: `tiling.tiles`).
Each draws its window b in 1..window and (per centre, the default) K negatives from the alias
table, with Philox (`tl.randint4x`) keyed by the step's seed and the word's position, so the
draws depend on neither the grid nor the order programs run in. With `share="chunk"` the chunk
draws one set of M negatives for all its centres, M the columns of the target tile its centres
leave (`chunk_negatives`: 16 at K = 5), each weighted K / M: J = CHUNK + M targets instead of
CHUNK x (K+1), at the cost of correlated negatives within a chunk. A row's updates are
computed from the rows as the program read them (pass 1: scores over dim tiles; pass 2:
reload each tile, then add to it, a barrier between), and added with atomics: Hogwild across
programs, as BlazingText and word2vec.c on CPUs. Tables stay fp32: bf16 atomics would round
small late-training updates away. A program's reads miss the updates of every program resident
with it (thousands of centres on a large GPU), which for a frequent word's rows is a
batch-synchronous step of hundreds of contributions: each row's update is damped as the torch
step damps a batch's, by an estimate of that crowd from what was trained before (`Damping`).

Host synchronisation: none. The kept count is read by the kernel from device memory (programs
past it exit), the learning rate is interpolated across the step in the kernel, the seed is a
device tensor drawn from the run's generator, and loss and pair counts are per-program buffers
summed on the device; every shape follows the batch size alone.

Ids are not checked (that would cost a synchronisation); the sampling produces only valid ids.
The kernel runs on CUDA tensors, or on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1
set before triton is imported), which is how the tests run it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from w2vdist.errors import UsageError
from w2vdist.training.backends.crowd import Damping, resident
from w2vdist.training.backends.tiling import SHARES, tiles

if TYPE_CHECKING:
    from w2vdist.training.merge import Saturation

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # the package works without triton; `available()` says why
    _IMPORT_ERROR = f"triton is not importable ({exc})"

def available() -> tuple[bool, str]:
    """(True, "") when triton imports and CUDA is present, else (False, why not)."""
    if _IMPORT_ERROR is not None:
        return False, _IMPORT_ERROR
    if not torch.cuda.is_available():
        return False, "no CUDA device is available to torch"
    return True, ""


def _launch_error(exc: Exception, window: int, negative: int, share: str,
                  device: torch.device) -> UsageError:
    """Triton's OutOfResources at the kernel's first launch, as the settings that caused it:
    the GPU's shared memory is too small for their tile."""
    needed, limit = getattr(exc, "required", 0), getattr(exc, "limit", 0)
    way = ("model.share_negatives chunk (a smaller tile) or train.backend torch"
           if share == "centre" else "or train.backend torch with model.share_negatives centre")
    return UsageError(
        f"config: model.window {window} and model.negative {negative} (share_negatives "
        f"{share}): the Triton kernel's tile needs {needed / 1024:,.0f} KB of "
        f"{getattr(exc, 'name', 'shared memory')}, more than the {limit / 1024:,.0f} KB of "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else device}: use a "
        f"smaller window or fewer negatives, {way}"
    )


def sgns_chunks(
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    tokens: torch.Tensor,
    sentence: torch.Tensor,
    kept: torch.Tensor,
    table: torch.Tensor,
    seed: torch.Tensor,
    lr: torch.Tensor,
    window: int,
    negative: int,
    share: str = "centre",
    saturation: Saturation | None = None,
    precision: str = "tf32",
    record: torch.Tensor | None = None,
    damping: Damping | None = None,
    sequential: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train the kept words in place; returns (loss float64, pairs int64), 0-d on the device.

    tokens, sentence: int[N] from `sampling.subsample` (kept words first, `kept` of them, a
    0-d device tensor). table: the alias table, int32[V, 2]. seed: int64[1] on the device.
    lr: float32[2] on the device, the rate at the first kept word and after the last, between
    which it falls linearly (read by the kernel, so that a captured step reads each step's;
    `gpu_step.GraphedStep`).
    `saturation` (local sync): each score adds lr |g| / 2 times the other row's squared norm
    as read to both rows' totals (the torch step's curvature; `saturation`'s norms, which the
    CPU kernel uses, are not read). `record` (tests): int64[programs, 2,
    BLOCK_J] receives each program's targets and each target column's window. `damping`: each
    row's update divided by 1 + lr x the curvature of its crowd, and the step's curvature and
    centres added to its totals (`Damping`); the caller then calls `damping.advance(kept)`.
    `sequential` (checks on a GPU): one program a launch, so that the chunks train one after
    another, as the float64 reference does, instead of in Hogwild order (on a GPU neighbouring
    chunks share their band's context rows and race on them).
    """
    if _IMPORT_ERROR is not None:
        raise RuntimeError(f"Triton kernel unavailable: {_IMPORT_ERROR}")
    _check(w_in, w_out, tokens, sentence, table, lr, share, precision)
    blocks = tiles(window, negative, w_in.shape[1], share)
    chunk = int(blocks["CHUNK"])
    programs = triton.cdiv(tokens.numel(), chunk)
    device = w_in.device
    losses = torch.zeros(programs, dtype=torch.float32, device=device)
    pairs = torch.zeros(programs, dtype=torch.int32, device=device)
    if programs:
        track = saturation is not None
        sat = ((saturation.sat_in, saturation.sat_out) if saturation is not None
               else (losses,) * 2)  # read if TRACK
        damp = (*damping.crowd, damping.centres) if damping else (losses,) * 3  # read if DAMP

        def launch(first: int, count: int, in_flight: int) -> Any:
            try:
                return _sgns_chunk[(count,)](
                    w_in, w_out, tokens, sentence, kept, table, seed, lr, *sat, *damp, losses,
                    pairs, record if record is not None else pairs,
                    w_in.shape[0], w_in.shape[1], window, negative,
                    damping.factor * in_flight if damping else 0.0, first,
                    SHARED=share == "chunk", TRACK=track, DAMP=damping is not None,
                    RECORD=record is not None, PRECISION=precision, **blocks,
                )  # fmt: skip
            except triton.OutOfResources as exc:
                raise _launch_error(exc, window, negative, share, device) from exc

        if sequential:
            for first in range(programs):
                launch(first, 1, chunk)
        elif damping is None:
            launch(0, programs, 0)
        else:
            first = 0
            if damping.resident is None:  # known once the kernel is loaded: one program first
                damping.resident = resident(launch(0, 1, chunk), device)
                first = 1
            if first < programs:
                launch(first, programs - first, chunk * min(programs, damping.resident))
    return losses.sum(dtype=torch.float64), pairs.sum(dtype=torch.int64)


def _check(
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    tokens: torch.Tensor,
    sentence: torch.Tensor,
    table: torch.Tensor,
    lr: torch.Tensor,
    share: str,
    precision: str,
) -> None:
    for name, t in (("w_in", w_in), ("w_out", w_out)):
        if t.dtype != torch.float32 or t.dim() != 2 or not t.is_contiguous():
            raise ValueError(
                f"{name} must be a contiguous float32 matrix, got {t.dtype} {tuple(t.shape)}"
            )
    if w_out.shape != w_in.shape:
        raise ValueError(f"w_out has shape {tuple(w_out.shape)}, w_in {tuple(w_in.shape)}")
    if tokens.dim() != 1 or sentence.shape != tokens.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and sentence {tuple(sentence.shape)}: "
                         "expected two vectors of one length")
    if table.dtype != torch.int32 or table.shape != (w_in.shape[0], 2):
        raise ValueError(f"table must be int32[{w_in.shape[0]}, 2] (sampling.AliasTable), got "
                         f"{table.dtype} {tuple(table.shape)}")
    if lr.dtype != torch.float32 or lr.shape != (2,) or lr.device != w_in.device:
        raise ValueError(f"lr must be float32[2] on {w_in.device} (start, end), got {lr.dtype} "
                         f"{tuple(lr.shape)} on {lr.device}")
    if share not in SHARES:
        raise ValueError(f"share must be one of {', '.join(SHARES)}, got {share!r}")
    if precision not in ("tf32", "ieee"):
        raise ValueError(f"precision must be tf32 or ieee, got {precision!r}")
    if w_in.device.type != "cuda" and not isinstance(_sgns_chunk, InterpretedFunction):
        raise ValueError(
            f"the Triton kernel needs CUDA tensors, got {w_in.device} "
            "(CPU runs only under TRITON_INTERPRET=1, for testing)"
        )


if _IMPORT_ERROR is None:

    # first_program is 0 but for a session's first launches (0, then 1): not a constant to
    # compile a kernel for, as Triton would make a 1 by default.
    @triton.jit(do_not_specialize=["first_program"])
    def _sgns_chunk(
        w_in, w_out, tokens, sentence, kept_ptr, table, seed_ptr, lr_ptr,
        sat_in, sat_out, crowd_in, crowd_out, centres_ptr,
        losses, pair_counts, record, vocab, dim, window, n_neg, crowd_scale,
        first_program,
        CHUNK: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr,
        BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr, SHARED: tl.constexpr,
        TRACK: tl.constexpr, DAMP: tl.constexpr, RECORD: tl.constexpr,
        PRECISION: tl.constexpr,
    ):  # fmt: skip
        """Centres first .. first+CHUNK-1: band rows b (contexts) x target columns j."""
        pid = tl.program_id(0) + first_program
        kept = tl.load(kept_ptr).to(tl.int64)
        first = pid.to(tl.int64) * CHUNK
        if first >= kept:
            return
        seed = tl.load(seed_ptr)
        lr_start = tl.load(lr_ptr)
        lr_end = tl.load(lr_ptr + 1)
        lr = lr_start + (lr_end - lr_start) * ((first + CHUNK // 2).to(tl.float32)
                                               / kept.to(tl.float32))

        # The band: positions first - window .. first + CHUNK + window - 1.
        b = tl.arange(0, BLOCK_B)
        bpos = first - window + b
        b_in = (b < CHUNK + 2 * window) & (bpos >= 0) & (bpos < kept)
        btok = tl.load(tokens + bpos, mask=b_in, other=0).to(tl.int64)
        bsen = tl.load(sentence + bpos, mask=b_in, other=-1)

        # Target columns: per centre, its output row (t = 0) then its K negatives; shared,
        # the CHUNK centres then the chunk's M = BLOCK_J - CHUNK negatives.
        j = tl.arange(0, BLOCK_J)
        if SHARED:
            n = tl.minimum(j, CHUNK - 1)
            t = tl.where(j < CHUNK, 0, j - CHUNK + 1)
            draw_at = first * BLOCK_T + j  # the chunk's negatives: offsets of its first centre
        else:
            n = j // BLOCK_T
            t = j % BLOCK_T
            draw_at = (first + n) * BLOCK_T + t
        cpos = first + n
        c_in = cpos < kept
        ctok = tl.load(tokens + cpos, mask=c_in, other=0).to(tl.int64)
        csen = tl.load(sentence + cpos, mask=c_in, other=-2)
        reach_bits, _, _, _ = tl.randint4x(seed, cpos * BLOCK_T)  # a centre's window: slot 0
        reach = 1 + ((reach_bits.to(tl.uint64) * window.to(tl.uint64)) >> 32).to(tl.int64)
        _, slot_bits, coin, _ = tl.randint4x(seed, draw_at)
        slot = ((slot_bits.to(tl.uint64) * vocab.to(tl.uint64)) >> 32).to(tl.int64)
        threshold = tl.load(table + 2 * slot, mask=t > 0, other=0)
        alias = tl.load(table + 2 * slot + 1, mask=t > 0, other=0).to(tl.int64)
        negative = tl.where((coin >> 1).to(tl.int32) < threshold, slot, alias)
        target = tl.where(t == 0, ctok, negative)
        if RECORD:
            tl.store(record + pid * 2 * BLOCK_J + j, target)
            tl.store(record + pid * 2 * BLOCK_J + BLOCK_J + j, reach)

        # weight[b, j]: how many (context b, centre) pairs train against column j.
        dist = tl.abs(bpos[:, None] - cpos[None, :])
        near = (dist >= 1) & (dist <= reach[None, :]) & (bsen[:, None] == csen[None, :])
        near = near & b_in[:, None] & c_in[None, :]
        if SHARED:
            # Column j < CHUNK: centre j's positive; a negative column: every pair of the row
            # whose centre differs from the negative (word2vec.c skips a negative equal to the
            # centre), each at K / M: near (B x J, centres only) times counts (J x J).
            centre_col = (j < CHUNK)[None, :]
            pos = tl.where(near & centre_col, 1.0, 0.0)
            counts = (j[:, None] < CHUNK) & (
                (j[:, None] == j[None, :])
                | ((j >= CHUNK)[None, :] & (ctok[:, None] != target[None, :]))
            )
            share = tl.where(j < CHUNK, 1.0, n_neg * 1.0 / (BLOCK_J - CHUNK))
            weight = tl.dot(pos, tl.where(counts, share[None, :], 0.0), input_precision="ieee")
            positive = centre_col
        else:
            valid = (t == 0) | ((t <= n_neg) & (target != ctok))
            weight = tl.where(near & valid[None, :], 1.0, 0.0)
            positive = (t == 0)[None, :]
        b_used = tl.sum(weight, axis=1) > 0
        j_used = tl.sum(weight, axis=0) > 0
        in_rows = w_in + btok[:, None] * dim
        out_rows = w_out + target[:, None] * dim

        # Pass 1: scores (B, J) over dim tiles, from the rows as read before any update.
        scores = tl.zeros([BLOCK_B, BLOCK_J], dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            v = tl.load(in_rows + d[None, :], mask=b_used[:, None] & (d < dim)[None, :], other=0.)
            u = tl.load(out_rows + d[None, :], mask=j_used[:, None] & (d < dim)[None, :], other=0.)
            scores = tl.dot(v, tl.trans(u), scores, input_precision=PRECISION)

        grad = weight * (tl.where(positive, 1.0, 0.0) - tl.sigmoid(scores))
        signed = tl.where(positive, -scores, scores)  # loss = softplus(signed), computed stably
        loss = tl.maximum(signed, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(signed)))
        tl.store(losses + pid, tl.sum(tl.sum(weight * loss, axis=1), axis=0))
        tl.store(pair_counts + pid,
                 tl.sum(tl.sum(tl.where(positive, weight, 0.0), axis=1), axis=0).to(tl.int32))
        if DAMP:  # `Damping`: the crowd's curvature from what was trained so far (ours after)
            # Read from L2, where the other programs' atomics land (".cg": not a stale L1 line).
            seen = tl.load(centres_ptr, cache_modifier=".cg")
            scale = lr * crowd_scale / tl.maximum(seen, 1.0)
            crowd = tl.load(crowd_in + btok, mask=b_used, other=0.0, cache_modifier=".cg")
            damp_in = 1.0 / (1.0 + scale * crowd)
            crowd = tl.load(crowd_out + target, mask=j_used, other=0.0, cache_modifier=".cg")
            damp_out = 1.0 / (1.0 + scale * crowd)

        # Pass 2: per tile, reload (this program has not written it yet), then add lr * grad.
        # The rows' squared norms, for their curvature, are summed here, from the tiles pass 2
        # loads anyway: summed in pass 1, whose tiles then went through registers on their way
        # to the products, they made the damped step take 7.4 ms on an H200 (262,144 words,
        # dim 300), against 4.4 ms here and 4.1 undamped.
        squares_in = tl.zeros([BLOCK_B, BLOCK_D], dtype=tl.float32)
        squares_out = tl.zeros([BLOCK_J, BLOCK_D], dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            in_mask = b_used[:, None] & (d < dim)[None, :]
            out_mask = j_used[:, None] & (d < dim)[None, :]
            v = tl.load(in_rows + d[None, :], mask=in_mask, other=0.0)
            u = tl.load(out_rows + d[None, :], mask=out_mask, other=0.0)
            if DAMP or TRACK:
                squares_in += v * v
                squares_out += u * u
            grad_in = tl.dot(grad, u, input_precision=PRECISION)  # (B, D)
            grad_out = tl.dot(tl.trans(grad), v, input_precision=PRECISION)  # (J, D)
            if DAMP:
                grad_in = grad_in * damp_in[:, None]
                grad_out = grad_out * damp_out[:, None]
            tl.debug_barrier()  # no thread adds to this tile before every thread has read it
            tl.atomic_add(in_rows + d[None, :], lr * grad_in, mask=in_mask, sem="relaxed")
            tl.atomic_add(out_rows + d[None, :], lr * grad_out, mask=out_mask, sem="relaxed")
        if DAMP or TRACK:  # each row's curvature: |g| / 2 x the other row's squared norm
            # As read, as the torch step and `gpu_crowd.py` measure it, not the CPU kernel's
            # norms of the last merge: a GPU trains tens of thousands of words a rank between
            # merges, over which young rows grow many times over. The floor keeps a changed
            # row's saturation positive (`merge.curvature_norms`).
            square_in = tl.sum(squares_in, axis=1)
            square_out = tl.sum(squares_out, axis=1)
            bend = 0.5 * tl.abs(grad)
            curve_in = tl.sum(bend * (square_out + 1e-20)[None, :], axis=1)
            curve_out = tl.sum(bend * (square_in + 1e-20)[:, None], axis=0)
        if TRACK:  # each row's saturation for `local` merges (merge.Saturation)
            tl.atomic_add(sat_in + btok, lr * curve_in, mask=b_used, sem="relaxed")
            tl.atomic_add(sat_out + target, lr * curve_out, mask=j_used, sem="relaxed")
        if DAMP:  # ours, for the programs after this one
            tl.atomic_add(crowd_in + btok, curve_in, mask=b_used, sem="relaxed")
            tl.atomic_add(crowd_out + target, curve_out, mask=j_used, sem="relaxed")
            tl.atomic_add(centres_ptr, tl.minimum(kept - first, CHUNK).to(tl.float32),
                          sem="relaxed")
