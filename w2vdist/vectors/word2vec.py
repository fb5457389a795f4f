"""Word vectors in and out of files: word2vec text/binary, fastText `.vec`, GloVe text.

Both word2vec formats start with a header line `V D` and hold the V words most frequent
first. Text records are `word v1 ... vD` lines; binary records are the UTF-8 word, a space,
D little-endian float32 values and a newline, as word2vec.c writes them (gensim and
word2vec.c's readers accept it). Both formats separate fields by whitespace, so a word that
is empty or contains whitespace (any character for which `str.isspace()` is true) cannot be
written: `write_word2vec` refuses it with an error naming the word and its row. GloVe's text
files are word2vec text without the header. `keyed.WordVectors` reads all of these and runs.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from w2vdist.errors import UsageError
from w2vdist.files import atomic_file

_SEPARATOR = re.compile(r"\s")
_NUMBER_BYTES = frozenset(b"0123456789+-.eEinfatyINFATY \t\r\n")
_CHECKED_BYTES = 1 << 26  # headers asking for more memory than this are checked first
_TEXT_PROBE = 1 << 16  # bytes allowed for the word when probing the first line
_WRITE_ROWS = 4096  # rows formatted per write: bounds the memory of one write call


def unwritable_rows(words: Sequence[str]) -> list[int]:
    """Rows whose word is empty or contains whitespace, which would break either format."""
    return [i for i, w in enumerate(words) if not w or _SEPARATOR.search(w)]


def write_word2vec(
    path: str | Path, words: Sequence[str], matrix: torch.Tensor | np.ndarray, binary: bool
) -> None:
    """Write `matrix` (row i is `words[i]`) atomically in word2vec text or binary format."""
    path = Path(path)
    array = _as_float32(matrix)
    if array.ndim != 2 or array.shape[0] != len(words):
        raise UsageError(f"{path}: {len(words)} words but a matrix of shape {tuple(array.shape)}")
    bad = unwritable_rows(words)
    if bad:
        row = bad[0]
        raise UsageError(
            f"{path}: cannot write word {words[row]!r} (row {row}): word2vec files cannot hold "
            f"an empty word or one containing whitespace ({len(bad)} such word(s))"
        )
    check_writable(path)
    with atomic_file(path) as f:
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


def read_word2vec(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """(words, float32 matrix [V, D]) from a word2vec text or binary file (detected)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: word2vec file not found")
    with open(path, "rb") as f:
        size, dim = _read_header(path, f.readline())
        start = f.tell()
        # A record takes at least 2 bytes a value in text ("0 ") and 4 in binary: a header
        # promising far more than the file can hold is refused before allocating for it.
        too_big = size * dim * 4 > _CHECKED_BYTES
        if too_big and size * (2 * dim + 1) > path.stat().st_size - start:
            raise UsageError(f"{path}:1: the header promises {size:,} words of {dim:,} values, "
                             f"more than the file's {path.stat().st_size:,} bytes can hold")
        binary = not _is_text_record(f.readline(_TEXT_PROBE + 32 * dim))
        f.seek(start)
        words, array = (_read_binary if binary else _read_text)(path, f, size, dim)
    return words, torch.from_numpy(array)


def read_vectors(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """(words, matrix) from a word2vec text/binary or fastText `.vec` file (a `V D` header),
    or a GloVe-style text file (no header: every line a word and its values)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: vectors file not found")
    with open(path, "rb") as f:
        first = f.readline(_TEXT_PROBE)
    if len(first.split()) == 2 and all(p.isdigit() for p in first.split()):
        return read_word2vec(path)
    return read_glove(path)


def read_glove(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """GloVe's text layout: `word v1 ... vD` per line, no header, D from the first line."""
    path = Path(path)
    with open(path, "rb") as f:
        lines = sum(1 for line in f if line.strip())
        f.seek(0)
        first = f.readline()
        dim = len(first.split()) - 1
        if dim < 1 or not _is_text_record(first):
            raise UsageError(f"{path}:1: neither a word2vec header 'VOCAB_SIZE DIM' nor a "
                             f"GloVe line 'word v1 ... vD', got {first[:80]!r}")
        f.seek(0)
        words, array = _read_text(path, f, lines, dim, first_line=1)
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


def _read_text(
    path: Path, f: BinaryIO, size: int, dim: int, first_line: int = 2
) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    array = np.empty((size, dim), dtype=np.float32)
    for row in range(size):
        lineno = row + first_line
        raw = f.readline()
        if not raw:
            raise UsageError(f"{path}:{lineno}: file ends after {row} of {size} vectors")
        try:
            word, _, rest = raw.decode("utf-8").rstrip("\r\n").partition(" ")
        except UnicodeDecodeError:
            raise UsageError(f"{path}:{lineno}: not valid UTF-8") from None
        values = rest.split()
        if not word or len(values) != dim:
            raise UsageError(f"{path}:{lineno}: expected a word and {dim} values, got {raw[:80]!r}")
        try:
            array[row] = np.asarray(values, dtype=np.float32)
        except ValueError:
            raise UsageError(f"{path}:{lineno}: a value of {word!r} is not a number") from None
        words.append(word)
    if f.read().strip():
        raise UsageError(f"{path}:{size + first_line}: more records than the header's {size}")
    return words, array


def _read_binary(path: Path, f: BinaryIO, size: int, dim: int) -> tuple[list[str], np.ndarray]:
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # no copy of a large file
        return _parse_binary(path, data, f.tell(), size, dim)


def _parse_binary(
    path: Path, data: mmap.mmap, pos: int, size: int, dim: int
) -> tuple[list[str], np.ndarray]:
    width = 4 * dim
    words: list[str] = []
    array = np.empty((size, dim), dtype=np.float32)
    for row in range(size):
        while data[pos : pos + 1] == b"\n":  # word2vec.c ends each record with a newline
            pos += 1
        space = data.find(b" ", pos)
        record = f"{path}: record {row + 1} of {size}"
        if space < 0 or space + 1 + width > len(data):
            raise UsageError(f"{record}: file ends early (truncated?)")
        try:
            word = data[pos:space].decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{record}: word is not valid UTF-8") from None
        if not word:
            raise UsageError(f"{record}: empty word")
        words.append(word)
        array[row] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + width
    if data[pos:].strip():
        raise UsageError(f"{path}: more data after the header's {size} records")
    return words, array


def binary_format(path: Path, binary: bool | None) -> bool:
    """`.bin` means binary, `.txt`/`.vec` text; an explicit choice that contradicts refused."""
    by_name = {".bin": True, ".txt": False, ".vec": False}.get(path.suffix.lower())
    if binary is not None and by_name is not None and binary != by_name:
        kind = "binary" if binary else "text"
        raise UsageError(f"{path}: a {path.suffix} file cannot hold the {kind} format; name it "
                         f"{'.bin' if binary else '.txt or .vec'} or choose the other format")
    return by_name if binary is None and by_name is not None else bool(binary)
