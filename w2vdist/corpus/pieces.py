"""How `prepare` divides a corpus among its workers: pieces, and tasks of pieces.

Plain files are cut into byte ranges of whole segments (`text.MIN_RANGE_BYTES`; a range starts
where `text` says a segment starts), several per worker, and Parquet files into runs of row
groups, so several workers read one big file. Compressed files and archives are cut into blocks
by the main process when there are fewer of them than workers (`expand`), else each goes whole
to a worker, which cuts it into the same blocks. Consecutive small pieces share a task
(`grouped`). None of this changes the output: it is the same for any number of workers.
Machines preparing parts of a corpus (`prepare --part`) cut it at the same places
(`share_input`): a segment's start or a row group's.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from w2vdist.corpus import filetypes, text
from w2vdist.corpus.shards import MANIFEST_FILE, Manifest
from w2vdist.errors import UsageError

MAX_RANGE_BYTES = 1 << 26
MAX_WHOLE_BYTES = 1 << 30  # a compressed file a worker reads whole: under workers.PIECE_SECONDS
RANGES_PER_WORKER = 4  # several byte ranges per worker, so that one slow range does not stall


@dataclass(frozen=True)
class Piece:
    """The lines of `path` that start in bytes [start, end) (end -1: to the end of the file);
    for Parquet, its row groups [start, end); for a block of a compressed file (or of a file in
    an archive: `ARCHIVE:FILE`), `data`, which starts at byte `start` of the decompressed text.
    `compression`: the file's compression or archive kind, as its first bytes say
    (`filetypes.probe`, read once). `format`: auto for a compressed file or an archive, until
    `expand` reads the names inside. `text_field`: the field or column holding the text of a
    JSON Lines or Parquet file."""

    number: int
    path: str
    start: int = 0
    end: int = -1
    encoding: str = "utf-8"
    format: str = "text"
    compression: str | None = None
    text_field: str = "text"
    data: bytes | None = None  # a block of a compressed file, decompressed (`text.blocks_of`)
    file_bytes: int = 0  # the whole file's size as `split_pieces` found it, not asked again
    cut_end: bool = False  # the block ends where a long line is cut (`text._blocks`)


@dataclass(frozen=True)
class Probes:
    """What `prepare` needs to know of each input file before reading it: its size, its
    compression or archive kind (None: plain), its format (a compressed file's or an archive's
    files are found as `expand` reads them) and, for a Parquet table, its row groups."""

    sizes: list[int]
    compressions: list[str | None]
    formats: list[str]
    row_groups: dict[Path, int]

    @classmethod
    def of(cls, files: list[Path], file_format: str = "auto", text_field: str = "text"
           ) -> "Probes":
        """Each file's first bytes, and each table's footer (which checks `text_field`), read
        on threads (`filetypes.probed`); `file_format` auto: `filetypes.format_of` each."""
        probes = filetypes.probed(filetypes.probe, files)
        sizes, kinds = [size for size, _ in probes], [kind for _, kind in probes]
        packed = (*filetypes.COMPRESSIONS, *filetypes.ARCHIVES)
        compressions = [k if k in packed else None for k in kinds]
        formats = [file_format if file_format != "auto" or c else filetypes.format_of(f, k)
                   for f, k, c in zip(files, kinds, compressions)]
        tables = [f for f, kind in zip(files, formats) if kind == "parquet"]
        row_groups = dict(zip(tables, filetypes.probed(
            lambda f: filetypes.parquet_row_groups(str(f), text_field), tables)))
        return cls(sizes, compressions, formats, row_groups)

    def __getitem__(self, run: slice) -> "Probes":
        """The probes of a run of the files."""
        return Probes(self.sizes[run], self.compressions[run], self.formats[run],
                      self.row_groups)


def split_pieces(
    files: list[Path], workers: int, encoding: str = "utf-8", file_format: str = "auto",
    text_field: str = "text", share: Share | None = None,
) -> list[Piece]:
    """Byte ranges of plain files and runs of row groups of Parquet ones, sized so each worker
    gets several; compressed files and archives whole (`expand` cuts them into blocks as they
    are read). `share`: a machine's part of the input (`share_input`), whose files are
    `files`, already probed, and whose ranges (whole segments of a plain file, row groups of a
    table) are all that is read of its first and last files."""
    assert share is None or files == share.files, "split_pieces: not the share's files"
    probes = share.probes if share else Probes.of(files, file_format, text_field)
    sizes, compressions, formats, row_groups = (probes.sizes, probes.compressions,
                                                probes.formats, probes.row_groups)
    ranges = share.ranges if share else {}
    spans = {f: _span(f, size, ranges, row_groups.get(f))
             for f, size, c in zip(files, sizes, compressions) if c is None}
    segment = text.MIN_RANGE_BYTES
    step = min(MAX_RANGE_BYTES, max(segment, sum(spans.values()) // (workers * RANGES_PER_WORKER)))
    step -= step % segment
    pieces: list[Piece] = []
    for f, size, kind, compression in zip(files, sizes, formats, compressions):
        first, last = ranges.get(f, (0, row_groups[f] if kind == "parquet" else size))
        if kind == "parquet":
            groups = last - first
            per = max(1, math.ceil(groups / max(1, min(groups, math.ceil(spans[f] / step)))))
            # A table without row groups is still a piece, of none: its bytes and format count.
            cuts = [(a, min(a + per, last)) for a in range(first, last, per)] or [(0, 0)]
        elif compression is not None or (size <= step and f not in ranges):
            cuts = [(0, -1)]
        else:
            cuts = [(a, min(a + step, last)) for a in range(first, last, step)]
        pieces += [Piece(len(pieces) + i, str(f), a, b, encoding, kind, compression, text_field,
                         file_bytes=size) for i, (a, b) in enumerate(cuts)]
    return pieces


def _span(path: Path, size: int, ranges: dict[Path, tuple[int, int]], groups: int | None
          ) -> int:
    """The bytes of a file that are read: its range of a plain file, or its run of a table's
    row groups, counted as their share of its bytes."""
    first, last = ranges.get(path, (0, groups or size))
    return size * (last - first) // groups if groups else last - first


def expand(pieces: list[Piece], workers: int) -> Iterator[Piece]:
    """The pieces as workers read them, numbered in order. With fewer compressed files and
    archives than workers, each one's piece becomes blocks of its text (of each file in an
    archive, named `ARCHIVE:FILE`, whose format its name says unless one was given),
    decompressed here as they are needed, so that one big compressed file keeps every worker
    busy. With as many or more, none over 1.5 times a worker's share of their bytes (which
    would keep one worker busy long after the others) or MAX_WHOLE_BYTES, each goes whole to a
    worker, which decompresses it into the same blocks (`text.read_lines`), so that this
    process does not decompress a whole dataset of them alone. A text block of about
    BLOCK_BYTES ends where a plain file's segment would start, so a long line is cut where it
    would be uncompressed; a JSON Lines block after its last newline, or, without one, once it
    holds MAX_BLOCK_BYTES (a longer record fails). Blocks depend on the text alone: the output
    is the same for any number of workers, and compressed or not."""
    sizes = [p.file_bytes for p in pieces if p.compression is not None and p.format != "parquet"]
    whole = len(sizes) >= workers and max(sizes) <= min(MAX_WHOLE_BYTES,
                                                        1.5 * sum(sizes) / workers)
    number = 0
    for piece in pieces:
        if piece.compression is None or piece.format == "parquet" or whole:
            yield dataclasses.replace(piece, number=number)
            number += 1
            continue
        for block in text.blocks_of(piece):
            yield dataclasses.replace(block, number=number)
            number += 1


def grouped(pieces: Iterable[Piece]) -> Iterator[list[Piece]]:
    """Consecutive pieces in tasks of at least MIN_RANGE_BYTES, so that a corpus of many small
    files costs a worker call, and a file of word ids, per megabyte rather than per file."""
    group: list[Piece] = []
    size = 0
    for piece in pieces:
        group.append(piece)
        size += _size(piece)
        if size >= text.MIN_RANGE_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _size(piece: Piece) -> int:
    """The bytes a piece reads: a compressed file's, whole, as stored (its text is larger)."""
    if piece.data is not None:
        return len(piece.data)
    if piece.format == "parquet":
        return text.MIN_RANGE_BYTES  # a task of its own
    if piece.compression is not None or piece.end < 0:
        return piece.file_bytes - piece.start
    return piece.end - piece.start


@dataclass(frozen=True)
class Share:
    """Machine k of n's input (`prepare --part k/n`): its files, in order, the bytes [start,
    end) of the plain files, or the row groups [start, end) of the Parquet tables, that it
    reads only part of (`ranges`), and how many bytes it reads in all (a table's row groups
    counted as their share of its bytes). `listing`: a digest of the whole input as this
    machine found it (each file's name, size and row groups), on which the cuts depend."""

    files: list[Path]
    ranges: dict[Path, tuple[int, int]]
    bytes: int
    probes: Probes  # of `files`, for `split_pieces`
    listing: str

    def check_counts(self, paths: list[str]) -> None:
        """UsageError if a part's counts (`prepare --counts-only` folders, given as `--vocab`)
        were made from another listing: they would not be the counts of these parts."""
        for path in paths:
            if (Path(path) / MANIFEST_FILE).is_file():
                theirs = Manifest.load(path).stats.get("listing")
                if theirs and theirs != self.listing:
                    raise UsageError(f"{path}: counted from another listing of the input than "
                                     "this part's (files added, removed or resized since, or "
                                     "other inputs named): count every part again")


def share_input(files: list[Path], k: int, n: int, file_format: str = "auto",
                text_field: str = "text") -> Share:
    """The k-th of n runs of the input of about equal bytes, each at least a unit, so that the
    parts joined in order (`w2vdist join`) read as the whole. A unit is a segment of a plain
    file (`text.MIN_RANGE_BYTES`: where workers' byte ranges start, so a part reads the lines
    the whole's prepare reads), a row group of a Parquet table (where workers' runs start), or
    a whole compressed file or archive. Every machine lists the same files of the same sizes,
    so all cut them alike."""
    probes = Probes.of(files, file_format, text_field)
    sizes, compressions, row_groups = probes.sizes, probes.compressions, probes.row_groups
    groups = [row_groups.get(f, 0) for f in files]  # 0: not a table, or one without any
    segment = text.MIN_RANGE_BYTES
    # Each file's extent in its units' terms and its unit: a table's row groups, one by one; a
    # plain file's bytes, a segment at a time; any other file's bytes, all in one unit.
    extent = [g or s for s, g in zip(sizes, groups)]
    per_unit = [1 if g else segment if c is None and f not in row_groups else max(1, s)
                for f, s, c, g in zip(files, sizes, compressions, groups)]
    # A plain file's last unit takes the bytes past its last whole segment: a few bytes alone
    # might hold no line start, and a part of them nothing.
    units = [max(1, e // u) for e, u in zip(extent, per_unit)]
    first_unit = [0, *itertools.accumulate(units)]
    first_byte = [0, *itertools.accumulate(sizes)]
    if first_unit[-1] < n:
        raise UsageError(f"prepare: --part {k}/{n}: the input is {first_unit[-1]} piece(s) (a "
                         f"plain file's {segment >> 20} MB segments, a table's row groups, a "
                         f"compressed file or an archive) for {n} parts; give more input or "
                         "fewer parts")

    def where(unit: int) -> tuple[int, int, int]:
        """(file, start, end) of a unit, in its file's extent."""
        i = bisect.bisect_right(first_unit, unit) - 1
        start = (unit - first_unit[i]) * per_unit[i]
        return i, start, extent[i] if unit == first_unit[i + 1] - 1 else start + per_unit[i]

    def byte(i: int, at: int) -> int:
        """Where `at` in file i's extent is, in bytes into the input (a table's row groups
        counted as even shares of its bytes)."""
        return first_byte[i] + (sizes[i] * at // groups[i] if groups[i] else at)

    def end_of(unit: int) -> int:
        i, _, end = where(unit)
        return byte(i, end)

    count, total = first_unit[-1], first_byte[-1]
    cuts = [0]
    for j in range(1, n):  # after the unit whose end is nearest j/n of the bytes
        target = total * j / n
        u = bisect.bisect_left(range(count), target, key=end_of)
        after = u + 1 if end_of(u) - target <= target - (end_of(u - 1) if u else 0) else u
        cuts.append(min(max(after, cuts[-1] + 1), count - (n - j)))
    cuts.append(count)
    (i, start, _), (last, _, end) = where(cuts[k]), where(cuts[k + 1] - 1)
    ranges: dict[Path, tuple[int, int]] = {}  # the first and last files, where cut
    if i == last and (start, end) != (0, extent[i]):
        ranges[files[i]] = (start, end)
    elif i < last:
        if start:
            ranges[files[i]] = (start, extent[i])
        if end != extent[last]:
            ranges[files[last]] = (0, end)
    listing = hashlib.sha256(json.dumps([[f.name, size, g] for f, size, g in
                                         zip(files, sizes, groups)]).encode()).hexdigest()
    return Share(files[i : last + 1], ranges, byte(last, end) - byte(i, start),
                 probes[i : last + 1], listing)
