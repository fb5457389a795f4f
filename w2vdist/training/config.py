"""The training config tree (`Config`, saved resolved as a run's `config.json`) and the
settings of `w2vdist train` and `w2vdist bench`.

A section per part of a run: data (the loader), model, optim, train, sync, checkpoint, wandb
and eval (the vectors' scores, `vectors.config`). Fields carry their meaning, default and
allowed values (`settings.setting`); each section validates itself on construction, naming
the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from w2vdist.errors import UsageError
from w2vdist.settings import check, check_choices, setting
from w2vdist.vectors.config import EvalConfig


# The longest wait a setting may ask for: every wait has a bound, and torch's timeouts are
# timedeltas, which overflow past 999,999,999 days (an infinite one stopped every rank).
DAY = 86_400.0


@dataclass
class DataConfig:
    """Where the prepared shards are and how they are streamed."""

    shards: str = setting("", "a `w2vdist prepare` output directory, or its URL (https://, "
                          "s3://, gs://...: each rank copies the shards it reads into "
                          "data.cache_dir) (required)", metavar="DIR")
    loader_workers: int = setting(-1, "loader processes per rank (0: in the training process; "
                                  "-1: 4 on CUDA, at most a GPU's cores less one, 1 on CPU; "
                                  "at most a rank's samples)")
    prefetch: int = setting(4, "chunks of samples (1M words or a batch, 8 bytes a word) a "
                            "worker reads ahead, at most 64")
    cache_dir: str = setting("", "where shards at a URL are copied (default: w2vdist's cache, "
                             "$XDG_CACHE_HOME/w2vdist/shards); node-local disk is best",
                             metavar="DIR")
    fetch_command: str = setting("", "command writing {url} to its output, for shards at a URL "
                                 "(default: Python's reader for http(s)://, aws s3 cp {url} - "
                                 "for s3://, gcloud storage cat {url} for gs://)", metavar="CMD")
    fetch_timeout_seconds: float = setting(60.0, "a copy from a URL that stalls this long is "
                                           "tried again (three times in all)")

    def __post_init__(self) -> None:
        check(self.loader_workers >= -1, "data.loader_workers",
              "must be >= -1 (-1: auto, 0: in the training process)")
        # The DataLoader asks each worker for `prefetch` chunks at once as it starts: a huge
        # count filled memory with requests and hung the run.
        check(1 <= self.prefetch <= 64, "data.prefetch", "must be in [1, 64]")
        check(0 < self.fetch_timeout_seconds <= DAY, "data.fetch_timeout_seconds",
              "must be in (0, 86400]")


@dataclass
class ModelConfig:
    """Skip-gram with negative sampling, with word2vec.c's meaning for each knob."""

    dim: int = setting(100, "vector dimensions")
    window: int = setting(5, "largest distance of a context word (drawn 1..window per word)")
    negative: int = setting(5, "negative samples per context")
    sample: float = setting(1e-4, "subsampling threshold of frequent words (0: none)")
    ns_exponent: float = setting(0.75, "negatives drawn by count ** exponent")
    share_negatives: str = setting("centre", "a centre's negatives serve its whole window "
                                   "(pWord2Vec); pair (torch, cpu-kernel): fresh per pair "
                                   "(word2vec.c); chunk (triton): one set per 16 centres, "
                                   "less traffic, slightly worse vectors (README)",
                                   choices=("centre", "pair", "chunk"))

    def __post_init__(self) -> None:
        check(self.dim >= 1, "model.dim", "must be >= 1")
        # The kernels take both as 32-bit integers (a window past the longest sentence is a
        # whole sentence: item2vec's window), and the CPU kernel a pair's K + 1 targets too.
        check(1 <= self.window < 2**31, "model.window", "must be in [1, 2^31)")
        check(1 <= self.negative < 2**31 - 1, "model.negative", "must be in [1, 2^31 - 1)")
        check_choices(self, "model")
        check(self.sample >= 0, "model.sample", "must be >= 0 (0: no subsampling)")
        check(0 <= self.ns_exponent <= 1, "model.ns_exponent", "must be in [0, 1]")


@dataclass
class OptimConfig:
    """Plain SGD with word2vec.c's linear decay from alpha to alpha * min_alpha_ratio.

    alpha 0 resolves per backend (`backends.alpha`), above word2vec.c's 0.025 (BENCHMARKS.md);
    damping -1 too (`backends.damping`).
    """

    alpha: float = setting(0.0, "starting learning rate (0: the backend's; see README)")
    min_alpha_ratio: float = setting(1e-4, "final learning rate as a share of alpha")
    batch_words: int = setting(0, "raw words per rank per step, on average (0: the "
                               "backend's default, see README, at most 1/32 of the corpus)")
    damping: float = setting(-1.0, "torch, triton: bounds the step of rows a batch (a GPU's "
                             "programs at once) updates many times (see sgns.apply, "
                             "crowd.Damping; -1: 0.3 for triton with share_negatives chunk, "
                             "else 0.1); 0: plain SGD")

    def __post_init__(self) -> None:
        check(math.isfinite(self.alpha) and self.alpha >= 0, "optim.alpha",
               "must be finite, >= 0 (0: the backend's)")
        check(math.isfinite(self.damping) and (self.damping >= 0 or self.damping == -1),
               "optim.damping", "must be finite, >= 0 (0: plain SGD) or -1 (the backend's)")
        check(0 <= self.min_alpha_ratio <= 1, "optim.min_alpha_ratio", "must be in [0, 1]")
        check(self.batch_words >= 0, "optim.batch_words", "must be >= 0 (0: the backend's)")


@dataclass
class TrainConfig:
    """The run itself: where it writes, for how long, on what."""

    run_dir: str = setting("runs/w2vdist", "where checkpoints, logs and metrics go",
                           metavar="DIR")
    epochs: int = setting(5, "passes over the corpus")
    device: str = setting("auto", "auto (cuda if available), cpu, cuda or cuda:N")
    backend: str = setting("auto", "the step's implementation (auto: the fused kernel of the "
                           "device where the sync strategy allows it)",
                           choices=("auto", "torch", "cpu-kernel", "triton"))
    seed: int = setting(1, "initial tables and every rank's sampling")
    init_from: str | None = setting(None, "start from these vectors (run directory, checkpoint "
                                    "or vectors file, or its URL): words they know keep their "
                                    "vectors, the others start as usual", metavar="PATH")
    threads: int = setting(0, "CPU threads per rank (0: all this process may use)")
    cuda_graph: bool | None = setting(None, "triton: capture the step in a CUDA graph and "
                                      "replay it, saving the host its launches (unset: on at "
                                      "steps of at most 32,768 words a rank, where it pays; "
                                      "--train.no-cuda-graph: never; README)")
    max_steps: int = setting(0, "stop after this many steps (0: the planned steps)")
    log_every_seconds: float = setting(5.0, "seconds between metrics records")

    def __post_init__(self) -> None:
        check_choices(self, "train")
        check(self.epochs >= 1, "train.epochs", "must be >= 1")
        check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "train.device",
            f"must be auto, cpu, cuda or cuda:N (got {self.device!r})",
        )
        check(0 <= self.threads <= 1024, "train.threads",
              "must be in [0, 1024] (0: all cores)")  # far more: thread creation fails
        check(self.max_steps >= 0, "train.max_steps", "must be >= 0 (0: the planned steps)")
        check(0 < self.log_every_seconds <= DAY, "train.log_every_seconds",
              "must be in (0, 86400]")


@dataclass
class SyncConfig:
    """How ranks agree on the tables (see README, "Synchronising ranks")."""

    strategy: str = setting("exact", "exact: share every step's gradients; local: train apart, "
                            "merge periodically", choices=("exact", "local"))
    every_steps: int = setting(0, "local: steps between full merges (0: about 1M words over "
                               "all ranks, 64k from 8 ranks)")
    hot_rows: int = setting(-1, "local: top rows merged often (-1: 2,000 on 2-3 ranks, else 5,000)")
    hot_every_steps: int = setting(0, "local: steps between merges of the hot rows (0: about "
                                   "16k words over all ranks)")
    curvature_weight: float = setting(0.1, "local: how much a rank's saturation of a row "
                                      "weighs in merges (0: sum the ranks' changes)")
    merge_time_share: float = setting(-1.0, "local: full merges taking more of the time are "
                                      "spaced out (-1: 0.1 on CUDA, 0: off, reproducible)")
    control_every_steps: int = setting(0, "steps between reads of loss and stop requests (0: "
                                       "every step on CPU, 4M words a rank on GPU)")
    timeout_seconds: float = setting(600.0, "a collective waiting longer fails the run")

    def __post_init__(self) -> None:
        check_choices(self, "sync")
        check(self.every_steps >= 0, "sync.every_steps", "must be >= 0 (0: auto)")
        check(self.hot_rows >= -1, "sync.hot_rows", "must be >= -1 (-1: auto, 0: none)")
        check(self.hot_every_steps >= 0, "sync.hot_every_steps", "must be >= 0 (0: auto)")
        check(math.isfinite(self.curvature_weight) and self.curvature_weight >= 0,
               "sync.curvature_weight", "must be a finite number >= 0 (0: sum the ranks' changes)")
        check(math.isfinite(self.merge_time_share) and self.merge_time_share < 1,
               "sync.merge_time_share", "must be below 1 (-1: auto, 0: off)")
        check(self.control_every_steps >= 0, "sync.control_every_steps", "must be >= 0 (0: auto)")
        check(0 < self.timeout_seconds <= DAY, "sync.timeout_seconds", "must be in (0, 86400]")


@dataclass
class CheckpointConfig:
    """Rank-0 step folders: periodic, final, the last `keep` kept."""

    every_steps: int = setting(0, "save every N steps (0: off)")
    every_minutes: float = setting(10.0, "save every M minutes (0: off)")
    keep: int = setting(2, "complete step folders kept")
    background: bool | None = setting(None, "write periodic checkpoints from a copy of the "
                                      "tables in host memory while training goes on (unset: "
                                      "on CUDA, where writing needs that copy anyway; "
                                      "--checkpoint.no-background: never)")

    def __post_init__(self) -> None:
        check(self.every_steps >= 0, "checkpoint.every_steps", "must be >= 0 (0: off)")
        check(0 <= self.every_minutes <= DAY / 60, "checkpoint.every_minutes",
              "must be in [0, 1440] (0: off)")
        check(self.keep >= 2, "checkpoint.keep", "must be >= 2")


@dataclass
class WandbConfig:
    """Weights & Biases, logged from rank 0."""

    mode: str = setting("auto", "auto: online with an API key, else offline",
                        choices=("auto", "online", "offline", "disabled"), aliases=("--wandb",))
    project: str = setting("w2vdist", "W&B project (else WANDB_PROJECT)")
    entity: str | None = setting(None, "W&B entity (else WANDB_ENTITY)")
    name: str | None = setting(None, "W&B run name (else the run directory's name)")
    tags: list[str] = setting([], "W&B tags, comma-separated")

    def __post_init__(self) -> None:
        check_choices(self, "wandb")


@dataclass
class Config:
    """Everything `w2vdist train` needs; saved resolved as `config.json` in the run directory."""

    data: DataConfig = setting(DataConfig, "")
    model: ModelConfig = setting(ModelConfig, "")
    optim: OptimConfig = setting(OptimConfig, "")
    train: TrainConfig = setting(TrainConfig, "")
    sync: SyncConfig = setting(SyncConfig, "")
    checkpoint: CheckpointConfig = setting(CheckpointConfig, "")
    wandb: WandbConfig = setting(WandbConfig, "")
    eval: EvalConfig = setting(EvalConfig, "")


@dataclass
class TrainCommand:
    """`w2vdist train`: the config tree, from a file and flags, and how to start."""

    config_file: str | None = setting(None, "YAML, TOML or JSON file of config sections "
                                      "(flags override it)", flag="--config", metavar="FILE")
    resume: str = setting("auto", "auto: continue from the run directory's newest complete "
                          "checkpoint if any; never: refuse a run directory that has one",
                          choices=("auto", "never"))
    dry_run: bool = setting(False, "print the resolved config, world size, shards per rank "
                            "and planned steps; train nothing", aliases=("--print-config",))
    config: Config = setting(Config, "", inline=True)

    def __post_init__(self) -> None:
        check_choices(self, "")


@dataclass
class BenchConfig:
    """`w2vdist bench`: what to time."""

    steps: int | None = setting(None, "time N steps")
    seconds: float | None = setting(None, "time S seconds (10 when neither this nor --steps)")
    warmup: int = setting(5, "untimed steps first")
    loader_only: bool = setting(False, "measure only shards -> device batches")
    synthetic_vocab: int | None = setting(None, "train on a Zipfian stream over V words "
                                          "instead of --data.shards")
    synthetic_tokens: int = setting(4_000_000, "tokens drawn up front and cycled (at least one "
                                    "batch)")
    synthetic_sentence: float = setting(20.0, "mean sentence length, geometric")
    synthetic_zipf: float = setting(1.0, "Zipf exponent: word of rank r drawn with "
                                    "probability ~ r^-S")
    json: str | None = setting(None, "also write settings and figures here", metavar="OUT")

    def __post_init__(self) -> None:
        def at_least(flag: str, value: float | None, low: float) -> None:
            if value is not None and not value >= low:
                raise UsageError(f"bench: --{flag} must be >= {low} (got {value})")

        if self.steps is not None and self.seconds is not None:
            raise UsageError("bench: give --steps or --seconds, not both")
        at_least("steps", self.steps, 1)
        at_least("warmup", self.warmup, 0)
        at_least("synthetic-vocab", self.synthetic_vocab, 1)
        at_least("synthetic-tokens", self.synthetic_tokens, 1)
        at_least("synthetic-sentence", self.synthetic_sentence, 1)
        at_least("synthetic-zipf", self.synthetic_zipf, 0)
        if self.seconds is not None and not 0 < self.seconds <= DAY:
            raise UsageError(f"bench: --seconds must be in (0, 86400] (got {self.seconds})")


@dataclass
class BenchCommand:
    """`w2vdist bench`: the training config and the measurement."""

    config_file: str | None = setting(None, "YAML, TOML or JSON file of config sections",
                                      flag="--config", metavar="FILE")
    bench: BenchConfig = setting(BenchConfig, "", inline=True)
    config: Config = setting(Config, "", inline=True)
