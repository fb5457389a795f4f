"""word2vec text/binary files: exact round trips through our reader, gensim and word2vec.c."""

from __future__ import annotations

import gzip
import subprocess
import sys
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


@pytest.mark.parametrize("binary", [False, True])
def test_unicode_spaces_stay_in_the_word(tmp_path: Path, matrix: torch.Tensor, binary: bool
                                         ) -> None:
    """GloVe's 840B vectors hold words such as 'at\\xa0name@domain.com': gensim writes and
    reads them whole, and so does word2vec.c (it splits at ASCII whitespace only)."""
    words = [*WORDS[:5], "at\u00a0name@domain.com", "東京\u3000駅", ".\u2009."]
    path = tmp_path / "vectors.bin"
    vectors.write_word2vec(path, words, matrix, binary=binary)
    read_words, read = vectors.read_word2vec(path)
    assert read_words == words and torch.equal(read, matrix)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == words
    np.testing.assert_array_equal(kv.vectors, matrix.numpy())
    if binary:
        assert [w.decode() for w in distance_c_read(path)[0]] == words
    theirs = tmp_path / "gensim.txt"
    kv.save_word2vec_format(str(theirs), binary=binary)
    assert vectors.read_word2vec(theirs)[0] == words


@pytest.mark.parametrize(
    "word", ["", "new york", "tab\there", "line\nbreak", "cr\r", "vt\x0b", "ff\x0c"])
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
    cut = tmp_path / "cut.bin"
    cut.write_bytes(b"5 2\n" + rec + b"v " + b"\x01\x02")  # a limit: still the header's count
    with pytest.raises(UsageError, match="record 2 of 5: file ends early"):
        vectors.read_word2vec(cut, limit=3)
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


COMPRESSED = [".gz", ".bz2", ".xz", ".zst"]


@pytest.mark.parametrize("suffix", COMPRESSED)
@pytest.mark.parametrize("name", ["v.bin", "v.txt"])
def test_compressed_files_by_suffix_read_back_exactly_and_by_gensim(
    tmp_path: Path, matrix: torch.Tensor, name: str, suffix: str
) -> None:
    path = tmp_path / (name + suffix)
    WordVectors(WORDS, matrix).save(path)  # binary or text by the name before the suffix
    magic = {".gz": b"\x1f\x8b", ".bz2": b"BZh", ".xz": b"\xfd7zXZ", ".zst": b"\x28\xb5\x2f\xfd"}
    assert path.read_bytes().startswith(magic[suffix])
    words, read = vectors.read_vectors(path)
    assert words == WORDS and torch.equal(read, matrix)
    assert vectors.read_vectors(path, limit=3)[0] == WORDS[:3]
    if suffix != ".zst":  # gensim's smart_open reads zstd only with an optional package
        kv = KeyedVectors.load_word2vec_format(str(path), binary=name.endswith(".bin"))
        assert kv.index_to_key == WORDS
        np.testing.assert_array_equal(kv.vectors, matrix.numpy())
    with pytest.raises(UsageError, match="cannot hold the text format"):
        WordVectors(WORDS, matrix).save(tmp_path / ("w.bin" + suffix), binary=False)


@pytest.mark.parametrize("binary", [False, True])
def test_reads_compressed_files_gensim_wrote_and_its_limit(
    tmp_path: Path, binary: bool
) -> None:
    words = [f"w{i}" for i in range(3000)]
    matrix = torch.randn(len(words), 7, generator=torch.Generator().manual_seed(2))
    kv = KeyedVectors(7)
    kv.add_vectors(words, matrix.numpy())
    path = tmp_path / ("gensim.bin.gz" if binary else "gensim.txt.bz2")
    kv.save_word2vec_format(str(path), binary=binary)
    wv = WordVectors.load(path)
    assert wv.index_to_key == words and torch.equal(wv.vectors, matrix)
    for limit in (1, 1234, 3000, 5000):
        theirs = KeyedVectors.load_word2vec_format(str(path), binary=binary, limit=limit)
        ours = WordVectors.load(path, limit=limit)
        assert ours.index_to_key == theirs.index_to_key
        np.testing.assert_array_equal(ours.vectors.numpy(), theirs.vectors)


@pytest.mark.parametrize("name", ["v.bin.gz", "v.txt.xz", "glove.txt.gz"])
def test_a_compressed_matrix_grows_as_records_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A compressed file's size cannot check its header: the matrix starts small and grows
    (here from 64 rows) instead of trusting the header's count."""
    words = [f"w{i}" for i in range(1000)]
    matrix = torch.randn(len(words), 4, generator=torch.Generator().manual_seed(3))
    path = tmp_path / name
    if name.startswith("glove"):
        plain = tmp_path / "glove.txt"
        vectors.write_word2vec(plain, words, matrix, binary=False)
        path.write_bytes(gzip.compress(plain.read_bytes().split(b"\n", 1)[1]))  # no header
    else:
        WordVectors(words, matrix).save(path)
    monkeypatch.setattr(vectors, "_CHECKED_BYTES", 64 * 4 * 4)
    wv = WordVectors.load(path)
    assert wv.index_to_key == words and torch.equal(wv.vectors, matrix)
    assert wv.vectors.shape == (1000, 4)
    assert len(WordVectors.load(path, limit=700)) == 700
    assert len(WordVectors.load(path, limit=5000)) == 1000  # a limit past the end: all of it


def test_a_compressed_file_that_lies_or_ends_early_is_refused(tmp_path: Path) -> None:
    record = b"w " + np.array([1.5, -2.0], "<f4").tobytes() + b"\n"
    lying = tmp_path / "lying.bin.gz"  # promises 10^12 words: no allocation for them
    lying.write_bytes(gzip.compress(b"1000000000000 2\n" + record))
    with pytest.raises(UsageError, match=r"lying.bin.gz: record 2 of 1000000000000: file ends"):
        vectors.read_vectors(lying)
    path = tmp_path / "v.bin.gz"
    WordVectors([f"w{i}" for i in range(500)], torch.ones(500, 8)).save(path)
    cut = tmp_path / "cut.bin.gz"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UsageError, match=r"cut.bin.gz: cannot read: .*end-of-stream"):
        WordVectors.load(cut)
    archive = tmp_path / "v.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UsageError, match=r"v.zip: a zip file, not word vectors"):
        WordVectors.load(archive)


def test_a_gensim_pickle_is_not_unpickled_and_the_error_says_how_to_convert_it(
    tmp_path: Path, matrix: torch.Tensor
) -> None:
    kv = KeyedVectors(5)
    kv.add_vectors(WORDS, matrix.numpy())
    kv.save(str(tmp_path / "vectors.kv"))
    with pytest.raises(UsageError,
                       match=r"vectors.kv: a Python pickle .* WordVectors.from_gensim takes it"):
        WordVectors.load(tmp_path / "vectors.kv")
    again = WordVectors.from_gensim(KeyedVectors.load(str(tmp_path / "vectors.kv")))
    assert again.index_to_key == WORDS and torch.equal(again.vectors, matrix)


def test_a_run_loads_its_first_rows(tmp_path: Path) -> None:
    inp, out = write_run(tmp_path / "run", WORDS)
    wv = WordVectors.load(tmp_path / "run", "average", limit=3)
    assert wv.index_to_key == WORDS[:3] and torch.allclose(wv.vectors, (inp + out)[:3] / 2)
    assert wv.output is not None and torch.equal(wv.output, out[:3])
    assert wv.counts is not None and len(wv.counts) == 3
    with pytest.raises(UsageError, match="limit must be >= 1"):
        WordVectors.load(tmp_path / "run", limit=0)


def _gensim_vectors() -> KeyedVectors:
    kv = KeyedVectors(4)
    words = ["the", "of", "café", "naïve", "x"]
    kv.add_vectors(words, np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    for i, word in enumerate(words):
        kv.set_vecattr(word, "count", 100 - i)
    return kv


@pytest.mark.parametrize("name, binary, header", [
    ("v.bin", True, True), ("v.txt.gz", False, True), ("v.glove", False, False)])
def test_gensims_load_and_save_word2vec_format_calls_run_unchanged(
    tmp_path: Path, name: str, binary: bool, header: bool
) -> None:
    """Both ways, with gensim's arguments: counts through `fvocab`, GloVe's layout through
    `write_header`/`no_header`, compression by the name."""
    kv = _gensim_vectors()
    path, counts = tmp_path / name, tmp_path / "counts.txt"
    kv.save_word2vec_format(str(path), fvocab=str(counts), binary=binary, write_header=header)
    wv = WordVectors.load_word2vec_format(path, fvocab=counts, binary=binary,
                                          no_header=not header)
    assert wv.index_to_key == kv.index_to_key and wv.counts.tolist() == [100, 99, 98, 97, 96]
    np.testing.assert_array_equal(wv.vectors.numpy(), kv.vectors)

    ours, our_counts = tmp_path / ("w-" + name), tmp_path / "w-counts.txt"
    wv.save_word2vec_format(ours, fvocab=our_counts, binary=binary, write_header=header)
    assert our_counts.read_bytes() == counts.read_bytes()
    back = KeyedVectors.load_word2vec_format(str(ours), fvocab=str(our_counts), binary=binary,
                                             no_header=not header)
    assert back.index_to_key == kv.index_to_key
    assert [back.get_vecattr(w, "count") for w in back.index_to_key] == [100, 99, 98, 97, 96]
    np.testing.assert_array_equal(back.vectors, kv.vectors)
    assert ours.read_bytes().startswith(b"\x1f\x8b") == name.endswith(".gz")  # by the name


def test_no_header_reads_a_glove_file_whose_first_line_looks_like_one(tmp_path: Path) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("1 2\n3 4\n")
    wv = WordVectors.load_word2vec_format(path, no_header=True)
    assert wv.index_to_key == ["1", "3"] and wv.vectors.tolist() == [[2.0], [4.0]]
    with pytest.raises(UsageError, match="numbers.txt:2: expected a word and 2 values"):
        WordVectors.load_word2vec_format(path)


def test_load_word2vec_formats_decoding_as_gensims(tmp_path: Path) -> None:
    kv = _gensim_vectors()
    kv.save_word2vec_format(str(tmp_path / "v.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes((tmp_path / "v.txt").read_bytes().replace("café".encode(), b"caf\xe9"))
    for options in ({"unicode_errors": "replace"}, {"unicode_errors": "ignore"},
                    {"encoding": "latin-1"}):
        words = WordVectors.load_word2vec_format(bad, **options).index_to_key
        assert words == KeyedVectors.load_word2vec_format(str(bad), **options).index_to_key
    assert "caf\ufffd" in WordVectors.load_word2vec_format(bad, unicode_errors="replace")
    with pytest.raises(UsageError, match=r"bad.txt:4: not valid UTF-8"):
        WordVectors.load_word2vec_format(bad)
    with pytest.raises(UsageError, match="bad.txt: cannot decode its words: unknown encoding"):
        WordVectors.load_word2vec_format(bad, encoding="klingon")
    with pytest.raises(UsageError, match="unknown error handler name 'bogus'"):
        WordVectors.load_word2vec_format(bad, unicode_errors="bogus")
    with pytest.raises(UsageError, match=r"kept as float32 \(datatype float16 asked for\)"):
        WordVectors.load_word2vec_format(bad, datatype=np.float16)
    counts = tmp_path / "counts.txt"
    counts.write_text("the 5\nof 4\n")
    with pytest.raises(UsageError, match="counts.txt: no count for 3 of the 5 words, the first"
                                         " 'café'"):
        WordVectors.load_word2vec_format(tmp_path / "v.txt", fvocab=counts)
    with pytest.raises(UsageError, match="these vectors hold no counts to write"):
        WordVectors.load_word2vec_format(tmp_path / "v.txt").save_word2vec_format(
            tmp_path / "out.txt", fvocab=tmp_path / "out-counts.txt")
    assert not (tmp_path / "out.txt").exists()


def test_text_is_parsed_in_blocks_as_a_line_at_a_time_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of records go through numpy's C reader: the values of any spelling Python's
    float reads (tabs, runs of spaces, word2vec.c's trailing space, CRLF, inf and nan), and
    a bad record is still named by its line, in any block."""
    monkeypatch.setattr(vectors, "_TEXT_ROWS", 7)
    rng = np.random.default_rng(0)
    spellings = ["1e-30", "-3.4e38", "nan", "-inf", "+1.5", "1.", ".5", "1E5", "-0", "1_000"]
    lines = []
    for i in range(50):
        values = [spellings[j] for j in rng.integers(0, len(spellings), 3)]
        values.append(f"{rng.standard_normal():.6f}")
        lines.append(f"w{i} " + ["  ", "\t", " "][i % 3].join(values) + [" \r\n", "\n"][i % 2])
    path = tmp_path / "v.txt"
    path.write_text("50 4\n" + "".join(lines), encoding="utf-8", newline="")
    words, read = vectors.read_word2vec(path)
    expected = [[float(v) for v in line.split()[1:]] for line in lines]
    assert words == [f"w{i}" for i in range(50)]
    np.testing.assert_array_equal(read.numpy(), np.array(expected, dtype=np.float32))
    np.testing.assert_array_equal(WordVectors.load(path, limit=10).vectors, read[:10])  # nan
    lines[30] = "w30 1 2 3 x\n"
    path.write_text("50 4\n" + "".join(lines), encoding="utf-8", newline="")
    with pytest.raises(UsageError, match=r"v.txt:32: a value of 'w30' is not a number"):
        vectors.read_word2vec(path)
    lines[30] = "w30 1 2 3\n"
    path.write_text("50 4\n" + "".join(lines), encoding="utf-8", newline="")
    with pytest.raises(UsageError, match=r"v.txt:32: expected a word and 4 values"):
        vectors.read_word2vec(path)


def test_a_repeated_word_keeps_its_first_vector_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "dup.txt"
    path.write_text("4 2\nab 1 2\nc 5 6\nab 3 4\nc 7 8\n", encoding="utf-8")
    wv = WordVectors.load(path)
    assert wv.index_to_key == ["ab", "c"] and wv.vectors.tolist() == [[1, 2], [5, 6]]
    shown = subprocess.run([sys.executable, "-m", "w2vdist", "neighbors", str(path), "ab"],
                           capture_output=True, text=True, timeout=120, check=True)
    assert shown.stderr == f"{path}: 2 repeated word(s), the first 'ab': each keeps its " \
        "first vector\n"
    assert shown.stdout.split() == ["ab", "0.9734", "c"]  # answered once
    assert wv.most_similar("ab", topn=5) == [("c", pytest.approx(wv.similarity("ab", "c")))]
    assert KeyedVectors.load_word2vec_format(str(path)).get_index("ab") == 0  # gensim's too
