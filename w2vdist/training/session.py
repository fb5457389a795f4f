"""Everything a training run trains with, built in one place from the resolved spec.

`w2vdist train` and `w2vdist bench` (and scripts) build a `Session` the same way from a
`spec.resolve`d spec: the tables initialised from the seed (the same on
every rank), the rank's generator, the sync strategy and the backend's step; `batches` streams
the rank's own shards.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from w2vdist.errors import UsageError
from w2vdist.training import backends, sync
from w2vdist.training.checkpoint import TrainState
from w2vdist.training.chunks import Stream, chunk_samples
from w2vdist.training.data import Position, TokenBatches, assign_shards
from w2vdist.training.distributed import World
from w2vdist.training.redeal import resumed_streams
from w2vdist.training.sgns import Embeddings
from w2vdist.training.spec import Corpus, RunSpec


@dataclass
class Session:
    spec: RunSpec
    world: World
    corpus: Corpus
    tables: Embeddings
    generator: torch.Generator
    sync: sync.Sync
    step: backends.Step
    streams: list[Stream]  # every rank's (`chunks.Stream`)

    @classmethod
    def build(
        cls, spec: RunSpec, world: World, corpus: Corpus, state: TrainState | None = None
    ) -> "Session":
        """Fresh tables from the seed, or a checkpoint's tables, this rank's RNG state and the
        ranks' streams (on another number of ranks, a generator seeded from the seed, the rank
        and the step, and streams that first read the rest of the epoch in progress)."""
        cfg = spec.config
        torch.set_num_threads(cfg.train.threads)
        init = torch.Generator().manual_seed(cfg.train.seed)  # same tables on every rank
        tables = Embeddings(len(corpus.counts), cfg.model.dim, init).to(world.device)
        generator = torch.Generator(device=world.device).manual_seed(cfg.train.seed + world.rank)
        streams = [Stream(str(rank)) for rank in range(world.size)]
        if state is not None:
            tables.input.data.copy_(state.input)
            tables.output.data.copy_(state.output)
            if state.world_size == world.size:
                generator.set_state(state.rng[world.rank])
            else:
                generator.manual_seed(random.Random(
                    f"{cfg.train.seed}/{world.rank}/{world.size}/{state.step}").getrandbits(63))
            streams = resumed_streams(state, corpus, cfg.train.seed, spec.plan)
        elif cfg.train.init_from:
            _start_from(tables, corpus, cfg.train.init_from)
        strategy = sync.build(cfg.sync, world.size, tables)
        step = backends.build(cfg, tables, corpus.counts, strategy, generator)
        return cls(spec, world, corpus, tables, generator, strategy, step, streams)

    def shards(self) -> list[list[int]]:
        """The shard indices of every rank."""
        manifest, _ = self.corpus.prepared()
        return assign_shards(manifest, self.world.size, self.corpus.source)

    def batches(self, state: TrainState | None = None) -> TokenBatches:
        """This rank's token stream, its share of a step (`Plan.rank_words`) a batch: from the
        start, or where `state` left it. A run resumed on another number of ranks deals the
        shards anew, and each rank starts with its share of the rest of the epoch in progress
        (`redeal`)."""
        cfg = self.spec.config
        manifest, directory = self.corpus.prepared()
        mine = self.shards()[self.world.rank]
        self.corpus.fetch(set(mine) | self.streams[self.world.rank].owed_shards(), self.world,
                          cfg.sync.timeout_seconds)
        words = self.spec.plan.rank_words[self.world.rank]
        tokens = sum(manifest.shards[i].tokens for i in mine)
        samples = sum(manifest.shards[i].samples for i in mine)
        start = Position()
        if state is not None and state.world_size == self.world.size:
            start = state.data[self.world.rank]
        return TokenBatches(
            manifest.sources(directory), words, cfg.train.seed, self.world.rank,
            cfg.data.loader_workers, cfg.data.prefetch,
            pin_memory=self.world.device.type == "cuda",
            chunk=chunk_samples(tokens, samples, words), start=start, mine=mine,
            stream=self.streams[self.world.rank], vocab=len(self.corpus.counts),
        )


def _start_from(tables: Embeddings, corpus: Corpus, path: str) -> None:
    """Known words take the given vectors (and output vectors, when the source has them);
    the others keep word2vec's initialisation. Identical on every rank."""
    from w2vdist.vectors.keyed import WordVectors

    given = WordVectors.load(path)
    if given.vector_size != tables.input.shape[1]:
        raise UsageError(f"{path}: vectors of {given.vector_size} dims, but model.dim is "
                         f"{tables.input.shape[1]}")
    known = [(i, given.key_to_index[w]) for i, w in enumerate(corpus.words)
             if w in given.key_to_index]
    if not known:
        raise UsageError(f"{path}: none of its words is in the corpus vocabulary")
    ours, theirs = (torch.tensor(x) for x in zip(*known))
    device = tables.input.device
    tables.input.data[ours.to(device)] = given.vectors[theirs].to(device)
    if given.output is not None:
        tables.output.data[ours.to(device)] = given.output[theirs].to(device)
