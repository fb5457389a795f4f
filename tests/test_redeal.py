"""A run resumed on another number of ranks reads the rest of the epoch in progress first: what
the ranks before the resize had read of it and what the new ranks owe make up the corpus
exactly once, however the ranks, their loader workers and the chunk the trainer was reading
fell."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import numbered_samples, write_shard
from w2vdist.corpus.shards import Manifest, ShardInfo
from w2vdist.training.chunks import Rest, SampleReader, Stream
from w2vdist.training.data import Position, TokenBatches, assign_shards
from w2vdist.training.redeal import redeal
from w2vdist.training.spec import Plan

SEED = 7
WORDS_PER_STEP = 150


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Manifest, Path]:
    """12 shards of 4 numbered samples (sentence g is g * 100 + 0, 1, ...): every token once."""
    root = tmp_path_factory.mktemp("redeal")
    shards = []
    for s in range(12):
        samples = write_shard(root / f"shard-{s:06d}.tar", numbered_samples(4, first=s * 1000))
        shards.append(ShardInfo(f"shard-{s:06d}.tar", sum(len(t) for t, _ in samples), 4))
    manifest = Manifest(0, sum(s.tokens for s in shards), shards, "test")
    return manifest, root


def _plan(manifest: Manifest, world: int) -> Plan:
    owned = assign_shards(manifest, world, "x")
    tokens = [sum(manifest.shards[i].tokens for i in mine) for mine in owned]
    return Plan.build(manifest.total_tokens, tokens, WORDS_PER_STEP, 5)


def _train(
    corpus: tuple[Manifest, Path], streams: list[Stream], starts: list[Position], steps: int,
    workers: int, chunk: int,
) -> tuple[np.ndarray, list[Position]]:
    """What every rank of a world reads in `steps` steps, and where each stands after them."""
    manifest, root = corpus
    plan = _plan(manifest, len(streams))
    owned = assign_shards(manifest, len(streams), root)
    read, positions = [], []
    for rank, (stream, start) in enumerate(zip(streams, starts)):
        loader = TokenBatches(manifest.sources(root), plan.rank_words[rank], SEED, rank, workers,
                              2, False, chunk=chunk, start=start, mine=owned[rank],
                              stream=stream)
        batches = iter(loader)
        read += [tokens.numpy().copy() for tokens, _ in itertools.islice(batches, steps)]
        batches.close()
        positions.append(loader.position)
    return np.concatenate(read), positions


def _owed(corpus: tuple[Manifest, Path], streams: list[Stream]) -> np.ndarray:
    reader = SampleReader(corpus[0].sources(corpus[1]))
    return np.concatenate([reader.read(item)[0] for s in streams for item in s.owed])


def _counts(tokens: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(tokens, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _every_token(corpus: tuple[Manifest, Path], times: int) -> dict[int, int]:
    return {token: times for token in _owed(corpus, [Stream("", 0, tuple(
        (s, i) for s in range(12) for i in range(4)))]).tolist()}


@pytest.mark.parametrize("old, new, workers, chunk", [
    (3, 2, 2, 2), (3, 5, 2, 2), (2, 4, 1, 3), (4, 3, 2, 1),
])
@pytest.mark.parametrize("epoch", [0, 1])
def test_what_was_read_and_what_is_owed_make_up_the_epoch(corpus, old, new, workers, chunk,
                                                        epoch):
    manifest, root = corpus
    spe = _plan(manifest, old).steps_per_epoch
    step = epoch * spe + spe // 2 + 1
    read, positions = _train(corpus, [Stream(str(r)) for r in range(old)], [Position()] * old,
                             step, workers, chunk)
    assert any(p.offset for p in positions)  # a chunk part read: its rest is owed
    streams = redeal(manifest, root, SEED, list(zip([Stream(str(r)) for r in range(old)],
                                                    positions)),
                     step, spe, _plan(manifest, new).rank_words)
    assert len(streams) == new and all(s.base == epoch + 1 for s in streams)
    assert any(isinstance(i, Rest) for s in streams for i in s.owed)
    assert _counts(np.concatenate([read, _owed(corpus, streams)])) == _every_token(corpus,
                                                                                   epoch + 1)
    # Shared out in proportion to the new ranks' steps, to about a sample (reckoned from the
    # shards' mean sample: these samples vary from 2 to 240 tokens, a prepared corpus's hardly).
    words = _plan(manifest, new).rank_words
    owed = [len(_owed(corpus, [s])) for s in streams]
    for tokens, share in zip(owed, words):
        assert abs(tokens - sum(owed) * share / sum(words)) <= 240


def test_a_second_resize_owes_what_the_first_world_still_owed(corpus):
    """3 ranks -> 2 mid-epoch -> 4 in the next epoch: each world reads its streams through
    the loader, owed samples first, and a stream saved while it still owed is dealt again."""
    manifest, root = corpus
    spe = _plan(manifest, 3).steps_per_epoch
    first = spe // 2
    read, positions = _train(corpus, [Stream(str(r)) for r in range(3)], [Position()] * 3,
                             first, 2, 2)
    streams = redeal(manifest, root, SEED, list(zip([Stream(str(r)) for r in range(3)],
                                                    positions)),
                     first, spe, _plan(manifest, 2).rank_words)
    second = spe + 2  # the rest of epoch 0 and a little of epoch 1
    more, positions = _train(corpus, streams, [Position()] * 2, second - first, 2, 2)
    again = redeal(manifest, root, SEED, list(zip(streams, positions)), second, spe,
                   _plan(manifest, 4).rank_words)
    assert _counts(np.concatenate([read, more, _owed(corpus, again)])) == \
        _every_token(corpus, 2)
    # Checkpoints hold streams as plain lists, nested rests included.
    assert [Stream.from_dict(s.to_dict()) for s in again] == again


def test_a_position_of_an_older_loader_owes_nothing_and_says_so(corpus, w2vdist_log):
    manifest, root = corpus
    spe = _plan(manifest, 2).steps_per_epoch
    saved = [(Stream("0"), Position(4, 10, 2, 2, "mixed")), (Stream("1"), Position(4, 10, 1, 2,
                                                                                    "mixed"))]
    streams = redeal(manifest, root, SEED, saved, 3, spe, _plan(manifest, 3).rank_words)
    assert "rank 0's data position was saved by an older w2vdist" in w2vdist_log.text
    assert "rank 1's" not in w2vdist_log.text  # one worker read the same samples then
    assert sum(len(s.owed) for s in streams) > 0


@pytest.mark.parametrize("epoch", [0, 1])
def test_a_chunk_across_the_end_of_a_pass_owes_only_this_pass(corpus, epoch):
    """Chunks of 3 of a rank's 16 samples: some hold the end of one pass and the start of
    the next, so near a pass's end a rank may have read a little of the next already. What it
    owes is this pass's rest only: every token read or owed once more, none twice more, and
    those read ahead are within the chunks across the ends of passes."""
    manifest, root = corpus
    spe = _plan(manifest, 3).steps_per_epoch
    streams = [Stream(str(r)) for r in range(3)]
    aheads = []
    for step in range(epoch * spe + spe - 4, epoch * spe + spe):
        read, positions = _train(corpus, streams, [Position()] * 3, step, 1, 3)
        owed = redeal(manifest, root, SEED, list(zip(streams, positions)), step, spe,
                      _plan(manifest, 2).rank_words)
        counts = _counts(np.concatenate([read, _owed(corpus, owed)]))
        assert counts.keys() == _every_token(corpus, 1).keys()
        ahead = [token for token, count in counts.items() if count != epoch + 1]
        assert all(counts[token] == epoch + 2 for token in ahead)
        assert len(ahead) <= 3 * 2 * 240  # two samples of a chunk on each of the 3 ranks
        aheads.append(len(ahead))
    assert max(aheads) > 0
