"""Training steps: one batch of raw tokens in, the tables updated, (loss sum, pairs) out.

`torch`: the reference path on any device. Subsampling, windows and negatives are tensor ops
on the device, the update is the hand-written sparse gradient of `sgns.py`, exchanged by the
sync strategy before it is applied; it is the only path `sync.strategy=exact` can use.

`cpu-kernel`: word2vec.c's pair-at-a-time Hogwild SGD in compiled C (`kernels/`), several
times faster than eager torch on CPU and as good per word as word2vec.c; ranks agree through
`sync.strategy=local`.

`triton`: the torch path's sampling, then one fused Triton launch that gathers, scores and
atomically adds the updates into both tables (`kernels/triton_sgns.py`), with no
batch x (K+1) x dim intermediate; Hogwild within the batch, so `sync.strategy=local` too.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import torch

from w2vdist.config import Config
from w2vdist.errors import UsageError
from w2vdist.train.sampling import NegativeSampler, keep_probabilities, subsample, windows
from w2vdist.train.sgns import Embeddings, apply, gradients
from w2vdist.train.sync import Saturation, Sync


class Step(Protocol):
    name: str

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[float, int]: ...


class TorchStep:
    name = "torch"

    def __init__(
        self,
        tables: Embeddings,
        counts: torch.Tensor,
        cfg: Config,
        sync: Sync,
        generator: torch.Generator,
    ) -> None:
        device = tables.input.device
        self.tables = tables
        self.keep = keep_probabilities(counts, cfg.model.sample).to(device)
        self.negatives = NegativeSampler(counts, cfg.model.ns_exponent, device)
        self.window = cfg.model.window
        self.negative = cfg.model.negative
        self.shared_negatives = cfg.model.shared_negatives
        self.damping = cfg.optim.damping
        self.sync = sync
        self.generator = generator

    def sample(
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

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[float, int]:
        centres, contexts, mask, negatives = self.sample(tokens, sentence)
        grads = self.sync.exchange(gradients(self.tables, centres, contexts, negatives, mask))
        apply(self.tables, grads, lr_start, self.damping, self.sync.saturation)
        return float(grads.loss), grads.pairs


class TritonStep(TorchStep):
    name = "triton"

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[float, int]:
        from w2vdist.train.backends.triton import sgns_step

        centres, contexts, mask, negatives = self.sample(tokens, sentence)
        if mask is not None:
            contexts = contexts.masked_fill(~mask, -1)  # the kernel's "no context"
        loss, pairs = sgns_step(
            self.tables.input.data, self.tables.output.data, centres, contexts, negatives,
            lr_start, saturation=self.sync.saturation,
        )
        return float(loss), int(pairs)


class KernelStep:
    name = "cpu-kernel"

    def __init__(
        self,
        tables: Embeddings,
        counts: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        threads: int,
        saturation: Saturation | None,
    ) -> None:
        from w2vdist.train.backends import cpu

        self.kernel = cpu
        self.tables = tables
        self.keep = keep_probabilities(counts, cfg.model.sample).contiguous()
        self.table = cpu.unigram_table(counts.numpy(), cfg.model.ns_exponent)
        self.window = cfg.model.window
        self.negative = cfg.model.negative
        self.generator = generator
        self.threads = threads
        self.saturation = saturation

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[float, int]:
        lengths = torch.unique_consecutive(sentence, return_counts=True)[1]
        seed = int(torch.randint(1, 2**62, (1,), generator=self.generator))
        loss, pairs, _ = self.kernel.train_block(
            tokens.to(torch.int32),
            lengths.to(torch.int32),
            self.tables.input.data,
            self.tables.output.data,
            self.keep,
            self.table,
            window=self.window,
            negative=self.negative,
            alpha_start=lr_start,
            alpha_end=lr_end,
            seed=seed,
            threads=self.threads,
            saturation=self.saturation,
        )
        return float(loss), int(pairs)


def choose_backend(cfg: Config, device: torch.device, world_size: int) -> str:
    """`auto`: a fused kernel for the device where the sync strategy allows it, else torch."""
    from w2vdist.train.backends import cpu, triton as triton_sgns

    backend = cfg.train.backend
    in_place_ok = world_size == 1 or cfg.sync.strategy == "local"
    if backend == "auto":
        if device.type == "cpu":
            backend = "cpu-kernel" if in_place_ok and cpu.available() else "torch"
        else:
            backend = "triton" if in_place_ok and triton_sgns.available()[0] else "torch"
    if backend == "cpu-kernel" and device.type != "cpu":
        raise UsageError("config: train.backend cpu-kernel runs on train.device cpu only")
    if backend == "cpu-kernel" and not cpu.available():
        raise UsageError(f"config: train.backend cpu-kernel: {cpu.unavailable_reason()}")
    if backend == "triton":
        ok, why = triton_sgns.available()
        if not ok or device.type != "cuda":
            raise UsageError(f"config: train.backend triton needs a CUDA device ({why or 'cpu'})")
    if backend in ("cpu-kernel", "triton") and not in_place_ok:
        raise UsageError(
            f"config: train.backend {backend} updates tables in place and cannot share exact "
            "gradients; use sync.strategy local or train.backend torch"
        )
    return backend


# Words per rank per step when optim.batch_words is 0: the torch step was measured at 4,096;
# the compiled kernel runs faster on larger blocks, up to LOCAL_STEP_WORDS over all ranks so
# that `local` can merge the hot rows as often as `sync.with_merge_interval` asks.
DEFAULT_BATCH_WORDS = {"torch": 4096, "triton": 4096, "cpu-kernel": 65_536}
LOCAL_STEP_WORDS = 1 << 18
# The largest global step (words over all ranks) at which the batch-synchronous torch path
# measured within a point of 4,096-word steps (BENCHMARKS.md); `exact` ranks default to it.
SYNC_STEP_WORDS = 16_384


def with_batch_words(cfg: Config, backend: str, world_size: int = 1) -> Config:
    """The config with `optim.batch_words` resolved for the backend and world (0: default)."""
    if cfg.optim.batch_words:
        return cfg
    words = DEFAULT_BATCH_WORDS[backend]
    if backend == "cpu-kernel":
        words = max(4096, min(words, LOCAL_STEP_WORDS // world_size))
    elif backend == "torch" and cfg.sync.strategy == "exact":
        words = max(256, min(words, SYNC_STEP_WORDS // world_size))
    optim = dataclasses.replace(cfg.optim, batch_words=words)
    return dataclasses.replace(cfg, optim=optim)


def batch_warning(backend: str, cfg: Config, world_size: int) -> str | None:
    """Why a global step is too large for the batch-synchronous torch path, if it is."""
    if backend != "torch":
        return None
    words = cfg.optim.batch_words * (world_size if cfg.sync.strategy == "exact" else 1)
    if words <= SYNC_STEP_WORDS:
        return None
    return (
        f"the torch backend computes each step's {words:,} words (over all ranks under exact) "
        f"from the same old tables: above {SYNC_STEP_WORDS:,} words per step its vectors were "
        "measured worse (BENCHMARKS.md, large steps); use fewer words per step, or "
        "sync.strategy local"
    )


def build_step(
    backend: str,
    tables: Embeddings,
    counts: np.ndarray,
    cfg: Config,
    sync: Sync,
    generator: torch.Generator,
    threads: int,
) -> Step:
    counts_t = torch.from_numpy(np.asarray(counts, dtype=np.int64))
    if backend == "cpu-kernel":
        return KernelStep(tables, counts_t, cfg, generator, threads, sync.saturation)
    if backend == "triton":
        return TritonStep(tables, counts_t, cfg, sync, generator)
    return TorchStep(tables, counts_t, cfg, sync, generator)
