"""Reading a piece of the corpus (`pieces`) as lines of text.

A byte range of a plain file starts where the line that crosses its first byte ends; a line
that runs on LONG_LINE_BYTES past a segment's first byte (text8 is one line of 100 MB) is cut
there instead, after a space: whatever the worker count, the same cuts are made, so every
worker is used on such a file too. Compressed files and archives (`filetypes`) are read in
blocks (`blocks_of`) that end where a plain file's segments start, the same whether the main
process or a worker cuts them: a long line is cut in the same places, compressed or not.
Text is decoded in `prepare.encoding` (UTF-8 by default); bytes that do not decode are replaced
and counted with the place of the first (`TextStats`), and `prepare` stops when there are more
than a few, since that is text in another encoding. A NUL byte means the file is not text at
all: refused. A line longer than the read unit is read in parts cut at a space.

JSON Lines files (`.jsonl`, `.ndjson`, `.json`, compressed or not) and Parquet tables, as the
datasets of language-model corpora ship, hold one document per record; its text is one field,
read as lines of text in turn (the document's paragraphs). A record that is not an object or
lacks the field, or a table without the column, stops `prepare`, naming the file (and the
record's byte).
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from w2vdist.corpus import filetypes
from w2vdist.errors import UsageError

if TYPE_CHECKING:
    from w2vdist.corpus.pieces import Piece

CHUNK_BYTES = 1 << 22  # read unit; a line longer than this is read in parts, cut at a space
BLOCK_BYTES = 1 << 24  # decompressed text a worker takes from a compressed file at a time
MAX_BLOCK_BYTES = 1 << 26  # a JSON Lines block without a newline is cut at this size
MIN_RANGE_BYTES = 1 << 20  # a segment: byte ranges are whole numbers of them
LONG_LINE_BYTES = 1 << 16  # a line running on this far past a segment's start is cut there
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def blocks_of(piece: Piece) -> Iterator[Piece]:
    """A compressed file's or archive's piece as pieces of one block each (`_blocks`)."""
    for path, kind, start, block, cut in _blocks(piece):
        yield dataclasses.replace(piece, path=path, format=kind, start=start,
                                  end=start + len(block), data=block, cut_end=cut)


def readable(pieces: Iterable[Piece]) -> Iterator[Piece]:
    """The pieces as `read_lines` reads them: a compressed file or archive that
    `pieces.expand` left whole, in the blocks the main process would have cut (so that the
    output is the same whoever decompresses it); any other piece as it is."""
    for piece in pieces:
        if piece.compression is not None and piece.data is None and piece.format != "parquet":
            yield from blocks_of(piece)
        else:
            yield piece


def _blocks(piece: Piece) -> Iterator[tuple[str, str, int, bytes, bool]]:
    """(path, format, offset, bytes, cut): a compressed file's or each archived file's
    decompressed text in blocks of about BLOCK_BYTES. A text block ends where a plain file's
    segment would start (`_segment_start`; the last the text read tells, a segment or less
    short of BLOCK_BYTES), so that a long line is cut in the same places, compressed or not
    (`cut`: there); a JSON Lines block after its last newline, or failing one once it holds
    MAX_BLOCK_BYTES."""
    try:
        for member, f in filetypes.members(piece.path, piece.compression):
            path = f"{piece.path}:{member}" if member else piece.path
            kind = piece.format if piece.format != "auto" else \
                filetypes.format_of(Path(path), None)
            buffer, at = bytearray(), 0  # grown in place: a block is read in many parts
            while block := f.read(CHUNK_BYTES):
                buffer += block
                if len(buffer) < BLOCK_BYTES:
                    continue
                if kind == "text":
                    cut, ends_cut = _last_segment_start(buffer, at)
                else:
                    cut, ends_cut = buffer.rfind(b"\n") + 1, False
                    if not cut and len(buffer) >= MAX_BLOCK_BYTES:
                        cut = _safe_cut(buffer)
                if cut:
                    yield path, kind, at, bytes(buffer[:cut]), ends_cut
                    del buffer[:cut]
                    at += cut
            if buffer:
                yield path, kind, at, bytes(buffer), False
    except filetypes.READ_ERRORS as exc:
        _unreadable(piece, exc)


def _last_segment_start(buffer: bytearray, at: int) -> tuple[int, bool]:
    """(bytes into the buffer, cut): where the segment at the last multiple of MIN_RANGE_BYTES
    past `at` (the buffer's offset in the text) starts, among those whose line the buffer holds
    far enough to tell; (0, False) for none yet."""
    segment = (at + len(buffer) - LONG_LINE_BYTES) // MIN_RANGE_BYTES * MIN_RANGE_BYTES
    if segment <= at:
        return 0, False
    near = segment - at - 1  # the byte before the segment: `_segment_start` reads from there
    start, cut = _segment_start(io.BytesIO(bytes(buffer[near : near + LONG_LINE_BYTES + 1])), 1,
                                True)
    return near + start, cut


@dataclass
class TextStats:
    """What reading the text found; summed over pieces for the manifest."""

    lines: int = 0  # text lines, JSON Lines records and Parquet rows
    records: int = 0  # of which JSON Lines records and Parquet rows
    raw_tokens: int = 0
    text_bytes: int = 0
    undecodable_bytes: int = 0
    first_undecodable: str = ""  # "PATH:BYTE" of the first byte that did not decode
    pruned_words: int = 0  # distinct words dropped past the counting bounds (`counting`)
    formats: dict[str, int] = dataclasses.field(default_factory=dict)  # files (archived too)

    def add(self, other: "TextStats") -> None:
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                mine = dict(Counter(mine) + Counter(theirs))
            else:
                mine = mine or theirs if isinstance(mine, str) else mine + theirs
            setattr(self, f.name, mine)


def read_lines(piece: Piece, stats: TextStats) -> Iterator[tuple[str, bool]]:
    """(text, line_complete) for each line of the piece, UTF-8 with bad bytes replaced.

    A line longer than CHUNK_BYTES comes in parts cut at spaces, all but the last with
    line_complete False, so that no line, however long, has to fit in memory. A compressed
    file or archive is read in blocks (`readable`).
    """
    if piece.start == 0:
        stats.formats[piece.format] = stats.formats.get(piece.format, 0) + 1
    if piece.format in ("jsonl", "parquet"):
        counted = stats.lines
        yield from (_json_lines if piece.format == "jsonl" else _parquet_lines)(piece, stats)
        stats.records += stats.lines - counted  # of the lines, these were records
        return
    open_line = False
    for _, chunk, cut in _decoded_chunks(piece, stats):
        *lines, rest = chunk.split("\n")
        stats.lines += len(lines)
        for line in lines:
            yield line, True
        open_line = bool(rest) and not cut  # a cut line goes on in the next segment
        if rest:
            yield rest, cut
    stats.lines += open_line


def _json_lines(piece: Piece, stats: TextStats) -> Iterator[tuple[str, bool]]:
    """The lines of the text field of each record (a JSON object on a line of its own).

    A record must be read whole to be parsed: one longer than CHUNK_BYTES is gathered from its
    parts (it starts its chunk, since chunks end after a newline or inside a long line).
    """
    parts: list[str] = []
    parts_at = 0  # the byte where the gathered record starts
    for at, chunk, _ in _decoded_chunks(piece, stats):  # never cut: a record is read whole
        *records, rest = chunk.split("\n")
        pos = 0  # the character where the next record starts in the chunk
        for line in records:
            stats.lines += 1
            if parts:
                text = _field(piece, "".join(parts) + line, lambda: parts_at)
                parts.clear()
            else:  # the byte is measured only for an error message
                text = _field(piece, line, lambda: at + len(chunk[:pos].encode(piece.encoding,
                                                                               "replace")))
            pos += len(line) + 1
            yield from _text_lines(text)
        if rest:
            parts_at = parts_at if parts else at
            parts.append(rest)
    if parts:
        stats.lines += 1
        yield from _text_lines(_field(piece, "".join(parts), lambda: parts_at))


def _parquet_lines(piece: Piece, stats: TextStats) -> Iterator[tuple[str, bool]]:
    """The lines of the text column of each row of the piece's row groups."""
    for texts, size in filetypes.parquet_texts(piece.path, piece.text_field, piece.start,
                                               piece.end):
        stats.lines += len(texts)
        stats.text_bytes += size
        for text in texts:
            yield from _text_lines(text)


def _text_lines(text: str | None) -> Iterator[tuple[str, bool]]:
    """A record's text (None: a null) as complete lines: a document's paragraphs."""
    for line in text.split("\n") if text else ():
        yield line, True


def _field(piece: Piece, record: str, where: Callable[[], int]) -> str | None:
    try:
        return _record_text(record, piece.text_field)
    except ValueError as exc:
        raise UsageError(f"{piece.path}: the record at byte {where():,} {exc}") from None


def _record_text(record: str, field: str) -> str | None:
    """The text a JSON Lines record holds in `field` (None for a blank line or a null);
    ValueError saying what is wrong with the record."""
    if not record.strip():
        return None
    try:
        data = json.loads(record)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON ({exc.msg}); JSON Lines hold one object per line "
                         "(--format text reads the file as plain text)") from None
    if not isinstance(data, dict):
        raise ValueError(f"is a JSON {_json_kind(data)}, not an object; JSON Lines hold one "
                         "object per line")
    text = data
    # A dotted name not in the record is a path through nested objects (meta.text).
    path = [field] if field in data or "." not in field else field.split(".")
    for depth, key in enumerate(path):
        if not isinstance(text, dict) or key not in text:
            where = "its fields" if depth == 0 else f"in {'.'.join(path[:depth])!r}"
            found = (", ".join(text) or "none") if isinstance(text, dict) else \
                f"a JSON {_json_kind(text)}"
            raise ValueError(f"has no {field!r} field ({where}: {found}); name the text's "
                             "field with --text-field")
        text = text[key]
    if text is not None and not isinstance(text, str):
        raise ValueError(f"holds a JSON {_json_kind(text)} in {field!r}, not text")
    return text


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
             dict: "object", type(None): "null"}
    return kinds[type(value)]


def _decoded_chunks(piece: Piece, stats: TextStats) -> Iterator[tuple[int, str, bool]]:
    """(byte, text, cut): the piece as text in chunks of whole lines (or of a long line cut at
    a space), each with the offset of its first byte; `cut`: the chunk ends a long line's part
    at a segment's cut (`_piece_bytes`), which ends a sentence."""
    carry, at = b"", -1  # at: the offset of carry's first byte
    utf8 = codecs.lookup(piece.encoding).name == "utf-8"
    for pos, block, cut_after in _piece_bytes(piece):
        if at < 0:
            at = pos
        if pos == 0 and utf8 and block.startswith(codecs.BOM_UTF8):
            block, at = block[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)  # a mark, not text
        nul = block.find(b"\0")
        if nul >= 0:
            raise UsageError(f"{piece.path}: not text (a NUL byte at byte {pos + nul:,}); give "
                             "prepare text or JSON Lines files, plain or compressed, or Parquet")
        data = carry + block
        cut = len(data) if cut_after else data.rfind(b"\n") + 1 or _safe_cut(data)
        carry = data[cut:]
        if cut:
            yield at, _decode(data[:cut], stats, piece, at), cut_after
            at += cut
    if carry:
        yield at, _decode(carry, stats, piece, at), False


def _safe_cut(data: bytes | bytearray) -> int:
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


def _piece_bytes(piece: Piece) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, block, cut): the raw bytes of the piece in blocks of at most CHUNK_BYTES
    (offsets in the decompressed text for blocks of compressed files); `cut`: the block ends
    where a long line is cut (`_segment_start`), at each multiple of MIN_RANGE_BYTES."""
    cuts = piece.format == "text"  # a JSON Lines record is never cut
    f: BinaryIO
    if piece.data is not None:  # a block, which starts and ends where segments do (`_blocks`)
        f = io.BytesIO(piece.data)
        size = len(piece.data)
        first = piece.start // MIN_RANGE_BYTES * MIN_RANGE_BYTES + MIN_RANGE_BYTES
        inner = range(first - piece.start, size, MIN_RANGE_BYTES) if cuts else ()
        stops = (_segment_start(f, segment, True) for segment in inner)
        yield from _segments(f, piece.start, 0, [*(s for s in stops if s[0] < size),
                                                   (size, piece.cut_end)])
        return
    try:
        with open(piece.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            end = size if piece.end < 0 else min(piece.end, size)
            inner = range(piece.start + MIN_RANGE_BYTES, end, MIN_RANGE_BYTES) if cuts else ()
            pos, _ = _segment_start(f, piece.start, cuts)
            yield from _segments(f, 0, pos, (
                _segment_start(f, segment, cuts) if segment < size else (size, False)
                for segment in [*inner, end]))
    except OSError as exc:
        _unreadable(piece, exc)


def _segments(
    f: BinaryIO, offset: int, pos: int, stops: Iterable[tuple[int, bool]]
) -> Iterator[tuple[int, bytes, bool]]:
    """`_piece_bytes`' blocks from byte `pos` of `f` (byte `offset` + `pos` of the text) up to
    each (stop, cut) in turn."""
    for stop, cut in stops:
        f.seek(pos)
        while pos < stop and (block := f.read(min(CHUNK_BYTES, stop - pos))):
            pos += len(block)
            yield offset + pos - len(block), block, cut and pos == stop


def _segment_start(f: BinaryIO, at: int, cuts: bool) -> tuple[int, bool]:
    """(start, cut) of the text that belongs to the segment or range beginning at byte `at`:
    after the line crossing `at`, or (`cuts`) when that line runs on LONG_LINE_BYTES past it,
    after its first space (tab) from `at` on, or failing one the first UTF-8 character start;
    `cut` says so. Depends on the bytes around `at` alone, so pieces meet where they agree."""
    if at == 0:
        return 0, False
    f.seek(at - 1)
    near = f.readline(LONG_LINE_BYTES + 1)
    if near.endswith(b"\n") or len(near) <= LONG_LINE_BYTES:  # a line end, or the file's
        return at - 1 + len(near), False
    if not cuts:
        start = at - 1 + len(near)
        while (more := f.readline(CHUNK_BYTES)):
            start += len(more)
            if more.endswith(b"\n"):
                break
        return start, False
    space = min((i for i in (near.find(b" ", 1), near.find(b"\t", 1)) if i > 0), default=0)
    if space:
        return at + space, True
    first = next((i for i in range(1, 5) if near[i] & 0xC0 != 0x80), 1)  # a character's start
    return at - 1 + first, True


def _unreadable(piece: Piece, exc: Exception) -> NoReturn:
    kind = piece.compression or "text"
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    raise UsageError(f"{piece.path}: cannot read {kind} file: {reason}") from None
