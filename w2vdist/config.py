"""The one typed configuration tree.

Every setting has a default here, can come from a YAML or TOML file, and can be overridden on
the command line as ``--section.field value``. Each dataclass validates itself on construction,
so an invalid value fails before any work starts, with a message naming the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from w2vdist.errors import UsageError


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise UsageError(f"config: {name} {message}")


def _choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, name, f"must be one of {', '.join(choices)} (got {value!r})")


@dataclass
class PrepareConfig:
    """`w2vdist prepare`: corpus text to vocabulary and WebDataset shards."""

    inputs: list[str] = field(default_factory=list)
    output: str = ""
    tokenizer: str = "default"
    lowercase: bool = True
    stem: str | None = None
    stopwords: str | None = None
    min_count: int = 5
    max_vocab: int = 0
    shard_tokens: int = 10_000_000
    block_tokens: int = 65_536
    max_sentence_len: int = 10_000
    workers: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        _choice(self.tokenizer, "prepare.tokenizer", ("default", "wordpunct", "toktok", "whitespace"))
        if self.stem is not None:
            from nltk.stem.snowball import SnowballStemmer  # slow import: only when asked for

            _choice(self.stem, "prepare.stem", SnowballStemmer.languages)
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

    seed: int = 0
    sentences: int = 160_000
    groups: int = 4
    topic_words: int = 20
    pairs: int = 30
    filler_words: int = 3000
    zipf_exponent: float = 1.0

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "synth.seed", "must be >= 0")
        _check(self.sentences >= 100, "synth.sentences", "must be >= 100")
        _check(self.groups >= 2, "synth.groups", "must be >= 2")
        _check(self.topic_words >= 2, "synth.topic_words", "must be >= 2")
        _check(self.pairs >= 3, "synth.pairs", "must be >= 3")
        _check(self.filler_words >= 10, "synth.filler_words", "must be >= 10")
        _check(self.zipf_exponent > 0, "synth.zipf_exponent", "must be > 0")


@dataclass
class DataConfig:
    """Where the prepared shards are and how they are streamed."""

    shards: str = ""
    loader_workers: int = 1
    prefetch: int = 4

    def __post_init__(self) -> None:
        _check(self.loader_workers >= 0, "data.loader_workers", "must be >= 0")
        _check(self.prefetch >= 1, "data.prefetch", "must be >= 1")


@dataclass
class ModelConfig:
    """Skip-gram with negative sampling, with word2vec.c's meaning for each knob.

    `shared_negatives` (torch path): a centre word's K negatives serve all its window's
    contexts, as pWord2Vec does, instead of K fresh ones per pair as word2vec.c draws.
    """

    dim: int = 100
    window: int = 5
    negative: int = 5
    sample: float = 1e-4
    ns_exponent: float = 0.75
    shared_negatives: bool = True

    def __post_init__(self) -> None:
        _check(self.dim >= 1, "model.dim", "must be >= 1")
        _check(self.window >= 1, "model.window", "must be >= 1")
        _check(self.negative >= 1, "model.negative", "must be >= 1")
        _check(self.sample >= 0, "model.sample", "must be >= 0 (0: no subsampling)")
        _check(0 <= self.ns_exponent <= 1, "model.ns_exponent", "must be in [0, 1]")


@dataclass
class OptimConfig:
    """Plain SGD with word2vec.c's linear decay from alpha to alpha * min_alpha_ratio.

    alpha defaults to 0.04, above word2vec.c's 0.025 for skip-gram: both backends score higher
    with it on the benchmark corpus (BENCHMARKS.md); 0.025 gives word2vec.c's schedule.

    `damping` bounds the step of rows a batch updates many times on the torch path
    (see `sgns.apply`); 0 is plain SGD on the batch. `batch_words` (raw words per rank per
    step) 0 picks the backend's default (`steps.DEFAULT_BATCH_WORDS`).
    """

    alpha: float = 0.04
    min_alpha_ratio: float = 1e-4
    batch_words: int = 0
    damping: float = 0.1

    def __post_init__(self) -> None:
        _check(math.isfinite(self.alpha) and self.alpha > 0, "optim.alpha", "must be finite, > 0")
        _check(
            math.isfinite(self.damping) and self.damping >= 0,
            "optim.damping",
            "must be finite, >= 0 (0: plain SGD)",
        )
        _check(0 <= self.min_alpha_ratio <= 1, "optim.min_alpha_ratio", "must be in [0, 1]")
        _check(self.batch_words >= 0, "optim.batch_words", "must be >= 0 (0: the backend's)")


@dataclass
class TrainConfig:
    """The run itself: where it writes, for how long, on what."""

    run_dir: str = "runs/w2vdist"
    epochs: int = 5
    device: str = "auto"
    backend: str = "auto"
    seed: int = 1
    threads: int = 0
    max_steps: int = 0
    log_every_seconds: float = 5.0

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "train.device",
            f"must be auto, cpu, cuda or cuda:N (got {self.device!r})",
        )
        _choice(self.backend, "train.backend", ("auto", "torch", "cpu-kernel", "triton"))
        _check(self.threads >= 0, "train.threads", "must be >= 0 (0: all cores)")
        _check(self.max_steps >= 0, "train.max_steps", "must be >= 0 (0: the planned steps)")
        _check(self.log_every_seconds > 0, "train.log_every_seconds", "must be > 0")


@dataclass
class SyncConfig:
    """How ranks agree on the tables (see README, "Synchronising ranks")."""

    strategy: str = "exact"
    every_steps: int = 0  # local: steps between full merges; 0: about 1M words over all ranks
    hot_rows: int = 5000  # local: the most frequent rows, merged every hot_every_steps steps
    hot_every_steps: int = 0  # 0: about 256k words over all ranks
    curvature_weight: float = 0.1  # local: how much a rank's saturation weighs in merges
    timeout_seconds: float = 600.0

    def __post_init__(self) -> None:
        _choice(self.strategy, "sync.strategy", ("exact", "local"))
        _check(self.every_steps >= 0, "sync.every_steps", "must be >= 0 (0: about 1M words)")
        _check(self.hot_rows >= 0, "sync.hot_rows", "must be >= 0 (0: whole table only)")
        _check(self.hot_every_steps >= 0, "sync.hot_every_steps", "must be >= 0 (0: auto)")
        _check(
            math.isfinite(self.curvature_weight) and self.curvature_weight >= 0,
            "sync.curvature_weight",
            "must be a finite number >= 0 (0: sum the ranks' changes)",
        )
        _check(self.timeout_seconds > 0, "sync.timeout_seconds", "must be > 0")


@dataclass
class CheckpointConfig:
    """Rank-0 step folders: periodic, final, the last `keep` kept."""

    every_steps: int = 0
    every_minutes: float = 10.0
    keep: int = 2

    def __post_init__(self) -> None:
        _check(self.every_steps >= 0, "checkpoint.every_steps", "must be >= 0 (0: off)")
        _check(self.every_minutes >= 0, "checkpoint.every_minutes", "must be >= 0 (0: off)")
        _check(self.keep >= 2, "checkpoint.keep", "must be >= 2")


@dataclass
class WandbConfig:
    """Weights & Biases, logged from rank 0. `auto`: online with an API key, else offline."""

    mode: str = "auto"
    project: str = "w2vdist"
    entity: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _choice(self.mode, "wandb.mode", ("auto", "online", "offline", "disabled"))


@dataclass
class EvalConfig:
    """Scored at each checkpoint when files are given."""

    analogies: str | None = None
    similarity: str | None = None
    restrict_vocab: int = 30_000

    def __post_init__(self) -> None:
        _check(self.restrict_vocab >= 1, "eval.restrict_vocab", "must be >= 1")


@dataclass
class Config:
    """Everything `w2vdist train` needs; saved resolved as `config.json` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ---------------------------------------------------------------------------------------------
# Building a tree from files, dictionaries and command-line strings.


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert a value read from YAML/TOML/JSON or the command line to the field's type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], name)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config: {name} must be a list (got {value!r})")
        return [_coerce(v, item, name) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"config: {name} must be true or false (got {value!r})")
    if tp in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"config: {name} must be a number (got {value!r})")
        try:
            number = tp(value) if tp is float else int(float(value)) if _integral(value) else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            kind = "an integer" if tp is int else "a number"
            raise UsageError(f"config: {name} must be {kind} (got {value!r})")
        return number
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise UsageError(f"config: {name} must be a string (got {value!r})")
        return str(value)
    raise TypeError(f"unsupported config type {tp} for {name}")


def _integral(value: Any) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from nested dict `data`, refusing unknown keys by name."""
    if not isinstance(data, dict):
        raise UsageError(f"config: {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(
            f"config: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if _is_dataclass_type(tp):
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a nested dict."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"{p}: not a valid config file: {first}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{p}: a config file must hold a mapping of sections")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge: `overrides` wins, sections merge key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def dotted_to_nested(pairs: dict[str, Any]) -> dict[str, Any]:
    """{'model.dim': '300'} -> {'model': {'dim': '300'}}."""
    nested: dict[str, Any] = {}
    for key, value in pairs.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted name, type, default) for every leaf of the tree, in declaration order."""
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            out.extend(leaf_fields(tp, f"{prefix}{f.name}."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append((f"{prefix}{f.name}", tp, default))
    return out


def add_arguments(parser: argparse.ArgumentParser, cls: type = Config) -> None:
    """Add `--section.field VALUE` for every leaf of the tree; unset ones stay None."""
    group = parser.add_argument_group("configuration (override the config file)")
    for name, tp, default in leaf_fields(cls):
        group.add_argument(
            f"--{name}",
            dest=f"cfg:{name}",
            metavar=_metavar(tp),
            default=None,
            help=f"default: {default!r}",
        )


def _metavar(tp: Any) -> str:
    text = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return text.upper()


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `--section.field` values the user actually gave, as a nested dict."""
    given = {
        key[len("cfg:"):]: value
        for key, value in vars(args).items()
        if key.startswith("cfg:") and value is not None
    }
    return dotted_to_nested(given)


def load(path: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults < config file < overrides, validated."""
    data = read_file(path) if path else {}
    return from_dict(Config, merge(data, overrides or {}))


def save(cfg: Any, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=False) + "\n")
