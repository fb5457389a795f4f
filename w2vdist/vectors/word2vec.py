"""Word vectors in and out of files: word2vec text/binary, fastText `.vec`, GloVe text.

Both word2vec formats start with a header line `V D` and hold the V words most frequent
first. Text records are `word v1 ... vD` lines; binary records are the UTF-8 word, a space,
D little-endian float32 values and a newline, as word2vec.c writes them (gensim and
word2vec.c's readers accept it). Both formats separate fields by ASCII whitespace (gensim splits
a text record at spaces, word2vec.c and fastText at C's `isspace`), so a word that is empty or
contains a space, tab, line break, carriage return, vertical tab or form feed cannot be written:
`write_word2vec` refuses it with an error naming the word and its row. Other Unicode spaces
stay inside the word for all of those readers, as gensim writes them (GloVe's 840B vectors hold
words such as `at\xa0name@domain.com`), and are written as they are. GloVe's text
files are word2vec text without the header. Any of them may be compressed (gzip, bzip2, xz,
zstd, as pretrained vectors ship: GoogleNews' `.bin.gz`, fastText's `.vec.gz`): read by their
content, written by their name's suffix. `keyed.WordVectors` reads all of these and runs.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from w2vdist.corpus import filetypes
from w2vdist.corpus.filetypes import BufferedFile
from w2vdist.errors import UsageError
from w2vdist.files import atomic_file

SEPARATOR = re.compile(r"[ \t\n\r\v\f]")  # what the formats' readers split words at
_NUMBER_BYTES = frozenset(b"0123456789+-.eEinfatyINFATY \t\r\n")
_CHECKED_BYTES = 1 << 26  # headers asking for more memory than this are checked first
_READ_BLOCK = 1 << 24  # bytes of a binary file parsed at a time
_TEXT_PROBE = 1 << 16  # bytes allowed for the word when probing the first line
_TEXT_ROWS = 2048  # text records parsed at a time
_WRITE_ROWS = 4096  # rows formatted per write: bounds the memory of one write call
_log = logging.getLogger(__name__)
Codec = tuple[str, str]  # (encoding, errors) that words are decoded with
UTF8: Codec = ("UTF-8", "strict")


def unwritable_rows(words: Sequence[str]) -> list[int]:
    """Rows whose word is empty or holds ASCII whitespace, which would break either format."""
    return [i for i, w in enumerate(words) if not w or SEPARATOR.search(w)]


def write_word2vec(
    path: str | Path, words: Sequence[str], matrix: torch.Tensor | np.ndarray, binary: bool,
    header: bool = True,
) -> None:
    """Write `matrix` (row i is `words[i]`) atomically in word2vec text or binary format
    (without `header`: GloVe's layout)."""
    path = Path(path)
    array = _as_float32(matrix)
    if array.ndim != 2 or array.shape[0] != len(words):
        raise UsageError(f"{path}: {len(words)} words but a matrix of shape {tuple(array.shape)}")
    bad = unwritable_rows(words)
    if bad:
        row = bad[0]
        raise UsageError(
            f"{path}: cannot write word {words[row]!r} (row {row}): word2vec files cannot hold "
            f"an empty word or one containing ASCII whitespace ({len(bad)} such word(s))"
        )
    check_writable(path)
    with atomic_file(path) as out, filetypes.compressing(out, path.name) as f:
        if header:
            f.write(f"{array.shape[0]} {array.shape[1]}\n".encode())
        for start in range(0, len(words), _WRITE_ROWS):
            rows = array[start : start + _WRITE_ROWS]
            chunk = words[start : start + _WRITE_ROWS]
            if binary:
                f.write(
                    b"".join(w.encode() + b" " + r.tobytes() + b"\n" for w, r in zip(chunk, rows))
                )
            else:
                line = "%s" + " %.9g" * array.shape[1] + "\n"  # 9 digits restore float32 exactly
                f.write("".join(line % (w, *r) for w, r in zip(chunk, rows.tolist())).encode())


def write_counts(path: str | Path, words: Sequence[str], counts: Sequence[int]) -> None:
    """`word count` lines, the layout of word2vec.c's -save-vocab (gensim's `fvocab`)."""
    check_writable(Path(path))
    with atomic_file(path) as f:
        f.write("".join(f"{w} {int(c)}\n" for w, c in zip(words, counts)).encode())


def read_word2vec(path: str | Path, limit: int | None = None, codec: Codec = UTF8,
                  ) -> tuple[list[str], torch.Tensor]:
    """(words, float32 matrix [V, D]) from a word2vec text or binary file (detected), only its
    first `limit` vectors if given (gensim's `limit`), words decoded by `codec`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: word2vec file not found")
    with _opened(path) as (f, compressed):
        header = f.readline()
        size, dim = _read_header(path, header)
        binary = not _is_text_record(f.readline(_TEXT_PROBE + 32 * dim))
    rows = size if limit is None else min(size, limit)
    # A record takes at least 2 bytes a value in text ("0 ") and 4 in binary: a header
    # promising far more than the file can hold is refused before allocating for it (the file
    # is cut short or not what it says, whatever the limit). A compressed file's size says
    # little: its matrix grows as the records arrive instead.
    checked = rows * dim * 4 <= _CHECKED_BYTES
    if size * dim * 4 > _CHECKED_BYTES and not compressed:
        if size * (2 * dim + 1) > path.stat().st_size - len(header):
            raise UsageError(f"{path}:1: the header promises {size:,} words of {dim:,} values, "
                             f"more than the file's {path.stat().st_size:,} bytes can hold")
        checked = True
    array = np.empty((rows if checked else _first_rows(dim, rows), dim), dtype=np.float32)
    with _opened(path) as (f, _):
        f.readline()
        words, array = (_read_binary(path, f, array, rows, size, codec) if binary
                        else _read_text(path, f, array, rows, rows == size, codec))
    return words, torch.from_numpy(array)


def read_vectors(path: str | Path, limit: int | None = None, no_header: bool = False,
                 codec: Codec = UTF8) -> tuple[list[str], torch.Tensor]:
    """(words, matrix) from a word2vec text/binary or fastText `.vec` file (a `V D` header),
    or a GloVe-style text file (no header: every line a word and its values; taken as one
    with `no_header`), compressed or not; only the first `limit` vectors if given; words
    decoded by `codec` (gensim's `encoding` and `unicode_errors`)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: vectors file not found")
    if limit is not None and limit < 1:
        raise UsageError(f"{path}: limit must be >= 1 (got {limit})")
    try:  # checked now, and named as messages will name it ("UTF-8", from "utf8" too)
        codecs.lookup_error(codec[1])
        codec = (codecs.lookup(codec[0]).name.upper(), codec[1])
    except LookupError as exc:
        raise UsageError(f"{path}: cannot decode its words: {exc}") from None
    with _opened(path) as (f, _):
        first = f.readline(_TEXT_PROBE)
    if not no_header and len(first.split()) == 2 and all(p.isdigit() for p in first.split()):
        return _first_of_each(path, *read_word2vec(path, limit, codec))
    return _first_of_each(path, *read_glove(path, limit, codec))


def _first_of_each(path: Path, words: list[str], matrix: torch.Tensor,
                   ) -> tuple[list[str], torch.Tensor]:
    """Each word's first vector only, as gensim's lookups see them: a file may repeat a word
    (some published files do, and decoding with unicode_errors 'ignore' can make two words
    one), and queries would otherwise answer it twice."""
    first = dict(zip(reversed(words), range(len(words) - 1, -1, -1)))
    if len(first) == len(words):
        return words, matrix
    keep = sorted(first.values())
    again = next(w for i, w in enumerate(words) if first[w] != i)
    _log.warning(f"{path}: {len(words) - len(keep):,} repeated word(s), the first {again!r}: "
                 "each keeps its first vector")
    return [words[i] for i in keep], matrix[keep]


def read_glove(path: str | Path, limit: int | None = None, codec: Codec = UTF8,
               ) -> tuple[list[str], torch.Tensor]:
    """GloVe's text layout: `word v1 ... vD` per line, no header, D from the first line."""
    path = Path(path)
    with _opened(path) as (f, _):
        first = f.readline()
    dim = len(first.split()) - 1
    if first.startswith(b"\x80"):  # pickle's protocol opcode: unpickling runs its code
        raise UsageError(f"{path}: a Python pickle (gensim's own save format?), which is not "
                         "read, as unpickling runs code; if you trust it, gensim loads it and "
                         "WordVectors.from_gensim takes it, or save_word2vec_format writes it")
    if dim < 1 or not _is_text_record(first):
        raise UsageError(f"{path}:1: neither a word2vec header 'VOCAB_SIZE DIM' nor a "
                         f"GloVe line 'word v1 ... vD', got {first[:80]!r}")
    array = np.empty((_first_rows(dim, limit), dim), dtype=np.float32)
    with _opened(path) as (f, _):
        words, array = _read_text(path, f, array, None, limit is None, codec, 1, limit)
    return words, torch.from_numpy(array)


COSMUL_EPSILON = 1e-6  # 3CosMul's denominator guard, gensim's most_similar_cosmul's


def row_norms(matrix: torch.Tensor) -> torch.Tensor:
    """Each row's length; a zero row's is tiny instead, so that divided it stays zero."""
    return matrix.norm(dim=1).clamp_min(1e-12)


def unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1 (zero rows stay zero) so dot products are cosines."""
    return matrix / row_norms(matrix)[:, None]


def cosines(vectors: torch.Tensor, norms: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Each row's cosine with `query`, given the rows' lengths. On the CPU through numpy's
    BLAS: torch's matrix-vector product took 3x as long over a 1M x 300 table (BENCHMARKS.md)."""
    query = unit_rows(query.reshape(1, -1))[0]
    if vectors.device.type != "cpu":
        return vectors @ query.to(vectors.device) / norms
    scores = vectors.numpy() @ query.numpy()
    scores /= norms.numpy()
    return torch.from_numpy(scores)


def check_writable(path: Path) -> None:
    """Fail before any work if `path` cannot become a file (checked again when written):
    writing it means creating a file beside it, so its directory must be writable."""
    if path.is_dir():
        raise UsageError(f"{path}: is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: directory not found")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{path.parent}: not writable (read-only or no permission)")


def _as_float32(matrix: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().float().numpy()
    return np.ascontiguousarray(matrix, dtype="<f4")


def _read_header(path: Path, line: bytes) -> tuple[int, int]:
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) < 1:
        raise UsageError(f"{path}:1: expected the header 'VOCAB_SIZE DIM', got {line[:80]!r}")
    return int(parts[0]), int(parts[1])


def _is_text_record(line: bytes) -> bool:
    """True if the first record is a text line: only number characters after the word.

    A binary record's D raw float32 values practically never consist of such bytes alone.
    """
    _, sep, values = line.partition(b" ")
    return bool(sep) and set(values) <= _NUMBER_BYTES and any(48 <= b <= 57 for b in values)


@contextmanager
def _opened(path: Path) -> Iterator[tuple[BufferedFile, bool]]:
    """The file's bytes, decompressed if its first bytes say it is compressed (and whether it
    was); an error reading them (a truncated or corrupt stream) names the file."""
    _, kind = filetypes.probe(path)
    if kind is not None and kind not in filetypes.COMPRESSIONS:
        raise UsageError(f"{path}: a {kind} file, not word vectors")
    try:
        with filetypes.open_binary(str(path), kind) as raw:
            yield io.BufferedReader(raw) if isinstance(raw, io.RawIOBase) else raw, bool(kind)
    except filetypes.READ_ERRORS as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None


def _first_rows(dim: int, rows: int | None) -> int:
    """Rows to allocate before the records show how many there are (`rows`: at most)."""
    first = max(1, _CHECKED_BYTES // (4 * dim))
    return first if rows is None else min(first, rows)


def _resized(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with `rows` rows, in place (a realloc: a large one remaps rather than copies)."""
    array.resize((rows, array.shape[1]), refcheck=False)
    return array


def _read_text(path: Path, f: BufferedFile, array: np.ndarray, rows: int | None, whole: bool,
               codec: Codec, first_line: int = 2, limit: int | None = None,
               ) -> tuple[list[str], np.ndarray]:
    """`rows` text records (None: up to a blank line or the end, at most `limit`) into
    `array`, grown as they come, parsed `_TEXT_ROWS` at a time; with `whole`, nothing may
    follow them."""
    words: list[str] = []
    most = rows if rows is not None else limit
    row, ended = 0, False
    while not ended and (most is None or row < most):
        lines: list[bytes] = []
        while len(lines) < (_TEXT_ROWS if most is None else min(_TEXT_ROWS, most - row)):
            raw = f.readline()
            if rows is None and not raw.strip():
                ended = True
                break
            if not raw:
                raise UsageError(f"{path}:{row + len(lines) + first_line}: file ends after "
                                 f"{row + len(lines)} of {rows} vectors")
            lines.append(raw)
        if not lines:
            break
        block_words, values = _text_records(path, lines, row + first_line, array.shape[1], codec)
        while row + len(lines) > len(array):
            grown = max(2 * len(array), row + len(lines))
            array = _resized(array, grown if most is None else min(grown, most))
        array[row : row + len(lines)] = values
        words += block_words
        row += len(lines)
    if whole and not _rest_is_blank(f, b""):
        where = f"{path}:{row + first_line}"
        raise UsageError(f"{where}: more records than the header's {rows}" if rows is not None
                         else f"{where}: a blank line before more vectors")
    return words, array if row == len(array) else _resized(array, row)


def _text_records(path: Path, lines: list[bytes], first: int, dim: int, codec: Codec,
                  ) -> tuple[list[str], np.ndarray]:
    """Text records (`lines`, the first on line `first`) as words and a float32 block: the
    values parsed by numpy's C reader in one call (twice as fast as a line at a time), or,
    where it fails, a line at a time, naming the first bad line."""
    words, rests = [], []
    for lineno, raw in enumerate(lines, first):
        try:
            word, _, rest = raw.decode(*codec).rstrip("\r\n").partition(" ")
        except UnicodeDecodeError:
            raise UsageError(f"{path}:{lineno}: not valid {codec[0]}") from None
        if not word:
            raise UsageError(f"{path}:{lineno}: expected a word and {dim} values, got {raw[:80]!r}")
        words.append(word)
        rests.append(rest)
    try:
        with warnings.catch_warnings():  # "input contained no data": the shape tells
            warnings.simplefilter("ignore")
            values = np.loadtxt(rests, dtype=np.float32, comments=None, ndmin=2)
        if values.shape == (len(lines), dim):
            return words, values
    except ValueError:
        pass
    values = np.empty((len(lines), dim), dtype=np.float32)
    for i, (lineno, word, rest) in enumerate(zip(range(first, first + len(lines)), words, rests)):
        parts = rest.split()
        if len(parts) != dim:
            raise UsageError(f"{path}:{lineno}: expected a word and {dim} values, got "
                             f"{lines[i][:80]!r}")
        try:
            values[i] = np.asarray(parts, dtype=np.float32)
        except ValueError:
            raise UsageError(f"{path}:{lineno}: a value of {word!r} is not a number") from None
    return words, values


def _read_binary(path: Path, f: BufferedFile, array: np.ndarray, rows: int, size: int,
                 codec: Codec) -> tuple[list[str], np.ndarray]:
    """The first `rows` of the header's `size` binary records into `array`, grown as they
    come, parsed from blocks of the file; when they are all, nothing may follow them."""
    dim = array.shape[1]
    width = 4 * dim
    words: list[str] = []
    data, pos = b"", 0
    for row in range(rows):
        while True:
            while pos < len(data) and data[pos] == 10:  # word2vec.c ends records with "\n"
                pos += 1
            space = data.find(b" ", pos)
            if space >= 0 and space + 1 + width <= len(data):
                break
            block = f.read(_READ_BLOCK)
            if not block:
                raise UsageError(f"{path}: record {row + 1} of {size}: file ends early "
                                 "(truncated?)")
            data, pos = data[pos:] + block, 0
        try:
            word = data[pos:space].decode(*codec)
        except UnicodeDecodeError:
            raise UsageError(f"{path}: record {row + 1} of {size}: word is not valid "
                             f"{codec[0]}") from None
        if not word:
            raise UsageError(f"{path}: record {row + 1} of {size}: empty word")
        if row == len(array):
            array = _resized(array, min(2 * row, rows))
        words.append(word)
        array[row] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + width
    if rows == size and not _rest_is_blank(f, data[pos:]):
        raise UsageError(f"{path}: more data after the header's {size} records")
    return words, array


def _rest_is_blank(f: BufferedFile, start: bytes) -> bool:
    """Whether `start` and the rest of `f` are whitespace, read a block at a time."""
    return not start.strip() and not any(block.strip()
                                         for block in iter(lambda: f.read(_READ_BLOCK), b""))


def binary_format(path: Path, binary: bool | None) -> bool:
    """`.bin` means binary, `.txt`/`.vec` text (before any compression suffix: `.bin.gz`); an
    explicit choice that contradicts refused."""
    suffix = Path(filetypes.uncompressed_name(path.name)).suffix
    by_name = {".bin": True, ".txt": False, ".vec": False}.get(suffix.lower())
    if binary is not None and by_name is not None and binary != by_name:
        kind = "binary" if binary else "text"
        raise UsageError(f"{path}: a {suffix} file cannot hold the {kind} format; name it "
                         f"{'.bin' if binary else '.txt or .vec'} or choose the other format")
    return by_name if binary is None and by_name is not None else bool(binary)
