"""The loader's token stream: a resumed stream seeks to its saved position and continues
exactly as an uninterrupted one, without decoding what it skips."""


import subprocess
import sys

import numpy as np
import pytest
import webdataset as wds

from tests.helpers import prepare, write_zipf_corpus
from w2vdist.errors import UsageError
from w2vdist.training.data import Position, TokenBatches
from w2vdist.corpus.shards import Manifest, encode_sample


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[tuple[str, int]]:
    root = tmp_path_factory.mktemp("data")
    out = prepare(write_zipf_corpus(root / "corpus.txt", 1200, seed=3), root / "shards", 5000)
    return Manifest.load(out).sources(out)


def _stream(shards, workers: int, chunk: int, start: Position = Position(), batch_words: int = 700):
    """(tokens, sentence ids, position after) for each batch of a TokenBatches stream."""
    loader = TokenBatches(shards, batch_words, 5, 0, workers, 2, False, chunk=chunk, start=start)
    for tokens, sentence in loader:
        yield tokens.numpy().copy(), sentence.numpy().copy(), loader.position


@pytest.mark.parametrize("workers, chunk", [(0, 1), (1, 1), (2, 1), (0, 3), (2, 3)])
def test_a_stream_started_at_a_saved_position_continues_the_uninterrupted_one(
    shards, workers, chunk
):
    reference = []
    for item in _stream(shards, workers, chunk):
        reference.append(item)
        if len(reference) == 130:  # more than two passes over the shards
            break
    total = sum(len(t) for t, _, _ in reference)
    assert total > 2 * 20_000
    assert any(p.offset for _, _, p in reference)  # positions inside samples are exercised
    for k in (1, 6, 29, 64, 100):
        resumed = _stream(shards, workers, chunk, start=reference[k - 1][2])
        for expected, got in zip(reference[k : k + 4], resumed):
            assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
            assert expected[2] == got[2]


def test_seeking_does_not_decode_the_samples_it_skips(tmp_path):
    path = tmp_path / "shard.tar"
    good = [np.arange(i * 10, i * 10 + 10, dtype=np.int32) for i in range(4)]
    with wds.TarWriter(str(path)) as writer:
        for i, tokens in enumerate(good):
            sample = encode_sample(f"{i}", tokens, np.array([4, 6]))
            if i < 2:
                sample["tokens.npy"] = b"not an npy file"
            writer.write(sample)
    source = [(str(path), 4)]
    with pytest.raises(UsageError, match="shard.tar: unreadable shard"):
        next(iter(TokenBatches(source, 5, 0, 0, 0, 2, False, chunk=1)))
    batches = iter(TokenBatches(source, 5, 0, 0, 0, 2, False, chunk=1, start=Position(2, 3)))
    first, sentence = next(batches)
    # Sample 2 is 20..29 in sentences of 4 and 6: 23 ends the first.
    assert first.tolist() == [23, 24, 25, 26, 27] and sentence.tolist() == [0, 1, 1, 1, 1]
    assert next(batches)[0].tolist() == [28, 29, 30, 31, 32]


@pytest.mark.parametrize("workers, chunk", [(0, 1), (0, 4), (1, 3)])
def test_batches_are_the_shard_cut_in_order_with_an_id_per_sentence(tmp_path, workers, chunk):
    path = tmp_path / "shard.tar"
    rng = np.random.default_rng(0)
    samples = []
    with wds.TarWriter(str(path)) as writer:
        for i in range(7):
            lengths = rng.integers(1, 30, size=rng.integers(1, 9)).astype(np.int32)
            tokens = rng.integers(0, 1000, size=int(lengths.sum())).astype(np.int32)
            writer.write(encode_sample(f"{i}", tokens, lengths))
            samples.append((tokens, lengths))
    # Three passes over the shard, and where each sentence (samples never share one) starts.
    tokens = np.concatenate([t for t, _ in samples] * 3)
    lengths = np.concatenate([l for _, l in samples] * 3)
    starts = np.zeros(len(tokens), dtype=bool)
    starts[np.cumsum(lengths)[:-1]] = True
    size = 37
    batches = iter(TokenBatches([(str(path), 7)], size, 0, 0, workers, 2, False, chunk=chunk))
    for b in range(len(tokens) // size):
        got, sentence = (x.numpy() for x in next(batches))
        expected = slice(b * size, (b + 1) * size)
        assert np.array_equal(got, tokens[expected])
        assert sentence[0] == 0
        assert np.array_equal(np.diff(sentence) == 1, starts[expected][1:])
        assert np.all(np.diff(sentence) >= 0) and np.all(np.diff(sentence) <= 1)


@pytest.mark.parametrize("workers", [0, 1])
def test_one_worker_streams_the_same_whatever_its_chunks_and_resumes_across_them(
    shards, workers
):
    """With one worker the chunk size does not change the order, so a position saved with
    one sample a turn (checkpoints from before chunks) resumes exactly with chunks."""
    by_one = [item for item, _ in zip(_stream(shards, workers, 1), range(60))]
    by_five = [item for item, _ in zip(_stream(shards, workers, 5), range(60))]
    for one, five in zip(by_one, by_five):
        assert np.array_equal(one[0], five[0]) and np.array_equal(one[1], five[1])
    resumed = _stream(shards, workers, 5, start=by_one[29][2])
    for expected, got in zip(by_one[30:34], resumed):
        assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])


def test_a_script_that_ends_with_its_loader_open_exits(shards):
    """Loader workers ignore SIGTERM, the stop request that the trainer answers, and SIGTERM
    is how multiprocessing stops them when the interpreter exits: unless the trainer's side
    kills them, a script that raised mid-run waited on them forever."""
    script = (
        "from w2vdist.training.data import TokenBatches\n"
        f"batches = iter(TokenBatches({shards!r}, 100, 0, 0, 2, 2, False, chunk=1))\n"
        "next(batches)\n"
        "raise SystemExit(5)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 5 and done.stderr == ""
