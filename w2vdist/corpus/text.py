"""Finding corpus files and reading them as lines, in pieces that workers share.

Plain-text files are cut into byte ranges at line starts, so several workers read one big
file; compressed files (gzip, bzip2: recognised by their first bytes, whatever their name) are
read whole by one worker each. Text is decoded in `prepare.encoding` (UTF-8 by default); bytes
that do not decode are replaced and counted with the place of the first (`TextStats`), and
`prepare` stops when there are more than a few, since that is text in another encoding. A NUL
byte means the file is not text at all: refused. A line longer than the read unit is read in
parts cut at a space.
"""

from __future__ import annotations

import bz2
import dataclasses
import glob
import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from w2vdist.errors import UsageError

TEXT_SUFFIXES = (".txt", ".gz", ".bz2")
CHUNK_BYTES = 1 << 22  # read unit; a line longer than this is read in parts, cut at a space
MIN_RANGE_BYTES = 1 << 20
MAX_RANGE_BYTES = 1 << 26
RANGES_PER_WORKER = 4  # several byte ranges per worker, so that one slow range does not stall
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Piece:
    """The lines of `path` that start in bytes [start, end); end -1: to the end of the file."""

    number: int
    path: str
    start: int = 0
    end: int = -1
    encoding: str = "utf-8"


def find_files(inputs: Iterable[str]) -> list[Path]:
    """Files named, found under directories (recursively) or matched by globs, in order."""
    found: dict[Path, Path] = {}  # resolved -> as named, so a file named twice is read once
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())
            if not files:
                raise UsageError(f"{path}: no {', '.join(TEXT_SUFFIXES)} files in this directory")
        elif path.exists():
            if not path.is_file():
                raise UsageError(f"{path}: not a regular file (input is read twice)")
            files = [path]
        elif any(c in text for c in "*?["):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not files:
                raise UsageError(f"{text}: no files matched")
        else:
            raise UsageError(f"{path}: no such file or directory")
        for f in files:
            found.setdefault(f.resolve(), f)
    return list(found.values())


def split_pieces(files: list[Path], workers: int, encoding: str = "utf-8") -> list[Piece]:
    """Byte ranges of plain files, sized so each worker gets several; compressed files whole."""
    sizes = [f.stat().st_size for f in files]
    plain = sum(s for f, s in zip(files, sizes) if not _compressed(f))
    step = min(MAX_RANGE_BYTES, max(MIN_RANGE_BYTES, plain // (workers * RANGES_PER_WORKER)))
    ranges = []
    for f, size in zip(files, sizes):
        if _compressed(f) or size <= step:
            ranges.append((str(f), 0, -1))
        else:
            ranges.extend((str(f), a, min(a + step, size)) for a in range(0, size, step))
    return [Piece(i, *r, encoding=encoding) for i, r in enumerate(ranges)]


_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2"}


def compression(path: Path | str) -> str | None:
    """gzip, bzip2 or None (plain), from the file's first bytes: a name can lie."""
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def _compressed(path: Path | str) -> bool:
    return compression(path) is not None


@dataclass
class TextStats:
    """What reading the text found; summed over pieces for the manifest."""

    lines: int = 0
    raw_tokens: int = 0
    text_bytes: int = 0
    undecodable_bytes: int = 0
    first_undecodable: str = ""  # "PATH:BYTE" of the first byte that did not decode

    def add(self, other: "TextStats") -> None:
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, mine or theirs if isinstance(mine, str) else mine + theirs)


def read_lines(piece: Piece, stats: TextStats) -> Iterator[tuple[str, bool]]:
    """(text, line_complete) for each line of the piece, UTF-8 with bad bytes replaced.

    A line longer than CHUNK_BYTES comes in parts cut at spaces, all but the last with
    line_complete False, so that no line, however long, has to fit in memory.
    """
    open_line = False
    for chunk in _decoded_chunks(piece, stats):
        *lines, rest = chunk.split("\n")
        stats.lines += len(lines)
        for line in lines:
            yield line, True
        open_line = bool(rest)
        if rest:
            yield rest, False
    stats.lines += open_line


def _decoded_chunks(piece: Piece, stats: TextStats) -> Iterator[str]:
    """The piece as text in chunks of whole lines (or of a long line cut at a space)."""
    carry, at = b"", -1  # at: the offset of carry's first byte
    for pos, block in _piece_bytes(piece):
        if at < 0:
            at = pos
        nul = block.find(b"\0")
        if nul >= 0:
            raise UsageError(f"{piece.path}: not text (a NUL byte at byte {pos + nul:,}); "
                             "give prepare text files, plain or gzip/bzip2-compressed")
        data = carry + block
        cut = data.rfind(b"\n") + 1 or _safe_cut(data)
        carry = data[cut:]
        if cut:
            yield _decode(data[:cut], stats, piece, at)
            at += cut
    if carry:
        yield _decode(carry, stats, piece, at)


def _safe_cut(data: bytes) -> int:
    """Where to cut a chunk holding no newline: 0 (wait for more) unless it is already long,
    then after its last ASCII space, or failing that at a UTF-8 character boundary."""
    if len(data) < CHUNK_BYTES:
        return 0
    cut = max(data.rfind(b" "), data.rfind(b"\t")) + 1
    if not cut:
        cut = len(data)
        while cut > len(data) - 4 and data[cut - 1] & 0xC0 == 0x80:
            cut -= 1
        cut -= data[cut - 1] >= 0xC0  # do not end on the lead byte of a split character
    return cut


def _decode(data: bytes, stats: TextStats, piece: Piece, at: int) -> str:
    stats.text_bytes += len(data)
    try:
        return data.decode(piece.encoding)
    except UnicodeDecodeError as exc:
        if not stats.first_undecodable:
            stats.first_undecodable = f"{piece.path}:{at + exc.start}"
        text = data.decode(piece.encoding, errors="surrogateescape")
        text, replaced = _ESCAPED_BYTE.subn("\ufffd", text)
        stats.undecodable_bytes += replaced
        return text


def _piece_bytes(piece: Piece) -> Iterator[tuple[int, bytes]]:
    """(offset, block): the raw bytes of the lines that start in the piece, in blocks of at
    most CHUNK_BYTES (offsets in the decompressed text for compressed files)."""
    try:
        with _open_binary(piece.path) as f:
            if piece.start > 0:
                f.seek(piece.start - 1)
                while (skipped := f.readline(CHUNK_BYTES)) and not skipped.endswith(b"\n"):
                    pass  # the line that began before `start` belongs to the previous piece
            pos = f.tell()
            last = b"\n"
            while piece.end < 0 or pos < piece.end:
                size = CHUNK_BYTES if piece.end < 0 else min(CHUNK_BYTES, piece.end - pos)
                if not (block := f.read(size)):
                    return
                yield pos, block
                pos += len(block)
                last = block[-1:]
            while last != b"\n" and (block := f.readline(CHUNK_BYTES)):
                last = block[-1:]  # finish the line that began before `end`
                yield pos, block
                pos += len(block)
    except (OSError, EOFError, zlib.error) as exc:
        kind = compression(piece.path) or "text"
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UsageError(f"{piece.path}: cannot read {kind} file: {reason}") from None


def _open_binary(path: str) -> IO[bytes]:
    kind = compression(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bzip2":
        return bz2.open(path, "rb")
    return open(path, "rb")


# ---------------------------------------------------------------------------------------------
# The two passes, each run on one piece in a worker process.
