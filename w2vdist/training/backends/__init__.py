"""Training steps: one batch of raw tokens in, the tables updated, (loss sum, pairs) out.

`torch` (`reference.py`): the reference on any device. Subsampling, windows and negatives are
tensor ops on the device (`sampling.WindowSampler`), the update is the hand-written sparse
gradient of `sgns.py`, exchanged by the sync strategy before it is applied; the only backend
`sync.strategy=exact` can use.

`cpu-kernel` (`cpu.py`, `sgns_cpu.c`): word2vec.c's pair-at-a-time Hogwild SGD in compiled C,
a centre's negatives shared across its window by default (pWord2Vec), several times faster than
eager torch on CPU and better per word than word2vec.c; ranks agree through
`sync.strategy=local`.

`triton` (`gpu_step.py`, `triton.py`): subsampling in fixed shapes, then one fused Triton
launch that draws windows and negatives, scores and atomically adds the updates into both
tables, with no batch x (K+1) x dim intermediate; Hogwild within the batch, so
`sync.strategy=local` too; a row's updates damped where the GPU's resident programs crowd it
(`crowd.py`); optionally captured in a CUDA graph (`train.cuda_graph`).

A step takes the learning rate at the start and at the end of its words: the compiled kernel
decays it word by word, the batch steps use the mean (the rate at the batch's midpoint).
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import numpy as np
import torch

from w2vdist.errors import UsageError
from w2vdist.training.config import Config
from w2vdist.training.sampling import WindowSampler
from w2vdist.training.sgns import Embeddings
from w2vdist.training.sync import Sync

log = logging.getLogger("w2vdist")


class Step(Protocol):
    """Trains one batch; returns (loss summed over pairs, pairs) as 0-d tensors on the tables'
    device, which the loop reads only when it reports (a read waits for the device)."""

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def choose(cfg: Config, device: torch.device, world_size: int) -> str:
    """`auto`: a fused kernel for the device where the sync strategy allows it, else torch."""
    from w2vdist.training.backends import cpu, tiling, triton

    backend, model = cfg.train.backend, cfg.model
    share = model.share_negatives
    in_place_ok = world_size == 1 or cfg.sync.strategy == "local"
    if backend == "auto":
        if device.type == "cpu":
            backend = "cpu-kernel" if in_place_ok and cpu.available() else "torch"
            if in_place_ok and backend == "torch":
                log.warning("the compiled CPU kernel is unavailable (%s): training with the "
                            "torch backend, several times slower on CPU (BENCHMARKS.md); "
                            "install gcc or set CC", cpu.unavailable_reason())
        else:
            ok, why = triton.available()
            unfit = None  # what the kernel cannot train but the torch step can
            if share == "pair":  # word2vec.c's negatives, drawn for each pair
                unfit = ("model.share_negatives pair: the Triton kernel draws a centre's or a "
                         "chunk's negatives")
            elif share == "centre":
                unfit = tiling.too_wide(model.window, model.negative, share)
            backend = "triton" if in_place_ok and ok and not unfit else "torch"
            if in_place_ok and not ok:
                log.warning("the Triton kernel is unavailable (%s): training with the torch "
                            "backend, whose step materialises every pair's rows; pip install "
                            "'w2vdist[gpu]'", why)
            elif in_place_ok and unfit:
                log.warning("%s: training with the torch backend", unfit)
    if backend == "cpu-kernel" and device.type != "cpu":
        raise UsageError("config: train.backend cpu-kernel runs on train.device cpu only")
    if backend == "cpu-kernel" and not cpu.available():
        raise UsageError(f"config: train.backend cpu-kernel: {cpu.unavailable_reason()}")
    if backend == "triton":
        ok, why = triton.available()
        if not ok or device.type != "cuda":
            raise UsageError(f"config: train.backend triton needs a CUDA device ({why or 'cpu'})")
    if (backend, share) in (("torch", "chunk"), ("cpu-kernel", "chunk"), ("triton", "pair")):
        raise UsageError(f"config: model.share_negatives {share} is not a choice of the "
                         f"{backend} backend (torch, cpu-kernel: centre or pair; triton: "
                         "centre or chunk)")
    wide = tiling.too_wide(model.window, model.negative, share) if backend == "triton" else None
    if wide:
        raise UsageError(f"config: {wide}: use a smaller window or fewer negatives, or "
                         "train.backend torch with model.share_negatives centre")
    if cfg.train.cuda_graph and backend != "triton":
        raise UsageError(f"config: train.cuda_graph captures the Triton step on a CUDA device; "
                         f"this run's backend is {backend}")
    if backend in ("cpu-kernel", "triton") and not in_place_ok:
        raise UsageError(
            f"config: train.backend {backend} updates tables in place and cannot share exact "
            "gradients; use sync.strategy local or train.backend torch"
        )
    return backend


# Words per rank per step when optim.batch_words is 0: the torch step was measured at 4,096;
# the compiled kernel runs faster on larger blocks (one process: 65,536), but N ranks share
# LOCAL_STEP_WORDS a step so that `local` can merge the hot rows as often as
# `sync.resolved` asks (a merge waits for a step to end); the Triton step
# needs about 10^5-10^6 words to fill a GPU (its updates do not grow stale with the step: each
# misses only those of the programs resident beside it, `crowd.py`). Under `local` the ranks'
# tables drift apart for a whole step, so N GPUs share LOCAL_GPU_STEP_WORDS, down to
# GPU_STEP_WORDS_MIN a rank: emulated on CPU with the compiled kernel's per-pair updates,
# 8 ranks of 262,144-word steps scored 22.51% analogy against 25.58% at 65,536 (four seeds
# each), 4 ranks 25.96% at 262,144 and 27.04% at 131,072, 16 ranks 14.23% at 262,144, 19.62%
# at 65,536, 24.21% at 32,768 and 25.55% at 16,384 (BENCHMARKS.md): what counts is the words
# all ranks train apart. Smaller steps leave a GPU idler (gpu_check.sh's BENCH times them).
DEFAULT_BATCH_WORDS = {"torch": 4096, "triton": 1 << 18, "cpu-kernel": 65_536}
LOCAL_STEP_WORDS = 1 << 14
LOCAL_GPU_STEP_WORDS = 1 << 19
GPU_STEP_WORDS_MIN = 1 << 14
# The largest global step (words over all ranks) at which the batch-synchronous torch path
# measured within a point of 4,096-word steps, at its default learning rate for that step
# (`alpha`): 0.4 points below on the benchmark setting, 0.6 at dim 200, window 8, negative 10,
# sample 1e-5 (BENCHMARKS.md, two seeds or more each); `exact` defaults to it.
SYNC_STEP_WORDS = 65_536
# A corpus smaller than this many default steps gets steps of 1/EPOCH_STEPS_MIN of it (at
# least SMALL_STEP_WORDS a rank): an epoch then overshoots the corpus by under 1/32 of it,
# where a 100,000-word corpus in 262,144-word steps trained 2.6 passes an "epoch".
EPOCH_STEPS_MIN = 32
SMALL_STEP_WORDS = 256
# The largest step a rank (words) that `train.cuda_graph` left unset captures. A replay pays
# where the host's launches take longer than the kernel: on an H200 16,384-word steps went
# from 354-447 us to 190-305 us (1.47-1.86x), 65,536-word ones ran at 1.00-1.01x (BENCHMARKS.md,
# "The GPU step on an H200"). 32,768 words, not measured, lies between, and a replay was never
# measured slower than the eager step.
GRAPH_STEP_WORDS = 1 << 15


# Starting learning rates when optim.alpha is 0. The pair-at-a-time kernels (cpu-kernel, and
# triton, which makes the same per-pair updates) start at 0.05: with the corpus mixed (`chunks`)
# the best of 0.03-0.06 at the default sample 1e-4 (+0.33 analogy points over 0.04, five seeds,
# each ahead; with a centre's negatives shared, still the best of 0.04-0.06 over three seeds)
# and of 0.04-0.05 at 1e-3. The torch step's damping slows the rows a step updates
# many times, and the more the larger the step, so its rate grows with the global step: 0.06 up
# to 4,096 words (0.07 no better there), log-linear to 0.07 at SYNC_STEP_WORDS, the best of
# 0.06-0.08 there on the benchmark setting (BENCHMARKS.md, "... by step size"). Both rise with
# subsampling, log-linearly from model.sample 1e-4 to 3e-5 and held below: the kernels by 0.01
# (at 3e-5 and 1e-5 0.06 was the best of 0.05-0.07), torch by 0.02 (at dim 200, window 8,
# negative 10, sample 1e-5 its 0.06 scored 1.6 under 0.08 at 4,096 words and its 0.07 1.5
# under 0.09 at 65,536; BENCHMARKS.md, "... by subsampling", "... the corpus mixed").
PAIR_ALPHA = 0.05
# Several GPUs under `local` train tens of thousands of words a rank between merges, enough
# for every rank to saturate a frequent row, which the merge then gives about the mean of
# their changes: the rate that trains best rises with the ranks. Emulated on CPU at their
# default steps (BENCHMARKS.md, "Several GPUs' learning rate"), 0.05 lost 1.15 analogy
# points to 0.08 on 8 ranks of 65,536 words (four seeds, each behind), 0.73 to 0.07 on 4 of
# 131,072 and about 2 to 0.09 on 16 of 32,768; two ranks were level. 0.01 more per doubling
# of the ranks, up to 32.
GPU_RANKS_RISE = 0.01
GPU_RANKS_RISE_MAX = 0.05
TORCH_ALPHA = 0.06
TORCH_ALPHA_AT_SYNC_STEP = 0.07
SUBSAMPLING_SAMPLES = (1e-4, 3e-5)  # model.sample where the rates start and stop rising
PAIR_RISE = 0.01
TORCH_RISE = 0.02


def alpha(cfg: Config, world_size: int) -> float:
    """`optim.alpha` for the (chosen) backend; 0 means the backend's default, which rises with
    subsampling (`model.sample`), for torch with the global step, so `optim.batch_words`
    must be resolved (`batch_words`) first, and for triton with the ranks under `local`."""
    if cfg.optim.alpha:
        return cfg.optim.alpha
    high, low = SUBSAMPLING_SAMPLES
    sample = min(max(cfg.model.sample or high, low), high)  # 0: no subsampling
    if cfg.train.backend != "torch":
        ranks = 0.0
        if cfg.train.backend == "triton" and cfg.sync.strategy == "local" and world_size > 1:
            ranks = min(GPU_RANKS_RISE * math.log2(world_size), GPU_RANKS_RISE_MAX)
        return round(PAIR_ALPHA + ranks + _log_linear(sample, high, low, 0.0, PAIR_RISE), 6)
    small = DEFAULT_BATCH_WORDS["torch"]
    words = min(max(global_step_words(cfg, world_size), small), SYNC_STEP_WORDS)
    by_step = _log_linear(words, small, SYNC_STEP_WORDS, TORCH_ALPHA, TORCH_ALPHA_AT_SYNC_STEP)
    return round(by_step + _log_linear(sample, high, low, 0.0, TORCH_RISE), 6)


# optim.damping when -1. Centre mode's crowd (2,112 centres in flight on an H100/H200) and the
# torch step's batches train best at 0.1; `share_negatives chunk` was estimated at three
# programs an SM (the H200 ran two), 6,336 centres, whose crowd scored 1.5 points under 0.3
# at 0.1 with a centre's negatives and diverged with 5 shared a chunk; its 16 at 5/16 train at 0.1 too, a little below 0.3
# (BENCHMARKS.md, "The GPU kernel's crowd", "Chunk mode's negatives fill its tile").
DAMPING = 0.1
CHUNK_DAMPING = 0.3


def damping(cfg: Config) -> float:
    """`optim.damping` for the (chosen) backend; -1 means the backend's default."""
    if cfg.optim.damping >= 0:
        return cfg.optim.damping
    chunks = cfg.train.backend == "triton" and cfg.model.share_negatives == "chunk"
    return CHUNK_DAMPING if chunks else DAMPING


def cuda_graph(cfg: Config) -> bool:
    """`train.cuda_graph` for the (chosen) backend and step; unset (None): captured where it
    pays, the Triton step at GRAPH_STEP_WORDS a rank or fewer."""
    if cfg.train.cuda_graph is not None:
        return cfg.train.cuda_graph
    return cfg.train.backend == "triton" and cfg.optim.batch_words <= GRAPH_STEP_WORDS


def _log_linear(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    """y0 at x0 to y1 at x1, linear in log x (x between them)."""
    share = math.log(x / x0) / math.log(x1 / x0)
    return y0 + share * (y1 - y0)


def batch_words(cfg: Config, world_size: int, corpus_tokens: int) -> int:
    """`optim.batch_words` for the (chosen) backend, world and corpus; 0 means the backend's
    default, which shrinks with the ranks that share a merge (`local`) or one update
    (`exact`), and for a corpus of fewer than EPOCH_STEPS_MIN such steps."""
    if cfg.optim.batch_words:
        return cfg.optim.batch_words
    small = max(SMALL_STEP_WORDS, corpus_tokens // (EPOCH_STEPS_MIN * world_size))
    return min(small, _backend_words(cfg, world_size))


def _backend_words(cfg: Config, world_size: int) -> int:
    backend = cfg.train.backend
    words = DEFAULT_BATCH_WORDS[backend]
    if backend == "cpu-kernel":
        if world_size > 1:  # one process has nothing to merge: its blocks stay large
            words = max(1024, min(words, LOCAL_STEP_WORDS // world_size))
    elif backend == "triton" and world_size > 1:
        words = max(GPU_STEP_WORDS_MIN, min(words, LOCAL_GPU_STEP_WORDS // world_size))
    elif backend == "torch" and cfg.sync.strategy == "exact":
        words = max(256, min(words, SYNC_STEP_WORDS // world_size))
    return words


def global_step_words(cfg: Config, world_size: int) -> int:
    """The words one update is computed from: every rank's under `exact`, one rank's else."""
    return cfg.optim.batch_words * (world_size if cfg.sync.strategy == "exact" else 1)


def batch_warning(cfg: Config, words: int) -> str | None:
    """Why updates from `words` words (`global_step_words`) are too many for the
    batch-synchronous torch path, if they are."""
    if cfg.train.backend != "torch" or words <= SYNC_STEP_WORDS:
        return None
    return (
        f"the torch backend computes each step's {words:,} words (over all ranks under exact) "
        f"from the same old tables: above {SYNC_STEP_WORDS:,} words per step its vectors were "
        "measured worse (BENCHMARKS.md, large steps); use fewer words per step, or "
        "sync.strategy local"
    )


EDGE_LOSS = 0.02  # the share of a step's pairs its edge may cost before `train` warns


def edge_warning(window: int, rank_words: int, sentence_words: float = math.inf) -> str | None:
    """What steps of few words cost, if they are that few: a window never crosses a step's
    edge, so an edge loses (window + 1)(window + 2) / 3 pairs (dynamic windows), where a word
    makes window + 1 on average: a step of N words at least (window + 2) / 3N of its pairs
    (more where subsampling thins the step); and each step's fixed cost is paid for N words.
    A window reaches no farther than its sentence: past the corpus's mean `sentence_words`
    (item2vec's whole-sentence window, 2^31 - 1) the mean sentence is what an edge cuts."""
    reach = min(window, sentence_words)
    lost = min(1.0, (reach + 2) / (3 * max(rank_words, 1)))
    if lost <= EDGE_LOSS:
        return None
    enough = math.ceil((reach + 2) / (3 * EDGE_LOSS))
    return (f"steps of {rank_words:,} words a rank lose {lost:.0%} or more of their pairs "
            f"(a window never crosses a step's edge) and train slowly (each step's fixed cost "
            f"is paid for few words): use optim.batch_words {enough:,} or more, or 0 (the "
            "backend's)")


def negatives_warning(cfg: Config) -> str | None:
    """What `share_negatives chunk` costs the vectors, if the run shares them so."""
    if cfg.model.share_negatives != "chunk":
        return None
    return (
        "model.share_negatives chunk shares one set of negatives among 16 centres: emulated "
        "on CPU it scored about 1.5 analogy points under a centre's own on one GPU and 1.7 on "
        "eight (BENCHMARKS.md, \"Chunk mode's negatives fill its tile\", \"The crowd's "
        "memory\"); it saves the kernel memory traffic, not quality"
    )


def build(
    cfg: Config, tables: Embeddings, counts: np.ndarray, sync: Sync, generator: torch.Generator
) -> Step:
    """The step of the resolved `cfg.train.backend`."""
    counts_t = torch.from_numpy(np.asarray(counts, dtype=np.int64))
    sampler = WindowSampler(counts_t, cfg.model, generator, tables.input.device)
    if cfg.train.backend == "cpu-kernel":
        from w2vdist.training.backends.cpu import KernelStep

        return KernelStep(sampler, tables, cfg.train.threads, sync.saturation,
                          cfg.model.share_negatives == "centre")
    if cfg.train.backend == "triton":
        from w2vdist.training.backends.crowd import Damping
        from w2vdist.training.backends.gpu_step import GraphedStep, TritonStep

        factor, crowd = damping(cfg), None
        if factor:
            crowd = Damping.zeros(factor, tables.input.shape[0], tables.input.device)
        step = TritonStep(sampler, tables, sync.saturation, cfg.model.share_negatives, crowd)
        return GraphedStep(step) if cfg.train.cuda_graph else step
    from w2vdist.training.backends.reference import TorchStep

    return TorchStep(sampler, tables, sync, damping(cfg))
