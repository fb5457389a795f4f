"""word2vec text/binary files: exact round trips through our reader, gensim and word2vec.c."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from w2vdist.training import checkpoint
from w2vdist.vectors import word2vec as vectors
from w2vdist.errors import UsageError
from w2vdist.vectors.keyed import WordVectors

from tests.helpers import WORDS, distance_c_read, write_run

@pytest.fixture
def matrix() -> torch.Tensor:
    m = torch.randn(len(WORDS), 5, generator=torch.Generator().manual_seed(1))
    m[1, 2] = 1e-30  # tiny and huge values must survive the text format too
    m[2, 0] = -3.4e38
    return m


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip_and_gensim_read_it_exactly(
    tmp_path: Path, matrix: torch.Tensor, binary: bool
) -> None:
    path = tmp_path / "vectors.bin"
    vectors.write_word2vec(path, WORDS, matrix, binary=binary)
    words, read = vectors.read_word2vec(path)
    assert words == WORDS and read.dtype == torch.float32 and torch.equal(read, matrix)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == WORDS
    np.testing.assert_array_equal(kv.vectors, matrix.numpy())
    assert path.read_bytes().startswith(f"{len(WORDS)} 5\n".encode())
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.bin"]  # no temporary left


@pytest.mark.parametrize("binary", [False, True])
def test_reads_files_gensim_wrote(tmp_path: Path, matrix: torch.Tensor, binary: bool) -> None:
    kv = KeyedVectors(5)
    kv.add_vectors(WORDS, matrix.numpy())
    path = tmp_path / "gensim.txt"
    kv.save_word2vec_format(str(path), binary=binary)  # binary without record newlines
    words, read = vectors.read_word2vec(path)
    assert words == WORDS and torch.equal(read, matrix)


def test_binary_layout_is_word2vec_c(tmp_path: Path, matrix: torch.Tensor) -> None:
    path = tmp_path / "v.bin"
    vectors.write_word2vec(path, WORDS, matrix, binary=True)
    words, read = distance_c_read(path)
    assert [w.decode() for w in words] == WORDS
    np.testing.assert_array_equal(read, matrix.numpy())
    data = path.read_bytes()
    record = 4 * 5
    first = data.index(b"\n") + 1 + len(WORDS[0].encode()) + 1
    assert data[first + record : first + record + 1] == b"\n"  # each record ends with a newline
    assert data.endswith(b"\n")


@pytest.mark.parametrize("word", ["", "new york", "tab\there", "line\nbreak", "nb\u00a0sp", "cr\r"])
@pytest.mark.parametrize("binary", [False, True])
def test_unwritable_word_is_refused_and_nothing_written(
    tmp_path: Path, word: str, binary: bool
) -> None:
    path = tmp_path / "out.txt"
    path.write_text("previous")
    words = ["a", "b", word, "c"]
    with pytest.raises(UsageError) as err:
        vectors.write_word2vec(path, words, torch.zeros(4, 3), binary=binary)
    assert f"{word!r} (row 2)" in str(err.value) and str(path) in str(err.value)
    assert path.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_failure_mid_write_keeps_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    class FailingWords(list):
        """Raises when the writer reaches the second block of rows."""

        def __getitem__(self, item):  # type: ignore[no-untyped-def]
            if isinstance(item, slice) and item.start:
                raise OSError("disk full")
            return super().__getitem__(item)

    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    words = FailingWords(f"w{i}" for i in range(5000))
    with pytest.raises(OSError, match="disk full"):
        vectors.write_word2vec(path, words, torch.zeros(5000, 2), binary=True)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_write_counts_is_save_vocab_layout(tmp_path: Path) -> None:
    vectors.write_counts(tmp_path / "vocab.txt", ["a", "é"], [5, 3])
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8") == "a 5\né 3\n"


def _malformed(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "bad.vec"
    path.write_bytes(content)
    with pytest.raises(UsageError) as err:
        vectors.read_word2vec(path)
    message = str(err.value)
    assert message.startswith(str(path))
    return message


def test_malformed_files_name_file_and_place(tmp_path: Path) -> None:
    assert ":1: expected the header" in _malformed(tmp_path, b"hello world\n")
    assert ":1: expected the header" in _malformed(tmp_path, b"")
    assert ":3: file ends after 1 of 2" in _malformed(tmp_path, b"2 2\na 1 2\n")
    assert ":2: expected a word and 2 values" in _malformed(tmp_path, b"1 2\na 1 2 3\n")
    assert ":3: a value of 'b' is not a number" in _malformed(tmp_path, b"2 2\na 1 2\nb 1 x\n")
    assert ":3: more records" in _malformed(tmp_path, b"1 2\na 1 2\nb 3 4\n")
    assert ":2: not valid UTF-8" in _malformed(tmp_path, b"1 2\n\xff 1 2\n")
    rec = b"w " + np.array([1.5, -2.0], "<f4").tobytes() + b"\n"
    assert "record 2 of 2: file ends early" in _malformed(
        tmp_path, b"2 2\n" + rec + b"v " + b"\x01\x02"
    )
    assert "record 2 of 2: word is not valid UTF-8" in _malformed(
        tmp_path, b"2 2\n" + rec + b"\xff" + rec[1:]
    )
    assert "more data after the header's 1 records" in _malformed(tmp_path, b"1 2\n" + rec + rec)
    with pytest.raises(UsageError, match="missing: word2vec file not found"):
        vectors.read_word2vec(tmp_path / "missing")


def test_load_run_dir_tables_and_word2vec_file(tmp_path: Path) -> None:
    inp, out = write_run(tmp_path / "run", WORDS)
    loaded = WordVectors.load(tmp_path / "run")
    assert loaded.index_to_key == WORDS and torch.equal(loaded.vectors, inp)
    assert torch.equal(WordVectors.load(tmp_path / "run", "output").vectors, out)
    average = WordVectors.load(tmp_path / "run", "average").vectors
    assert torch.allclose(average, (inp + out) / 2)
    step = checkpoint.complete_steps(tmp_path / "run")[0]
    assert torch.equal(WordVectors.load(step).vectors, inp)
    vectors.write_word2vec(tmp_path / "v.txt", WORDS, inp, binary=False)
    assert torch.equal(WordVectors.load(tmp_path / "v.txt").vectors, inp)
    with pytest.raises(UsageError, match="holds one table"):
        WordVectors.load(tmp_path / "v.txt", "output")
    with pytest.raises(UsageError, match="table must be one of"):
        WordVectors.load(tmp_path / "run", "hidden")


def test_unit_rows_keeps_zero_rows_finite() -> None:
    unit = vectors.unit_rows(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.allclose(unit, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
