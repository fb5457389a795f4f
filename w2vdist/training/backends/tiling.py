"""The Triton kernel's shapes: how many kept centres a program trains, its band of input rows
and its tile of target rows, as settings decide them (`tiles`), and the settings whose tiles
no GPU holds (`too_wide`). Plain integer arithmetic, importable without triton: the run
checks its settings against it before anything needs a GPU, and the kernel, its launch, its
float64 reference, its compile helper and gpu_check all read the same rule.
"""

from __future__ import annotations

CHUNK = 16  # kept centres per program where the tiles allow (`tiles`)
# Centre mode's tiles: at most 128 target columns (16 centres x the centre and up to 7
# negatives) and 8,192 scores (a 64-row band, window 24): more negatives or a wider window
# take fewer centres a program rather than a larger tile. Larger tiles spilled kilobytes a
# thread on sm_90 (128 x 128 at window 25: 3 KB) or fit no GPU (64 x 512 at window 24 with
# 20 negatives: 292 KB of shared memory); the band shrinks with the centres.
TARGETS = 128
SCORES = 1 << 13
SHARES = ("centre", "chunk")


def chunk_negatives(negative: int) -> int:
    """M, the negatives a chunk shares under `share="chunk"`: every column of the target tile
    (CHUNK + K padded to a power of two) that its centres leave, 16 at K = 5, each weighted
    K / M. They cost no more arithmetic than K would; 5 at weight 1 scored about ten analogy
    points lower than 16 at 5/16 in the emulation (BENCHMARKS.md)."""
    return (1 << (CHUNK + negative - 1).bit_length()) - CHUNK


def _power_of_two(n: int) -> int:
    """The least power of two >= n (triton.next_power_of_2, without importing triton)."""
    return 1 << (n - 1).bit_length()


def tiles(window: int, negative: int, dim: int, share: str) -> dict[str, int | bool]:
    """The kernel's block sizes and compile options: CHUNK centres a program, BLOCK_B band
    rows, BLOCK_J targets, BLOCK_D dims, warps, and fused multiply-adds asked for by name
    (Triton's default until 3.9, which warns when it is left unsaid; 3.10 turns it off).

    Centre mode gives each centre BLOCK_T columns (the centre and its K negatives, padded to
    a power of two) in a tile of at most TARGETS columns and SCORES scores: past 7 negatives
    a program trains fewer centres (8 at 8-15, 4 at 16-31), and past window 24 too (8 at
    windows 25-60, 4 at 61-126), its band shrinking with them: at window 10 with 10
    negatives 32 x 128 without spills, where 16 centres made 64 x 256, 148 KB of shared
    memory and 684 bytes spilled a thread on sm_90; at window 25 64 x 64 for 128 x 128 and 3
    KB spilled.

    Compiled for sm_90 without spills (a test reads ptxas's report): per centre (J = 128 at
    K = 5) 205 registers at 8 warps, 230-231 damped (`Damping`; Triton 3.7.1, which torch
    2.13 requires), one program per SM, in dim tiles of 16 (under 3.9 at 32 the damped
    kernel spilled 4 bytes); shared per chunk (J = 32) 154 at 4 warps and tiles of 32, 242-246
    damped, two programs per SM.
    Forcing 128 registers spills 300 bytes per centre-mode thread. The same tiles compile
    without spills for sm_80, 86, 89 and 100; before Ampere (V100, T4: no TF32)
    the products run on CUDA cores and centre mode spills about 250 bytes a thread.
    """
    def band(centres: int) -> int:
        return max(16, _power_of_two(centres + 2 * window))  # tl.dot's least

    if share == "centre":
        block_t = _power_of_two(negative + 1)
        chunk = max(1, min(CHUNK, TARGETS // block_t))
        # Halved while the tile is past SCORES and its targets past tl.dot's 16.
        while chunk > 1 and chunk * block_t > 16 and band(chunk) * chunk * block_t > SCORES:
            chunk //= 2
        block_j = chunk * block_t
    else:
        chunk = CHUNK
        block_t = block_j = CHUNK + chunk_negatives(negative)
    block_b = band(chunk)
    block_d = 16 if share == "centre" else min(32, max(16, _power_of_two(dim)))
    return dict(CHUNK=chunk, BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_J=block_j, BLOCK_D=block_d,
                num_warps=8 if block_b * block_j >= 4096 else 4,
                enable_fp_fusion=True)  # fmt: skip


# The largest tiles the kernel is compiled for: a band of 512 rows and 32,768 scores (band
# rows x targets). Past them no GPU holds a program (on sm_90 a band of 1,024 rows asked 396
# KB of shared memory in chunk mode, and tiles of 32,768 292-322 KB: 64 x 512 and 32 x 1,024;
# an H100 or H200 has 227 KB), and item2vec's whole-sentence window (2^31 - 1) would ask
# Triton for a band of 2^33 rows. Under them, whether a tile fits is the GPU's to say
# (`_launch_error`): on a T4 (64 KB) centre mode's window 25 does not; chunk mode's 512 x 32
# (window 121-248) asks 204 KB, which an H100 has (BENCHMARKS.md, "The kernel's tiles
# against shared memory").
MAX_BAND = 512
MAX_SCORES = 1 << 15


def too_wide(window: int, negative: int, share: str) -> str | None:
    """Why the kernel cannot train these settings, past the tiles it compiles for; None if it
    can. Checked when the run resolves its backend (`backends.choose`)."""
    blocks = tiles(window, negative, 1, share)
    band, targets = int(blocks["BLOCK_B"]), int(blocks["BLOCK_J"])
    if band <= MAX_BAND and band * targets <= MAX_SCORES:
        return None
    return (f"model.window {window} and model.negative {negative} (share_negatives {share}) "
            f"make the Triton kernel's tile {band:,} band rows x {targets:,} targets, past the "
            f"{MAX_BAND} rows and {MAX_SCORES:,} scores it compiles for")
