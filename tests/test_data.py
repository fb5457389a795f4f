"""The loader's token stream: a resumed stream seeks to its saved position and continues
exactly as an uninterrupted one, without decoding what it skips."""


import io
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import pytest
import webdataset as wds

from tests.helpers import numbered_samples, prepare, write_shard, write_zipf_corpus
from w2vdist.errors import UsageError
from w2vdist.training import chunks
from w2vdist.training.chunks import ChunkBuffers
from w2vdist.training.data import (
    DEALT, MIXED, Position, TokenBatches, loader_workers,
)
from w2vdist.corpus import shards as shards_module
from w2vdist.corpus.shards import Manifest, ShardInfo, decode_sample, encode_sample


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


def _npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


@pytest.mark.parametrize("array, version", [
    (np.arange(70_000, dtype=np.int32), None),  # as prepare writes a sample's tokens
    (np.zeros(0, dtype=np.int32), None),
    (np.arange(5, dtype=np.int64), None),
    (np.arange(5, dtype=np.int32), (2, 0)),
    (np.arange(5, dtype=">i4"), None),
    (np.arange(5, dtype=np.float32), (3, 0)),
])
def test_sample_arrays_read_as_numpy_reads_them(array, version):
    """The loader matches the header `np.save` writes instead of evaluating it; whatever it
    reads, and however a file's header is written, it reads what `np.load` does."""
    data = _npy(array, version)
    # The header this numpy writes for the shards' arrays still takes the matched path.
    saved_as_shards = version is None and array.dtype in (np.int32, np.int64)
    assert bool(shards_module._SAVED_1D.match(data)) == saved_as_shards
    tokens, lengths = decode_sample({"tokens.npy": data, "lengths.npy": data})
    expected = np.load(io.BytesIO(data))
    for got in (tokens, lengths):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    with pytest.raises(ValueError, match="one-dimensional"):
        decode_sample({"tokens.npy": _npy(np.zeros((2, 3), np.int32)), "lengths.npy": data})
    with pytest.raises(ValueError):  # cut short
        decode_sample({"tokens.npy": data[:-4] if len(array) else data[:-1],
                       "lengths.npy": data})


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


def test_a_trainer_that_dwells_on_a_chunk_reads_it_as_it_was_made(shards):
    """Workers reuse their chunk buffers (`chunks.ChunkBuffers`): while the trainer is still
    reading one chunk, the worker makes every chunk it is asked for ahead, and none may land
    in the buffer being read."""
    reference = list(itertools.islice(_stream(shards, 0, 1, batch_words=100), 120))
    dwelling = _stream(shards, 1, 1, batch_words=100)
    got = [next(dwelling)]
    time.sleep(2)  # the worker fills every buffer it may meanwhile
    got += itertools.islice(dwelling, 119)
    assert len(reference[0][0]) == 100 and reference[-1][2].sample >= 2  # 2 chunks and more
    for expected, seen in zip(reference, got, strict=True):
        assert np.array_equal(expected[0], seen[0]) and np.array_equal(expected[1], seen[1])


def test_a_chunk_written_over_while_read_stops_the_stream(shards, monkeypatch):
    """The trainer checks each chunk's number once it has read it: with one buffer a worker
    writes over the chunk the trainer is reading, and the stream must fail, not train on it."""
    monkeypatch.setattr(chunks, "ChunkBuffers", lambda count, shared: ChunkBuffers(1, shared))
    dwelling = _stream(shards, 1, 1, batch_words=100)
    next(dwelling)
    time.sleep(2)
    with pytest.raises(RuntimeError, match=r"worker 0's buffer for its chunk \d+ holds its "):
        list(itertools.islice(dwelling, 120))


def test_seeking_does_not_read_the_samples_it_skips(tmp_path):
    samples = numbered_samples(4)
    write_shard(tmp_path / "good.tar", samples)
    reference = list(itertools.islice(_stream([(str(tmp_path / "good.tar"), 4)], 0, 1,
                                              batch_words=5), 100))
    # The same samples, the first two that the (seeded) order visits unreadable.
    owner = {int(g): i for i, (tokens, _) in enumerate(samples) for g in tokens // 100}
    visits = [owner[int(g)] for tokens, _, _ in reference for g in tokens // 100]
    first_two = list(dict.fromkeys(visits))[:2]
    path = tmp_path / "shard.tar"
    with wds.TarWriter(str(path)) as writer:
        for i, (tokens, lengths) in enumerate(samples):
            sample = encode_sample(f"{i:09d}", tokens, lengths)
            if i in first_two:
                sample["tokens.npy"] = b"not an npy file"
            writer.write(sample)
    source = [(str(path), 4)]
    with pytest.raises(UsageError, match="shard.tar: unreadable shard"):
        next(_stream(source, 0, 1))
    k = next(k for k, (_, _, p) in enumerate(reference) if p.sample == 2 and p.offset > 0)
    resumed = _stream(source, 0, 1, start=reference[k][2], batch_words=5)
    for expected, got in zip(reference[k + 1 : k + 5], resumed):
        assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])


@pytest.mark.parametrize("workers, chunk", [(0, 1), (0, 7), (1, 7)])
def test_every_pass_reads_every_sentence_whole_once_mixed_anew(tmp_path, workers, chunk):
    path = tmp_path / "shard.tar"
    samples = write_shard(path, numbered_samples(7))
    per_pass = sum(len(t) for t, _ in samples)
    size = 37
    batches = list(itertools.islice(_stream([(str(path), 7)], workers, chunk, batch_words=size),
                                    4 * per_pass // size))
    tokens = np.concatenate([t for t, _, _ in batches])
    starts = tokens % 100 == 0
    # Sentence ids: from 0 in each batch, rising by one exactly where a sentence starts.
    for b, (_, sentence, _) in enumerate(batches):
        steps = np.diff(sentence)
        assert sentence[0] == 0 and np.all((steps == 0) | (steps == 1))
        assert np.array_equal(steps == 1, starts[b * size + 1 : (b + 1) * size])
    sentences = np.split(tokens, np.flatnonzero(starts)[1:])
    for piece in sentences[:-1]:  # each whole: g * 100 + 0, 1, ..., its length - 1
        assert np.array_equal(piece, piece[0] + np.arange(len(piece)))
    passes = [tokens[k : k + per_pass] for k in range(0, len(tokens) - per_pass + 1, per_pass)]
    everything = np.sort(np.concatenate([t for t, _ in samples]))
    assert len(passes) >= 3 and all(np.array_equal(np.sort(p), everything) for p in passes)
    orders = [tuple(p[p % 100 == 0] // 100) for p in passes]
    assert len(set(orders)) == len(orders)  # a new order every pass
    if chunk == 7:  # the samples' sentences mixed, not one sample's after another's
        owner = {g: i for i, (t, _) in enumerate(samples) for g in set(t // 100)}
        by_sample = [owner[g] for g in orders[0]]
        assert sum(a != b for a, b in zip(by_sample, by_sample[1:])) > 14


def test_another_chunk_size_resumes_after_as_many_chunks_of_data(shards):
    reference = list(itertools.islice(_stream(shards, 1, 3), 40))
    saved = next(p for _, _, p in reference if p.sample >= 6 and p.offset > 0)
    loader = TokenBatches(shards, 700, 5, 0, 1, 2, False, chunk=2, start=saved)
    assert "1 worker(s), 2 sample(s) at a time, not 1, 3 at a time" in loader.reordered
    assert loader.start == Position(saved.sample - saved.sample % 2, 0, 1, 2, DEALT)
    fresh = TokenBatches(shards, 700, 5, 0, 1, 2, False, chunk=2, start=loader.start)
    assert fresh.reordered is None
    for a, b in itertools.islice(zip(loader, fresh), 5):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


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


def test_a_position_saved_in_shard_order_continues_after_as_many_samples(shards):
    """Checkpoints from before samples were read in a new order every pass: their position
    counts samples of another order, so the stream keeps the count and drops the offset."""
    old = Position(9, 17, 1, 1, "shards")
    loader = TokenBatches(shards, 700, 5, 0, 1, 2, False, chunk=1, start=old)
    assert "whole shards were read in order" in loader.reordered
    same_count = TokenBatches(shards, 700, 5, 0, 1, 2, False, chunk=1,
                              start=Position(9, 0, 1, 1, DEALT))
    assert same_count.reordered is None
    for a, b in itertools.islice(zip(loader, same_count), 5):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_loader_workers_auto_gives_a_gpu_rank_four_and_a_cpu_rank_one():
    """Left to be chosen, never more than the samples a rank has to deal to them, nor on a
    GPU than the rank's cores leave beside the trainer."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert loader_workers(-1, cuda, 100, 16) == 4
    assert loader_workers(-1, cuda, 3, 16) == 3
    assert loader_workers(-1, cuda, 100, 3) == 2 and loader_workers(-1, cuda, 100, 1) == 1
    assert loader_workers(-1, cpu, 100, 16) == 1
    assert loader_workers(0, cuda, 100, 16) == 0  # asked for: in the trainer
    assert loader_workers(3, cpu, 100, 16) == 3
    assert loader_workers(5, cuda, 3, 2) == 5  # asked for: the loader warns


def test_a_position_saved_when_workers_read_their_own_shards_keeps_its_amount(shards):
    """Checkpoints from before loader workers were dealt samples: one worker read the same
    stream then as now; two read other samples, so the stream keeps the amount read."""
    one = TokenBatches(shards, 700, 5, 0, 1, 2, False, chunk=1, start=Position(4, 9, 1, 1, MIXED))
    assert one.reordered is None and one.start == Position(4, 9, 1, 1, DEALT)
    two = TokenBatches(shards, 700, 5, 0, 2, 2, False, chunk=1, start=Position(4, 9, 2, 1, MIXED))
    assert "each loader worker read its own shards" in two.reordered
    assert two.start == Position(4, 0, 2, 1, DEALT)


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_pass_through_uneven_shards_alike(tmp_path, workers):
    """The trainer takes the workers' chunks in turn, so each must hold an equal share of the
    rank's samples: with whole shards per worker, a worker holding one small shard read it
    several times while another passed once through two large ones. Every pass over the
    rank's samples reads each of them once, however the shards are sized."""
    samples = numbered_samples(12)
    sources = []
    for name, part in (("a", samples[:7]), ("b", samples[7:9]), ("c", samples[9:])):
        write_shard(tmp_path / f"{name}.tar", part)
        sources.append((str(tmp_path / f"{name}.tar"), len(part)))
    per_pass = sum(len(t) for t, _ in samples)
    size = 41
    batches = itertools.islice(_stream(sources, workers, 1, batch_words=size), 3 * per_pass // size)
    tokens = np.concatenate([t for t, _, _ in batches])
    owner = {g: i for i, (t, _) in enumerate(samples) for g in set(t // 100)}
    firsts = tokens[tokens % 100 == 0] // 100  # each sentence's first token
    reads = np.bincount([owner[g] for g in firsts], minlength=12)
    per_sample = np.array([len(lengths) for _, lengths in samples])
    times = reads / per_sample
    assert times.max() - times.min() <= 1, times  # within the pass in progress


def test_one_shard_feeds_as_many_workers_as_it_has_samples(tmp_path, w2vdist_log):
    path = tmp_path / "shard.tar"
    write_shard(path, numbered_samples(3))
    assert TokenBatches([(str(path), 3)], 50, 5, 0, 3, 2, False, chunk=1).workers == 3
    assert "data.loader_workers" not in w2vdist_log.text
    loader = TokenBatches([(str(path), 3)], 50, 5, 0, 4, 2, False, chunk=1)
    assert loader.workers == 3
    assert ("data.loader_workers is 4, but rank 0 has 3 sample(s) to deal to them"
            in w2vdist_log.text)
    tokens = np.concatenate([t.numpy() for t, _ in itertools.islice(loader, 8)])
    assert len(set(tokens[tokens % 100 == 0] // 100)) > 10  # all three workers' sentences


@pytest.mark.parametrize("text, why", [
    (b"[]", "not a JSON object"), (b"{}", "format is None, expected 'w2vdist-shards'"),
    (b"<html>", "Expecting value"),
])
def test_a_manifest_that_is_not_one_is_refused_by_name(text: bytes, why: str) -> None:
    with pytest.raises(UsageError) as err:
        Manifest.parse(text, "https://host/corpus/manifest.json")
    assert str(err.value).startswith(f"https://host/corpus/manifest.json: unreadable manifest: "
                                     f"{why}")


@pytest.mark.parametrize("names, why", [
    (["../x.tar"], "shard name '../x.tar' is not a file name in the corpus folder"),
    (["/etc/x.tar"], "shard name '/etc/x.tar' is not a file name in the corpus folder"),
    (["a\\b.tar"], "shard name 'a\\\\b.tar' is not a file name in the corpus folder"),
    ([".."], "shard name '..' is not a file name in the corpus folder"),
    ([""], "shard name '' is not a file name in the corpus folder"),
    ([7], "shard 0: name is 7, not a string"),
    (["s.tar", "s.tar"], "shard 's.tar' is listed twice"),
])
def test_shard_names_are_plain_file_names_each_listed_once(names: list, why: str) -> None:
    """A manifest at a URL names the files its shards are copied to in the cache."""
    shards = [{"name": name, "tokens": 5, "samples": 1} for name in names]
    manifest = {"vocab_size": 3, "total_tokens": 5 * len(names), "shards": shards,
                "vocab_hash": "h", "format": "w2vdist-shards", "version": 1}
    with pytest.raises(UsageError) as err:
        Manifest.parse(json.dumps(manifest).encode(), "m.json")
    assert str(err.value) == f"m.json: unreadable manifest: {why}"


def test_a_manifest_from_a_later_version_is_read_for_what_this_one_knows() -> None:
    shard = {"name": "shard-000000.tar", "tokens": 5, "samples": 1, "bytes": 9,
             "sha256": "ab", "crc32c": "later"}
    manifest = {"vocab_size": 3, "total_tokens": 5, "shards": [shard], "vocab_hash": "h",
                "format": "w2vdist-shards", "version": 1, "made_by": "later"}
    read = Manifest.parse(json.dumps(manifest).encode(), "m.json")
    assert read.shards[0].sha256 == "ab" and read.total_tokens == 5
    del shard["tokens"]
    with pytest.raises(UsageError, match="m.json: unreadable manifest: shard 0: tokens is "
                       "missing"):
        Manifest.parse(json.dumps(manifest).encode(), "m.json")


@pytest.mark.parametrize("change, why", [
    ({"vocab_size": {}}, "vocab_size is {}, not an integer"),
    ({"total_tokens": "5"}, 'total_tokens is "5", not an integer'),
    ({"total_tokens": True}, "total_tokens is true, not an integer"),
    ({"shards": {"name": "s.tar"}}, 'shards is {"name": "s.tar"}, not a list'),
    ({"shards": [7]}, "shard 0: not a JSON object"),
    ({"shards": [{"name": "s.tar", "tokens": 5, "samples": None}]},
     "shard 0: samples is null, not an integer"),
    ({"tokenizer": 3}, "tokenizer is 3, not an object"),
    ({"stats": []}, "stats is [], not an object"),
    ({"vocab_hash": 1.5}, "vocab_hash is 1.5, not a string"),
])
def test_a_manifest_field_of_another_type_is_refused_naming_it(change: dict, why: str) -> None:
    """A manifest edited by hand or damaged, still JSON: refused as it is read, not with a
    traceback from wherever training first uses the field."""
    manifest = {"vocab_size": 3, "total_tokens": 5, "vocab_hash": "h",
                "shards": [{"name": "s.tar", "tokens": 5, "samples": 1}],
                "format": "w2vdist-shards", "version": 1, **change}
    with pytest.raises(UsageError) as err:
        Manifest.parse(json.dumps(manifest).encode(), "m.json")
    assert str(err.value) == f"m.json: unreadable manifest: {why}"


@pytest.mark.parametrize("samples, tokens", [(10**12, 5), (1, 10**6), (0, 5)])
def test_counts_a_shard_cannot_hold_are_refused_before_training(tmp_path: Path, samples: int,
                                                                 tokens: int) -> None:
    """A trillion samples in a 40 KB shard (a damaged digit) had the loader plan for them, out
    of memory; a sample takes at least 2,048 bytes of a tar, a token 4."""
    shard = {"name": "s.tar", "tokens": tokens, "samples": samples, "bytes": 40_960}
    manifest = Manifest.parse(json.dumps({
        "vocab_size": 3, "total_tokens": tokens, "shards": [shard], "vocab_hash": "h",
        "format": "w2vdist-shards", "version": 1}).encode(), "m.json")
    with pytest.raises(UsageError) as err:
        manifest.check_files(tmp_path, files=False)
    assert str(err.value) == (f"{tmp_path / 'manifest.json'}: shard s.tar has {samples:,} "
                              f"samples and {tokens:,} tokens in 40,960 bytes")
    manifest.shards[0] = ShardInfo("s.tar", 10_240, 20, 40_960)  # as much as it can hold
    manifest.check_files(tmp_path, files=False)


def test_token_ids_outside_the_vocabulary_or_not_int32_name_their_sample(tmp_path):
    lengths = np.array([3], np.int32)
    cases = [(np.array([0, 9, 10], np.int32), "sample 1 holds token id 10, but the vocabulary "
              "has 10 words"),
             (np.array([0, -5, 2], np.int32), "sample 1 holds token id -5, but the vocabulary "
              "has 10 words"),
             (np.array([0, 1, 2], np.int64), "sample 1 holds int64 token ids, not int32")]
    for i, (tokens, said) in enumerate(cases):
        path = tmp_path / f"shard-{i}.tar"
        with wds.TarWriter(str(path)) as writer:
            for key, ids in (("0", np.array([1, 2, 3], np.int32)), ("1", tokens)):
                writer.write({"__key__": key, "tokens.npy": shards_module._npy(ids),
                              "lengths.npy": shards_module._npy(lengths)})
        reader = chunks.SampleReader([(str(path), 2)], vocab=10)
        assert reader.read((0, 0))[0].tolist() == [1, 2, 3]
        with pytest.raises(chunks.UnreadableShard) as err:
            reader.read((0, 1))
        assert str(err.value) == f"{path}: unreadable shard ({said})"
