"""The resolved run spec: a config with nothing left to choose, the one the run follows.

`resolve` is the one place where `auto` and 0-means-default settings become real values
(backend, device, threads, loader workers, words per step, merge intervals, W&B mode, steps);
each rule lives beside the component it serves and is called from here only. The spec is what
the run saves as `config.json`, what `--dry-run` prints, what W&B records, what checkpoints
carry and what a resume is checked against: a resume whose resolved math differs (the backend
included) is refused, naming each field. A resume on another number of ranks keeps the run's
words per step, shared out among the ranks there are.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vdist.corpus.remote import Remote, Tally, is_url
from w2vdist.corpus.shards import Manifest
from w2vdist.corpus.vocab import VOCAB_FILE, Vocab
from w2vdist.errors import UsageError
from w2vdist.host import cores
from w2vdist.settings import flatten, from_dict, to_dict
from w2vdist.training import backends, metrics, sync
from w2vdist.training.backends.reference import step_bytes
from w2vdist.training.config import Config, DataConfig
from w2vdist.training.data import assign_shards, loader_workers
from w2vdist.training.distributed import World, together

# Settings that change what a run computes: a checkpoint resumes only under the same values.
# `train.epochs` may grow: the run then trains on, its learning rate following the longer
# plan's line from the step it resumes at (see README, "Continued training").
MATH_FIELDS = (
    "model.", "optim.", "train.seed", "train.backend", "train.init_from", "sync.strategy",
    "sync.every_steps", "sync.hot_rows", "sync.hot_every_steps", "sync.curvature_weight",
)
# Settings whose default is chosen when a run starts (section, field, the value meaning
# "choose"): the math's, and the loader's worker count, which decides the order a rank reads
# its samples in. A resume that leaves one at that value continues with what the run chose
# (`keep_choices`), so a run started under other defaults (an older version's) resumes as it
# began. The backend is not among them: another device is another computation, which a
# resume refuses.
CHOSEN_AT_START = (
    ("optim", "alpha", 0.0), ("optim", "batch_words", 0), ("optim", "damping", -1.0),
    ("sync", "every_steps", 0),
    ("sync", "hot_rows", -1), ("sync", "hot_every_steps", 0),
    ("data", "loader_workers", -1),
)
# What a resume on another number of ranks chooses anew when left to be chosen: how ranks
# agree suits the world they are (8 ranks merge more often than 2); the learning rate and the
# words of a step, the run's schedule, stay as the run began (`resolve`'s `words_per_step`).
CHOSEN_FOR_THE_WORLD = ("sync.every_steps", "sync.hot_rows", "sync.hot_every_steps")


@dataclass(frozen=True)
class Corpus:
    """What training knows of its data before reading it: word counts, their vocabulary's hash
    and the words per epoch; `manifest`/`directory` when it comes from `w2vdist prepare`
    (`directory` the local copy of a corpus at a URL, `remote`, which `source` names)."""

    counts: np.ndarray
    vocab_hash: str
    tokens: int
    words: list[str] = field(default_factory=list)
    manifest: Manifest | None = None
    directory: Path | None = None
    remote: Remote | None = None

    @classmethod
    def load(cls, data: DataConfig) -> "Corpus":
        """The prepared corpus `data.shards` names; at a URL, its manifest and vocabulary
        copied (the shards wait for `fetch`); local shards are all checked now."""
        remote = None
        if is_url(data.shards):
            remote = Remote.at(data.shards, data.fetch_command, data.fetch_timeout_seconds)
            directory = remote.cached(data.cache_dir)
        else:
            directory = Path(data.shards)
        manifest = Manifest.load(directory)
        manifest.check_files(directory, files=remote is None)  # at a URL: as they come
        vocab = Vocab.load(directory / VOCAB_FILE)
        if vocab.hash != manifest.vocab_hash:
            if remote is not None:  # a bad copy kept would stand in for a mended one
                (directory / VOCAB_FILE).unlink()
            where = f"{remote.url}{VOCAB_FILE}" if remote else directory / VOCAB_FILE
            raise UsageError(f"{where}: does not match manifest.json's vocab_hash")
        return cls(vocab.counts, vocab.hash, manifest.total_tokens, vocab.words, manifest,
                   directory, remote)

    def prepared(self) -> tuple[Manifest, Path]:
        """The manifest and directory of a corpus from `w2vdist prepare`, which training reads
        (bench's synthetic stream has neither and never asks)."""
        if self.manifest is None or self.directory is None:
            raise ValueError("a synthetic corpus has no shards")
        return self.manifest, self.directory

    @property
    def source(self) -> str:
        """Where the shards are, as the user named them."""
        return self.remote.url if self.remote else str(self.prepared()[1])

    def fetch(self, shards: set[int], world: World, timeout: float) -> None:
        """Make the `shards` (indices) of a corpus at a URL local, each copy checked against
        the manifest's size and SHA-256 as it arrives, the ranks meeting well within the
        collectives' `timeout` until all have theirs (`distributed.together`); a local corpus
        has them, checked by `load`."""
        manifest, directory = self.prepared()
        if self.remote is not None:
            remote, tally = self.remote, Tally()
            chosen = [manifest.shards[i] for i in sorted(shards)]
            together(world, "fetching shards",
                     lambda: remote.fetch_shards(directory, chosen, tally),
                     lambda: (tally.copied, tally.expected), timeout)

    @property
    def vocab_file(self) -> Path:
        return self.prepared()[1] / VOCAB_FILE

    @property
    def mean_sentence(self) -> float:
        """Words a sentence holds on average (inf where the manifest does not say): the
        farthest a window reaches on average, whatever `model.window` says."""
        sentences = self.manifest.stats.get("sentences") if self.manifest else None
        if not isinstance(sentences, int) or sentences <= 0:
            return math.inf
        return self.tokens / sentences


@dataclass(frozen=True)
class Plan:
    """How long the run is: fixed up front so every rank runs the same steps.

    `rank_words` is each rank's share of a step, proportional to the tokens of its shards: a
    rank holding 5 of 18 equal shards and one holding 4 then both pass through their data
    `epochs` times, where equal shares would train the first's sentences 4.5 times and the
    second's 5.6 times: a corpus reweighted by how its shards fell to ranks.
    """

    steps_per_epoch: int
    total_steps: int
    rank_words: tuple[int, ...]

    @classmethod
    def build(cls, total_tokens: int, rank_tokens: list[int], words_per_step: int,
              epochs: int) -> "Plan":
        steps_per_epoch = max(1, math.ceil(total_tokens / words_per_step))
        return cls(steps_per_epoch, steps_per_epoch * epochs,
                   proportional(words_per_step, rank_tokens))

    @property
    def words_per_step(self) -> int:
        """Global: all ranks' shares."""
        return sum(self.rank_words)

    @property
    def total_words(self) -> int:
        return self.total_steps * self.words_per_step

    def learning_rate(self, step: int, alpha: float, min_ratio: float) -> float:
        """Linear from alpha to alpha * min_ratio over the planned words."""
        progress = min(1.0, step / self.total_steps)
        return alpha * (1.0 - (1.0 - min_ratio) * progress)


@dataclass(frozen=True)
class RunSpec:
    """A resolved config and what it was resolved against: the world, the vocabulary, the
    plan, and how the corpus was made (prepare's tokenizer and summary), so that vectors carry
    what a user needs to tokenize new text the same way."""

    config: Config
    world_size: int
    vocab_hash: str
    plan: Plan
    tokenizer: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.config.train.backend

    @property
    def update_words(self) -> int:
        """The words one update is computed from, as `backends.global_step_words` reckons
        them from the config before there is a plan, but from the plan's real shares: a step's
        under `exact`, the largest rank's share under `local` (larger than `batch_words` on a
        run resumed on fewer ranks)."""
        if self.config.sync.strategy == "exact":
            return self.plan.words_per_step
        return max(self.plan.rank_words)

    def learning_rate(self, step: int) -> float:
        o = self.config.optim
        return self.plan.learning_rate(step, o.alpha, o.min_alpha_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {
            **to_dict(self.config),
            "run": {
                "world_size": self.world_size,
                "vocab_hash": self.vocab_hash,
                **dataclasses.asdict(self.plan),
                "words_per_step": self.plan.words_per_step,  # for readers of config.json
                "tokenizer": self.tokenizer,
                "corpus": self.corpus,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        data = dict(data)
        run = data.pop("run")
        equal = [run["words_per_step"] // run["world_size"]] * run["world_size"]
        plan = Plan(run["steps_per_epoch"], run["total_steps"],
                    tuple(run.get("rank_words", equal)))  # runs saved before shares existed
        return cls(from_dict(Config, data), run["world_size"], run["vocab_hash"], plan,
                   run.get("tokenizer", {}), run.get("corpus", {}))

    def differences(self, old: "RunSpec") -> list[str]:
        """What a checkpoint written under `old` would compute differently under this spec.

        On another number of ranks the run keeps its words per step, shared out anew, and
        its sync intervals and hot rows may be chosen for the new world
        (`CHOSEN_FOR_THE_WORLD`): those differ by design.
        """
        out = []
        if self.plan.steps_per_epoch != old.plan.steps_per_epoch:
            out.append(f"steps per epoch {old.plan.steps_per_epoch} -> "
                       f"{self.plan.steps_per_epoch}")
        if self.plan.rank_words != old.plan.rank_words and self.world_size == old.world_size:
            out.append(f"words per step on each rank {list(old.plan.rank_words)} -> "
                       f"{list(self.plan.rank_words)}")
        if self.config.train.epochs < old.config.train.epochs:
            out.append(f"train.epochs {old.config.train.epochs} -> {self.config.train.epochs} "
                       "(a run can be extended, not shortened)")
        if old.vocab_hash != self.vocab_hash:
            out.append("vocabulary (vocab.tsv hash)")
        free = CHOSEN_FOR_THE_WORLD if old.world_size != self.world_size else ()
        before, after = flatten(to_dict(old.config)), flatten(to_dict(self.config))
        for key in sorted(after):
            if key.startswith(MATH_FIELDS) and key not in free and before.get(key) != after[key]:
                was = before.get(key)
                keep = "" if was in (None, "") else f" (--{key} {was} keeps the checkpoint's)"
                out.append(f"{key} {was!r} -> {after[key]!r}{keep}")
        return out


def resolve(cfg: Config, world: World, corpus: Corpus, words_per_step: int = 0) -> RunSpec:
    """The config with every `auto`/0 default made concrete for this world and corpus.

    `words_per_step` (global) is a resumed run's: on another number of ranks too, a run
    keeps its step, and `optim.batch_words` stays what the run began with (the ranks' shares
    are the plan's).
    """
    rank_tokens = [corpus.tokens] * world.size  # equal shares without a manifest
    fewest_samples = 1
    if corpus.manifest is not None:  # every rank needs a shard of its own
        manifest, _ = corpus.prepared()
        owned_shards = assign_shards(manifest, world.size, corpus.source)
        rank_tokens = [sum(manifest.shards[i].tokens for i in owned) for owned in owned_shards]
        fewest_samples = min(sum(manifest.shards[i].samples for i in owned)
                             for owned in owned_shards)
    _check_memory(cfg, world, len(corpus.counts))
    backend = backends.choose(cfg, world.device, world.size)
    cfg = _replace(cfg, "train", backend=backend, device=world.device.type,
                   threads=cfg.train.threads or max(1, torch.get_num_threads()))
    cfg = _replace(cfg, "data", loader_workers=loader_workers(
        cfg.data.loader_workers, world.device, fewest_samples, cores() // world.local_size))
    cfg = _replace(cfg, "optim", batch_words=backends.batch_words(cfg, world.size,
                                                                  corpus.tokens))
    _check_step_memory(cfg, world, len(corpus.counts))
    cfg = _replace(cfg, "optim", alpha=backends.alpha(cfg, world.size),
                   damping=backends.damping(cfg))
    cfg = _replace(cfg, "train", cuda_graph=backends.cuda_graph(cfg))
    if cfg.checkpoint.background is None:  # on CPU the copy would double the tables' memory
        cfg = _replace(cfg, "checkpoint", background=world.device.type == "cuda")
    plan = Plan.build(corpus.tokens, rank_tokens,
                      words_per_step or world.size * cfg.optim.batch_words, cfg.train.epochs)
    cfg = sync.resolved(cfg, world.size, plan.words_per_step)
    cfg = _replace(cfg, "train", max_steps=min(cfg.train.max_steps or plan.total_steps,
                                               plan.total_steps))
    cfg = _replace(cfg, "wandb", mode=metrics.resolve_mode(cfg.wandb.mode) if world.is_main
                   else cfg.wandb.mode)
    made = corpus.manifest
    return RunSpec(cfg, world.size, corpus.vocab_hash, plan,
                   made.tokenizer if made else {}, _summary(made) if made else {})


def keep_choices(cfg: Config, ran: Config, resized: bool = False) -> Config:
    """`cfg` with each setting of CHOSEN_AT_START that it leaves to be chosen set to what the
    run resolved as `ran` chose; on another number of ranks (`resized`) but those chosen for
    the world."""
    for section, name, choose in CHOSEN_AT_START:
        if resized and f"{section}.{name}" in CHOSEN_FOR_THE_WORLD:
            continue
        if getattr(getattr(cfg, section), name) == choose:
            cfg = _replace(cfg, section, **{name: getattr(getattr(ran, section), name)})
    return cfg


def proportional(total: int, weights: list[int]) -> tuple[int, ...]:
    """`total` (>= len(weights)) split in proportion to `weights` by largest remainders, at
    least 1 each: every rank takes part in every step."""
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    for i, share in enumerate(shares):
        if share == 0:
            shares[i] = 1
            shares[max(range(len(shares)), key=shares.__getitem__)] -= 1
    return tuple(shares)


def _summary(manifest: Manifest) -> dict[str, Any]:
    """What the corpus was: enough to tell two runs' data apart at a glance."""
    keep = ("files", "bytes", "lines", "raw_tokens", "sentences", "min_count", "encoding")
    return {"total_tokens": manifest.total_tokens, "vocab_size": manifest.vocab_size,
            "shards": len(manifest.shards),
            **{k: manifest.stats[k] for k in keep if k in manifest.stats}}


def _memory(world: World) -> tuple[int, int]:
    """(bytes of the device's memory, ranks sharing it): CPU ranks on one host
    (`World.local_size`) share its memory, a GPU is a rank's own."""
    if world.device.type == "cuda":
        return torch.cuda.get_device_properties(world.device).total_memory, 1
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), world.local_size


def _keeps_merge(cfg: Config, world: World) -> bool:
    """Whether each rank keeps the last merge too (two more tables): `local` on several."""
    return cfg.sync.strategy == "local" and world.size > 1


def _table_bytes(cfg: Config, world: World, vocab_size: int) -> int:
    """A rank's tables, with the last merge where it keeps one."""
    return 2 * vocab_size * cfg.model.dim * 4 * (2 if _keeps_merge(cfg, world) else 1)


def _check_memory(cfg: Config, world: World, vocab_size: int) -> None:
    """Refuse tables that cannot fit before allocating them (an allocation that fails part
    way is an opaque out-of-memory error, or the kernel's OOM killer)."""
    have, ranks = _memory(world)
    need = _table_bytes(cfg, world, vocab_size) * ranks
    if need > have:
        merge = " and their last merge (sync.strategy local)" if _keeps_merge(cfg, world) \
            else ""  # fmt: skip
        what = "the two tables" + merge
        over = f" over {ranks} ranks on this host" if ranks > 1 else ""
        raise UsageError(
            f"config: model.dim {cfg.model.dim:,}: {what} of {vocab_size:,} words need "
            f"{need / 2**30:,.1f} GiB{over}, more than the {have / 2**30:,.1f} GiB of "
            f"{world.device}"
        )


def _check_step_memory(cfg: Config, world: World, vocab_size: int) -> None:
    """Refuse a torch step that cannot fit beside the tables (`reference.step_bytes`, a lower
    bound): it grows with the words of a step, the window and the negatives, and past memory
    it failed part way or the kernel's OOM killer ended the run (a million negatives)."""
    if cfg.train.backend != "torch":
        return
    m, words = cfg.model, cfg.optim.batch_words
    have, ranks = _memory(world)
    step = step_bytes(words, m.window, m.negative, m.dim, m.share_negatives == "pair")
    tables = _table_bytes(cfg, world, vocab_size)
    if (step + tables) * ranks > have:
        over = f" over {ranks} ranks on this host" if ranks > 1 else ""
        raise UsageError(
            f"config: a torch step of {words:,} words at model.window {m.window:,}, "
            f"model.negative {m.negative:,} and model.dim {m.dim:,} holds at least "
            f"{step / 2**30:,.1f} GiB beside the tables' {tables / 2**30:,.1f} GiB{over}, more "
            f"than the {have / 2**30:,.1f} GiB of {world.device}: lower optim.batch_words, "
            "the window or the negatives"
        )


def _replace(cfg: Config, section: str, **values: Any) -> Config:
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section),
                                                                    **values)})
