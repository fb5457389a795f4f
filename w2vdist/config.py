"""The one typed configuration tree, and the root of every command's settings.

Every setting has a default, a meaning and (where it has a fixed set) its allowed values here;
`settings.py` turns the tree into flags (`--section.field value`) and reads YAML/TOML/JSON
files into it. Each dataclass validates itself on construction, so an invalid value fails
before any work starts, with a message naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from w2vdist.errors import UsageError
from w2vdist.settings import check_choices, setting

TABLES = ("input", "output", "average")


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise UsageError(f"config: {name} {message}")


@dataclass
class PrepareConfig:
    """`w2vdist prepare`: corpus text to vocabulary and WebDataset shards."""

    inputs: list[str] = setting([], "text files (.txt, .gz, .bz2), directories or globs",
                                positional=True, metavar="INPUT")
    output: str = setting("", "output directory", short="-o", metavar="OUT")
    tokenizer: str = setting("default", "how lines become words: default (Unicode words), "
                             "nltk's wordpunct or toktok, or whitespace",
                             choices=("default", "wordpunct", "toktok", "whitespace"))
    lowercase: bool = setting(True, "lowercase the text")
    normalize: str = setting("nfc", "Unicode normalization before tokenizing (NFC: é typed "
                             "as e + accent and as one character are the same word)",
                             choices=("nfc", "nfkc", "none"))
    encoding: str = setting("utf-8", "the text's encoding (any ASCII-compatible codec, e.g. "
                            "latin-1, cp1252)")
    stem: str | None = setting(None, "Snowball stemming in this language, e.g. english",
                               metavar="LANG")
    stopwords: str | None = setting(None, "remove the words in FILE (one per line)",
                                    metavar="FILE")
    vocab: str | None = setting(None, "take the vocabulary from FILE (a vocab.tsv, or 'word "
                                "count' lines as word2vec -save-vocab writes) instead of "
                                "counting one; min_count and max_vocab still apply",
                                metavar="FILE")
    min_count: int = setting(5, "drop words seen fewer times")
    max_vocab: int = setting(0, "keep only the N most frequent words (0: no limit)")
    shard_tokens: int = setting(10_000_000, "tokens per shard")
    block_tokens: int = setting(65_536, "tokens per sample")
    max_sentence_len: int = setting(10_000, "cut longer lines into sentences of N tokens")
    workers: int = setting(0, "worker processes (0: all cores)")
    overwrite: bool = setting(False, "replace an existing OUT (once the new one is complete)")

    def __post_init__(self) -> None:
        check_choices(self, "prepare")
        try:
            ascii_safe = "a\n".encode(self.encoding) == b"a\n"
        except LookupError:
            raise UsageError(f"config: prepare.encoding: unknown encoding {self.encoding!r}") from None
        _check(ascii_safe, "prepare.encoding", f"{self.encoding!r} is not ASCII-compatible")
        if self.stem is not None:
            from nltk.stem.snowball import SnowballStemmer  # slow import: only when asked for

            _check(self.stem in SnowballStemmer.languages, "prepare.stem",
                   f"must be one of {', '.join(SnowballStemmer.languages)} (got {self.stem!r})")
        _check(self.min_count >= 1, "prepare.min_count", "must be >= 1")
        _check(self.max_vocab >= 0, "prepare.max_vocab", "must be >= 0 (0: no limit)")
        _check(self.shard_tokens >= 1, "prepare.shard_tokens", "must be >= 1")
        _check(self.block_tokens >= 1, "prepare.block_tokens", "must be >= 1")
        _check(self.max_sentence_len >= 2, "prepare.max_sentence_len", "must be >= 2")
        _check(self.workers >= 0, "prepare.workers", "must be >= 0 (0: all cores)")


@dataclass(frozen=True)
class SynthConfig:
    """`w2vdist synth`: generator settings, saved in `synth.json` so that a corpus can be
    regenerated exactly."""

    seed: int = setting(0, "random seed; the same seed gives the same bytes")
    sentences: int = setting(160_000, "number of sentences, about 10.5 tokens each")
    groups: int = setting(4, "topic groups, 5 topics each")
    topic_words: int = setting(20, "words per topic")
    pairs: int = setting(30, "pairs per relation (each gives pairs * (pairs - 1) analogy "
                         "questions)")
    filler_words: int = setting(3000, "size of the Zipfian filler vocabulary")
    zipf_exponent: float = setting(1.0, "filler word frequency ~ rank ** -exponent")

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "synth.seed", "must be >= 0")
        _check(self.sentences >= 100, "synth.sentences", "must be >= 100")
        _check(self.groups >= 2, "synth.groups", "must be >= 2")
        _check(self.topic_words >= 2, "synth.topic_words", "must be >= 2")
        _check(self.pairs >= 3, "synth.pairs", "must be >= 3")
        _check(self.filler_words >= 10, "synth.filler_words", "must be >= 10")
        _check(self.zipf_exponent > 0, "synth.zipf_exponent", "must be > 0")


@dataclass
class SynthCommand:
    """`w2vdist synth OUT_DIR`."""

    out_dir: str = setting("", "directory to write the files into", positional=True)
    overwrite: bool = setting(False, "replace existing output files")
    synth: SynthConfig = setting(SynthConfig, "", inline=True)


@dataclass
class DataConfig:
    """Where the prepared shards are and how they are streamed."""

    shards: str = setting("", "a `w2vdist prepare` output directory (required)", metavar="DIR")
    loader_workers: int = setting(1, "loader processes per rank (0: in the training process)")
    prefetch: int = setting(4, "chunks of samples (1M words or a batch) a worker reads ahead")

    def __post_init__(self) -> None:
        _check(self.loader_workers >= 0, "data.loader_workers", "must be >= 0")
        _check(self.prefetch >= 1, "data.prefetch", "must be >= 1")


@dataclass
class ModelConfig:
    """Skip-gram with negative sampling, with word2vec.c's meaning for each knob."""

    dim: int = setting(100, "vector dimensions")
    window: int = setting(5, "largest distance of a context word (drawn 1..window per word)")
    negative: int = setting(5, "negative samples per context")
    sample: float = setting(1e-4, "subsampling threshold of frequent words (0: none)")
    ns_exponent: float = setting(0.75, "negatives drawn by count ** exponent")
    share_negatives: str = setting("centre", "a centre's negatives serve its whole window "
                                   "(pWord2Vec); pair (torch): fresh per pair (word2vec.c, "
                                   "cpu-kernel); chunk (triton): per 16 centres",
                                   choices=("centre", "pair", "chunk"))

    def __post_init__(self) -> None:
        _check(self.dim >= 1, "model.dim", "must be >= 1")
        _check(self.window >= 1, "model.window", "must be >= 1")
        _check(self.negative >= 1, "model.negative", "must be >= 1")
        check_choices(self, "model")
        _check(self.sample >= 0, "model.sample", "must be >= 0 (0: no subsampling)")
        _check(0 <= self.ns_exponent <= 1, "model.ns_exponent", "must be in [0, 1]")


@dataclass
class OptimConfig:
    """Plain SGD with word2vec.c's linear decay from alpha to alpha * min_alpha_ratio.

    alpha 0 resolves per backend (`backends.alpha`), above word2vec.c's 0.025 (BENCHMARKS.md).
    """

    alpha: float = setting(0.0, "starting learning rate (0: the backend's; see README)")
    min_alpha_ratio: float = setting(1e-4, "final learning rate as a share of alpha")
    batch_words: int = setting(0, "raw words per rank per step, on average (0: the "
                               "backend's default, see README)")
    damping: float = setting(0.1, "torch: bounds the step of rows a batch updates many times "
                             "(see sgns.apply); 0: plain SGD on the batch")

    def __post_init__(self) -> None:
        _check(math.isfinite(self.alpha) and self.alpha >= 0, "optim.alpha",
               "must be finite, >= 0 (0: the backend's)")
        _check(math.isfinite(self.damping) and self.damping >= 0, "optim.damping",
               "must be finite, >= 0 (0: plain SGD)")
        _check(0 <= self.min_alpha_ratio <= 1, "optim.min_alpha_ratio", "must be in [0, 1]")
        _check(self.batch_words >= 0, "optim.batch_words", "must be >= 0 (0: the backend's)")


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
                                    "or vectors file): words they know keep their vectors, "
                                    "the others start as usual", metavar="PATH")
    threads: int = setting(0, "CPU threads per rank (0: all this process may use)")
    max_steps: int = setting(0, "stop after this many steps (0: the planned steps)")
    log_every_seconds: float = setting(5.0, "seconds between metrics records")

    def __post_init__(self) -> None:
        check_choices(self, "train")
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "train.device",
            f"must be auto, cpu, cuda or cuda:N (got {self.device!r})",
        )
        _check(self.threads >= 0, "train.threads", "must be >= 0 (0: all cores)")
        _check(self.max_steps >= 0, "train.max_steps", "must be >= 0 (0: the planned steps)")
        _check(self.log_every_seconds > 0, "train.log_every_seconds", "must be > 0")


@dataclass
class SyncConfig:
    """How ranks agree on the tables (see README, "Synchronising ranks")."""

    strategy: str = setting("exact", "exact: share every step's gradients; local: train apart, "
                            "merge periodically", choices=("exact", "local"))
    every_steps: int = setting(0, "local: steps between full merges (0: about 1M words over "
                               "all ranks)")
    hot_rows: int = setting(-1, "local: top rows merged often (-1: 2,000 on 2-3 ranks, else 5,000)")
    hot_every_steps: int = setting(0, "local: steps between merges of the hot rows (0: about "
                                   "16k words over all ranks)")
    curvature_weight: float = setting(0.1, "local: how much a rank's saturation of a row "
                                      "weighs in merges (0: sum the ranks' changes)")
    merge_time_share: float = setting(-1.0, "local: full merges taking more of the time are "
                                      "spaced out (-1: 0.1 on CUDA, 0: off, reproducible)")
    control_every_steps: int = setting(0, "steps between reads of loss and stop requests (0: "
                                       "every step on CPU, 256k words over ranks on GPU)")
    timeout_seconds: float = setting(600.0, "a collective waiting longer fails the run")

    def __post_init__(self) -> None:
        check_choices(self, "sync")
        _check(self.every_steps >= 0, "sync.every_steps", "must be >= 0 (0: about 1M words)")
        _check(self.hot_rows >= -1, "sync.hot_rows", "must be >= -1 (-1: auto, 0: none)")
        _check(self.hot_every_steps >= 0, "sync.hot_every_steps", "must be >= 0 (0: auto)")
        _check(math.isfinite(self.curvature_weight) and self.curvature_weight >= 0,
               "sync.curvature_weight", "must be a finite number >= 0 (0: sum the ranks' changes)")
        _check(math.isfinite(self.merge_time_share) and self.merge_time_share < 1,
               "sync.merge_time_share", "must be below 1 (-1: auto, 0: off)")
        _check(self.control_every_steps >= 0, "sync.control_every_steps", "must be >= 0 (0: auto)")
        _check(self.timeout_seconds > 0, "sync.timeout_seconds", "must be > 0")


@dataclass
class CheckpointConfig:
    """Rank-0 step folders: periodic, final, the last `keep` kept."""

    every_steps: int = setting(0, "save every N steps (0: off)")
    every_minutes: float = setting(10.0, "save every M minutes (0: off)")
    keep: int = setting(2, "complete step folders kept")

    def __post_init__(self) -> None:
        _check(self.every_steps >= 0, "checkpoint.every_steps", "must be >= 0 (0: off)")
        _check(self.every_minutes >= 0, "checkpoint.every_minutes", "must be >= 0 (0: off)")
        _check(self.keep >= 2, "checkpoint.keep", "must be >= 2")


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
class EvalConfig:
    """Word-vector scores: at each checkpoint of a run, and by `w2vdist eval`."""

    analogies: str | None = setting(None, "questions-words file (3CosAdd accuracy)",
                                    metavar="FILE")
    similarity: str | None = setting(None, "'word word score' pairs file (Spearman)",
                                     metavar="FILE")
    restrict_vocab: int = setting(30_000, "score over the N most frequent words")
    probe_words: list[str] = setting([], "words whose nearest neighbours W&B shows at each "
                                     "eval (default: ten past the 50 commonest)")

    def __post_init__(self) -> None:
        _check(self.restrict_vocab >= 1, "eval.restrict_vocab", "must be >= 1")


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
        if self.seconds is not None and not self.seconds > 0:
            raise UsageError(f"bench: --seconds must be > 0 (got {self.seconds})")


@dataclass
class BenchCommand:
    """`w2vdist bench`: the training config and the measurement."""

    config_file: str | None = setting(None, "YAML, TOML or JSON file of config sections",
                                      flag="--config", metavar="FILE")
    bench: BenchConfig = setting(BenchConfig, "", inline=True)
    config: Config = setting(Config, "", inline=True)


@dataclass
class EvalCommand:
    """`w2vdist eval VECTORS`: the same `eval` section as a training run's."""

    vectors: str = setting("", "word2vec file (text or binary), run directory or checkpoint "
                           "folder", positional=True)
    eval: EvalConfig = setting(EvalConfig, "")
    table: str = setting("input", "checkpoint table to score", choices=TABLES)
    json: str | None = setting(None, "also write the numbers to this JSON file", metavar="OUT")

    def __post_init__(self) -> None:
        check_choices(self, "")


@dataclass
class ExportCommand:
    """`w2vdist export RUN -o OUT`."""

    source: str = setting("", "run directory or checkpoint folder", positional=True,
                          metavar="RUN_DIR_OR_CHECKPOINT")
    output: str = setting("", "vectors file to write (required)", short="-o", metavar="OUT")
    format: str | None = setting(None, "word2vec format (default: by OUT's extension, .bin "
                                 "binary, else text)", choices=("text", "binary"))
    table: str = setting("input", "input (word) vectors, output (context) vectors or their "
                         "average", choices=TABLES)
    counts: str | None = setting(None, "also write 'word count' lines (word2vec -save-vocab)",
                                 metavar="FILE")
    skip_unwritable: bool = setting(False, "leave out words that are empty or contain "
                                    "whitespace instead of refusing to export")

    def __post_init__(self) -> None:
        check_choices(self, "")
        _check(bool(self.output), "-o/--output", "is required (the vectors file to write)")


@dataclass
class NeighborsCommand:
    """`w2vdist neighbors VECTORS WORD...`."""

    vectors: str = setting("", "word2vec file (text or binary), run directory or checkpoint "
                           "folder", positional=True)
    words: list[str] = setting([], "words to look up", positional=True, metavar="WORD")
    k: int = setting(10, "neighbours per word", short="-k")
    table: str = setting("input", "checkpoint table to search", choices=TABLES)

    def __post_init__(self) -> None:
        check_choices(self, "")
        _check(self.k >= 1, "-k", "must be >= 1")
