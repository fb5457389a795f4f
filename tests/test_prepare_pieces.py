"""How `prepare` divides a corpus among workers (`corpus.pieces`): byte ranges of whole
segments, a file of one line cut at segment starts, compressed files cut into blocks by the
main process or read whole by workers, small files sharing tasks; the output the same for any
number of workers."""

from __future__ import annotations

import gzip
import itertools
import random
from pathlib import Path

import pytest
import zstandard

from tests.test_prepare import corpus, files_of, prep, random_corpus, sentences  # corpus: a fixture
from tests.test_prepare_inputs import documents, json_lines, shards_and_vocab
from w2vdist.corpus import filetypes
from w2vdist.corpus import pieces as corpus_pieces
from w2vdist.corpus import text as corpus_text
from w2vdist.corpus.shards import Manifest


def test_same_output_for_any_worker_count(
    corpus: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte ranges depend on the worker count (small ones allowed here); the output does not."""
    root, _ = corpus
    (root / "big.txt").write_text(random_corpus(9, 3000))
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 1000)
    files = filetypes.find_files([str(root)])
    assert len(corpus_pieces.split_pieces(files, 1)) != len(corpus_pieces.split_pieces(files, 3))
    for workers in (1, 3):
        out = tmp_path / f"{workers}"
        assert prep(root, out=out, min_count=2, shard_tokens=5000, workers=workers) == 0
    assert len(files_of(tmp_path / "1")) > 4
    assert files_of(tmp_path / "1") == files_of(tmp_path / "3")


def test_many_small_files_share_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Consecutive small files share a worker call (and a file of ids) of MIN_RANGE_BYTES:
    the output of the same text in one file, for one worker or two."""
    text = random_corpus(4, 600)
    lines = text.splitlines(keepends=True)
    (tmp_path / "docs").mkdir()
    for i in range(0, len(lines), 3):
        (tmp_path / "docs" / f"{i:05d}.txt").write_text("".join(lines[i : i + 3]))
    (tmp_path / "all.txt").write_text(text)
    assert prep(tmp_path / "all.txt", out=tmp_path / "one", min_count=1) == 0
    # one task of them all: one worker, whatever --workers says (no processes to start)
    capsys.readouterr()
    assert prep(tmp_path / "docs", out=tmp_path / "docs-4", min_count=1, workers=4) == 0
    assert ", 1 worker\n" in capsys.readouterr().out
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 2000)
    pieces = corpus_pieces.split_pieces(filetypes.find_files([str(tmp_path / "docs")]), 2)
    groups = list(corpus_pieces.grouped(pieces))
    assert len(pieces) == 200 and 5 < len(groups) < 40 and sum(groups, []) == pieces
    for workers in (1, 2):
        out = tmp_path / f"docs-{workers}"
        assert prep(tmp_path / "docs", out=out, min_count=1, workers=workers) == 0
        assert f", {workers} worker" in capsys.readouterr().out
        assert {n: b for n, b in files_of(out).items() if n != "manifest.json"} == {
            n: b for n, b in files_of(tmp_path / "one").items() if n != "manifest.json"}
    (tmp_path / "gz").mkdir()  # small compressed files, read whole by workers, share tasks too
    for doc in sorted((tmp_path / "docs").iterdir()):
        (tmp_path / "gz" / f"{doc.name}.gz").write_bytes(gzip.compress(doc.read_bytes()))
    gz = corpus_pieces.split_pieces(filetypes.find_files([str(tmp_path / "gz")]), 2)
    assert len(list(corpus_pieces.grouped(corpus_pieces.expand(gz, 2)))) < 40
    assert prep(tmp_path / "gz", out=tmp_path / "gz-2", min_count=1, workers=2) == 0
    assert shards_and_vocab(tmp_path / "gz-2") == shards_and_vocab(tmp_path / "one")
    (tmp_path / "two").mkdir()  # a file's end ends its last line, in a shared task too
    (tmp_path / "two" / "1.txt").write_text("a b")
    (tmp_path / "two" / "2.txt").write_text("c d\n")
    assert prep(tmp_path / "two", out=tmp_path / "ab", min_count=1) == 0
    assert sentences(tmp_path / "ab") == [["a", "b"], ["c", "d"]]


def test_a_file_of_one_line_is_shared_by_every_worker(tmp_path: Path) -> None:
    """text8 is one line: it is cut where segments start (after a space, or between characters
    in a stretch without one), so several workers read it, with the same output for any worker
    count, and no word is lost or read twice. A JSON Lines record is never cut."""
    rng = random.Random(3)
    words = rng.choices(["alpha", "beta", "gamma", "délta", "ünï"], k=600_000)
    at = next(i for i, end in enumerate(itertools.accumulate(len(w.encode()) + 1 for w in words))
              if end > corpus_text.MIN_RANGE_BYTES - 9_999)
    words[at] = "é" * 70_000  # 140 KB without a space across the 2nd segment's start
    path = tmp_path / "one.txt"
    path.write_text(" ".join(words), encoding="utf-8")  # no newline at all
    segments = -(-path.stat().st_size // corpus_text.MIN_RANGE_BYTES)
    assert segments == 4 and len(corpus_pieces.split_pieces([path], 2)) == 4
    for workers in (1, 3):
        assert prep(path, out=tmp_path / f"{workers}", min_count=1, workers=workers,
                    max_sentence_len=10**6) == 0
    assert files_of(tmp_path / "1") == files_of(tmp_path / "3")
    got = sentences(tmp_path / "1")
    assert len(got) == segments  # one cut at each segment start
    assert [w for s in got for w in s if "éé" not in w] == words[:at] + words[at + 1 :]
    halves = [w for s in got for w in s if "éé" in w]
    assert len(halves) == 2 and "".join(halves) == words[at]
    assert Manifest.load(tmp_path / "1").stats["lines"] == 1
    (tmp_path / "one.jsonl").write_bytes(json_lines([" ".join(words[:400_000])]))
    assert prep(tmp_path / "one.jsonl", out=tmp_path / "json", min_count=1, workers=2,
                max_sentence_len=10**6) == 0
    assert sentences(tmp_path / "json") == [words[:400_000]]


def test_compressed_files_read_whole_by_workers_or_in_blocks_give_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With as many compressed files as workers each goes whole to a worker, which cuts it into
    the blocks the main process cuts with fewer: a long line is cut where the plain file's
    segments start either way (not at the blocks' ends), and a record is whole either way."""
    words = random_corpus(5, 400).split()
    line = " ".join(words)  # one long line: cut into blocks after a space
    (tmp_path / "x.txt.gz").write_bytes(gzip.compress(line.encode("utf-8")))
    docs = documents(random_corpus(6, 300), 6)
    (tmp_path / "y.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(json_lines(docs)))
    inputs = [tmp_path / "x.txt.gz", tmp_path / "y.jsonl.zst"]
    assert prep(*inputs, out=tmp_path / "two", min_count=1, workers=2) == 0  # whole, 2 workers
    monkeypatch.setattr(corpus_text, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(corpus_text, "BLOCK_BYTES", 2000)
    # Segments longer than a block and a read, so a block holds no segment start inside it:
    # spawned workers, which would look for them, do not see these patches.
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 3000)
    monkeypatch.setattr(corpus_text, "LONG_LINE_BYTES", 100)
    pieces = corpus_pieces.split_pieces(inputs, 3)
    assert len(list(corpus_pieces.expand(pieces, 3))) > 4 == 2 + 2  # blocks with 3 workers
    assert [p.data for p in corpus_pieces.expand(pieces, 2)] == [None, None]  # whole with 2
    with monkeypatch.context() as patch:
        patch.setattr(corpus_pieces, "MAX_WHOLE_BYTES", 100)  # too big to go whole
        assert None not in [p.data for p in corpus_pieces.expand(pieces, 2)]
    big = tmp_path / "big.txt.gz"  # over 1.5 times a worker's share: the main process cuts it
    big.write_bytes(gzip.compress(random_corpus(7, 3000).encode("utf-8"), compresslevel=0))
    mixed = corpus_pieces.split_pieces([*inputs, big], 2)
    assert len(list(corpus_pieces.expand(mixed, 2))) > 3
    assert prep(*inputs, out=tmp_path / "whole", min_count=1, workers=1) == 0  # here, whole
    assert prep(*inputs, out=tmp_path / "blocks", min_count=1, workers=3) == 0
    (tmp_path / "x.txt").write_text(line, encoding="utf-8")
    (tmp_path / "y.jsonl").write_bytes(json_lines(docs))
    assert prep(tmp_path / "x.txt", tmp_path / "y.jsonl", out=tmp_path / "plain", min_count=1) == 0
    assert shards_and_vocab(tmp_path / "whole") == shards_and_vocab(tmp_path / "blocks") == \
        shards_and_vocab(tmp_path / "plain")
    whole, blocks, plain = (Manifest.load(tmp_path / n).stats for n in ("whole", "blocks", "plain"))
    assert whole["sentences"] == blocks["sentences"] > Manifest.load(tmp_path / "two").stats[
        "sentences"]  # the long line was cut at each 3,000-byte segment
    assert whole["lines"] == blocks["lines"] == plain["lines"]
    assert whole["formats"] == {"text": 1, "jsonl": 1}
