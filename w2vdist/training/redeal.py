"""What the ranks of a run resumed on another number of ranks read first: the rest of the
epoch in progress.

A rank's stream is fixed by the seed, its shards and its `Stream`, so from the saved positions
the samples that the ranks before the resize had not yet read this epoch are known without
reading the corpus: for each of their loader workers, the samples after the chunk it had
begun, up to the end of its pass, and what was left of the chunk the trainer was reading (a
`chunks.Rest`: its samples mixed again as then, less what was read). The new ranks share them
out in proportion to their step shares and read them first, then pass through their own shards
from the next epoch on: each sentence trains once an epoch, as without the resize. Dealing the
epoch in progress anew instead (each new rank starting after the words its share of the steps
would have read) trained about a quarter of its sentences twice and a quarter not at all, and
cost 0.7-1.0 analogy points on the benchmark corpus (BENCHMARKS.md).
"""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

from w2vdist.corpus.shards import Manifest
from w2vdist.training.checkpoint import TrainState
from w2vdist.training.chunks import Item, Rest, Stream, mix_key, worker_items
from w2vdist.training.data import Position, assign_shards, older_dealing
from w2vdist.training.spec import Corpus, Plan

log = logging.getLogger("w2vdist")


def resumed_streams(state: TrainState, corpus: Corpus, seed: int, plan: Plan) -> list[Stream]:
    """The streams of the ranks that `plan` shares steps among, resuming from `state`: the
    saved ones on as many ranks, else the epoch in progress dealt out (`redeal`)."""
    if state.world_size == len(plan.rank_words):
        return state.streams
    manifest, _ = corpus.prepared()
    return redeal(manifest, corpus.source, seed, list(zip(state.streams, state.data)),
                  state.step, plan.steps_per_epoch, plan.rank_words)


def redeal(
    manifest: Manifest, directory: str | Path, seed: int, saved: list[tuple[Stream, Position]],
    step: int, steps_per_epoch: int, rank_words: tuple[int, ...],
) -> list[Stream]:
    """The streams of the new ranks (one per `rank_words`) of a run saved by `saved`'s ranks
    (each one's stream and position) at `step`."""
    epoch = step // steps_per_epoch
    owned = assign_shards(manifest, len(saved), directory)
    unread: list[list[Item]] = []
    for rank, (stream, position) in enumerate(saved):
        older = older_dealing(position)
        if older:
            log.warning("rank %d's data position was saved by an older w2vdist (%s: %s): the "
                        "rest of its epoch is not read again", rank, older, position)
            unread.append([])
            continue
        unread.append(_unread(manifest, owned[rank], stream, position, seed, epoch))
    world = len(rank_words)
    return [Stream(f"{rank}/{world}@{step}", epoch + 1, tuple(items))
            for rank, items in enumerate(_share(unread, manifest, rank_words, f"{seed}/{step}"))]


def _unread(
    manifest: Manifest, mine: list[int], stream: Stream, position: Position, seed: int,
    epoch: int,
) -> list[Item]:
    """What one old rank had not read of the epoch in progress. Positions advance a chunk at a
    time (`data.TokenBatches`), so `position.sample` is a chunk's first."""
    workers, chunk = position.workers, position.chunk
    counts = [shard.samples for shard in manifest.shards]
    samples = sum(counts[s] for s in mine)
    begun, offset = position.sample // chunk, position.offset  # the trainer's chunk, tokens in
    unread: list[Item] = []
    for worker in range(workers):
        per_pass = len(range(worker, samples, workers))
        end = len(stream.owed[worker::workers]) + (epoch - stream.base + 1) * per_pass
        done = max(0, -(-(begun - worker) // workers)) * chunk  # its chunks the trainer read
        partial = worker == begun % workers and offset > 0  # the trainer's chunk is this one's
        ahead = list(itertools.islice(  # from its first sample not yet read whole
            worker_items(mine, counts, stream, seed, worker, workers, done),
            max(end - done, chunk if partial else 0)))
        if partial:
            keep = min(chunk, end - done)
            if keep > 0:
                unread.append(Rest(mix_key(seed, stream, worker, begun // workers), offset,
                                   tuple(ahead[:chunk]), keep))
            ahead, done = ahead[chunk:], done + chunk
        unread += ahead[: max(0, end - done)]
    return unread


def _share(
    unread: list[list[Item]], manifest: Manifest, rank_words: tuple[int, ...], key: str
) -> list[list[Item]]:
    """The old ranks' `unread` items, taken in turn, dealt to the new ranks in proportion to
    `rank_words` (a chunk's rest split where a rank's share ends), each rank's in a random
    order, so that its chunks mix samples of every old rank."""
    owed = [item for turn in itertools.zip_longest(*unread) for item in turn if item is not None]
    sizes = [_tokens(item, manifest) for item in owed]
    targets = [sum(sizes) * words / sum(rank_words) for words in rank_words]
    dealt: list[list[Item]] = [[] for _ in rank_words]
    rank, load = 0, 0.0
    for item, size in zip(owed, sizes):
        while rank < len(rank_words) - 1 and load + size > targets[rank]:
            room = targets[rank] - load
            if isinstance(item, Rest) and room > 0:
                head, item = _split(item, room, manifest)
                dealt[rank].append(head)
                size -= room
            elif room >= size / 2:  # a sample that mostly fits stays
                break
            rank, load = rank + 1, 0.0
        dealt[rank].append(item)
        load += size
    for rank, items in enumerate(dealt):
        random.Random(f"{key}/{rank}").shuffle(items)
    return dealt


def owed_tokens(stream: Stream, manifest: Manifest) -> int:
    """About how many tokens `stream` reads before its own shards."""
    return round(sum(_tokens(item, manifest) for item in stream.owed))


def _split(rest: Rest, tokens: float, manifest: Manifest) -> tuple[Rest, Rest]:
    """`rest` cut in two, about `tokens` of its kept sentences in the first part."""
    kept, whole = _kept_and_whole(rest, manifest)
    cut = rest.offset + max(1, int(tokens * whole / max(1.0, kept)))
    return (Rest(rest.key, rest.offset, rest.samples, rest.keep, cut),
            Rest(rest.key, cut, rest.samples, rest.keep, rest.until))


def _tokens(item: Item, manifest: Manifest) -> float:
    """About how many tokens `item` holds, from its shard's mean sample."""
    if isinstance(item, Rest):
        kept, whole = _kept_and_whole(item, manifest)
        until = whole if item.until is None else min(whole, item.until)
        return kept / max(1.0, whole) * max(0.0, until - item.offset)
    shard = manifest.shards[item[0]]
    return shard.tokens / max(1, shard.samples)


def _kept_and_whole(rest: Rest, manifest: Manifest) -> tuple[float, float]:
    """About how many tokens the kept samples of `rest`'s chunk hold, and all of them."""
    sizes = [_tokens(item, manifest) for item in rest.samples]
    return sum(sizes[: rest.keep]), sum(sizes)
