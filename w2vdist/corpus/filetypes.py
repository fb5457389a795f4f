"""The corpus files an input names (`find_files`); what each is, from its first bytes (a name
can lie) and its name (`format_of`); and how it is opened: gzip, bzip2, xz and zstd streams
and the files of zip and tar archives (`members`), decompressed by `prepare`'s main process
into blocks that its workers share, and Parquet tables, whose row groups they share. A file
that ends early is refused rather than read as a shorter corpus. Vectors files are read through
the same detection and written compressed by their name's suffix (`compressing`).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import math
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import zstandard

from w2vdist.errors import UsageError

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")
# What a directory is searched for: `.json` only when named, since a dataset's folder often
# holds a JSON metadata file beside its JSON Lines.
TEXT_SUFFIXES = (".txt", ".jsonl", ".ndjson", ".parquet", ".zip", ".tar", *COMPRESSED_SUFFIXES)
COMPRESSIONS = ("gzip", "bzip2", "xz", "zstd")
ARCHIVES = ("zip", "tar")  # a tar may also be compressed: found when its text is read
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
          b"\x28\xb5\x2f\xfd": "zstd", b"PAR1": "parquet", b"PK\x03\x04": "zip"}
# A file's bytes as `open_binary` and `members` hand them out (plain, decompressed or archived);
# buffered, they also read lines and read exactly what is asked.
BufferedFile = IO[bytes] | io.BufferedIOBase
BinaryFile = BufferedFile | io.RawIOBase
_TAR_HEAD = 512  # a tar file starts with a header block that says "ustar" at byte 257
PROBE_THREADS = 16  # files `probed` at once
READ_UNIT = 1 << 22  # compressed bytes a zstd file is read in
PARQUET_BATCH_ROWS = 4096  # rows of one column held at a time
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError,
               zipfile.BadZipFile, tarfile.TarError, NotImplementedError)


def find_files(inputs: Iterable[str]) -> list[Path]:
    """Files named, found under directories (recursively, not into linked directories, as
    `Path.rglob`) or matched by globs, in order."""
    found: dict[tuple[int, int], Path] = {}  # (device, inode) -> as named: read once
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            named = sorted(Path(root, name) for root, _, names in os.walk(path)
                           for name in names if Path(name).suffix in TEXT_SUFFIXES)
            none = f"{path}: no {', '.join(TEXT_SUFFIXES)} files in this directory"
        elif path.exists():
            named, none = [path], f"{path}: not a regular file (input is read twice)"
        elif any(c in text for c in "*?["):
            named = sorted(map(Path, glob.glob(text, recursive=True)))
            none = f"{text}: no files matched"
        else:
            raise UsageError(f"{path}: no such file or directory")
        files = [(f, i) for f, i in zip(named, probed(_identity, named)) if i is not None]
        if not files:
            raise UsageError(none)
        for f, identity in files:
            found.setdefault(identity, f)
    return list(found.values())


def _identity(path: Path) -> tuple[int, int] | None:
    """A regular file's (device, inode), the same however it is named or linked; None for
    anything else (a broken link, a directory). One metadata call where `Path.resolve` makes
    one for each part of the path."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


T = TypeVar("T")


def probed(function: Callable[[Path], T], files: list[Path]) -> list[T]:
    """`function` of each file in order, in runs of files on PROBE_THREADS threads: a file's
    metadata calls and first bytes take a millisecond or more on a network filesystem, and a
    corpus can be a million files (runs, since a thread's task costs more than a local call).
    The first error is raised, and the runs not started are dropped."""
    size = max(1, math.ceil(len(files) / (4 * PROBE_THREADS)))
    runs = [files[i:i + size] for i in range(0, len(files), size)]
    if len(runs) < 2:
        return [function(f) for f in files]
    pool = ThreadPoolExecutor(PROBE_THREADS)
    try:
        return [out for run in pool.map(lambda run: [function(f) for f in run], runs)
                for out in run]
    finally:
        pool.shutdown(cancel_futures=True)


def probe(path: Path | str) -> tuple[int, str | None]:
    """The file's size and kind: gzip, bzip2, xz, zstd, parquet, zip, tar or None (plain),
    from its first bytes. One open: the size comes from the open file (`fstat`), which a
    network filesystem answers from what the open fetched, where a `stat` is one more call."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_TAR_HEAD)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    found = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    return size, found or ("tar" if _is_tar(head) else None)


def members(path: str, kind: str | None) -> Iterator[tuple[str, BinaryFile]]:
    """(name, bytes) of each file in a zip or tar archive (compressed or not), in the archive's
    order; ("", its bytes) for a compressed file that holds no archive."""
    if kind == "zip":
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    with archive.open(info) as member:
                        yield info.filename, member
        return
    with open_binary(path, kind) as f:
        tar = _is_tar(f.read(_TAR_HEAD))
    with open_binary(path, kind) as f:  # again, from its start
        if not tar:
            yield "", f
            return
        with tarfile.open(fileobj=f, mode="r|", tarinfo=_Whole) as archive:
            for entry in archive:
                extracted = archive.extractfile(entry) if entry.isfile() else None
                if extracted is not None:
                    yield entry.name, extracted


def _is_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


class _Whole(tarfile.TarInfo):
    """A tar member's header that refuses to be cut short: tarfile itself takes a header cut
    by the end of the file (a truncated download) for the end of the archive."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        if len(buf) != tarfile.BLOCKSIZE:
            raise tarfile.ReadError("the archive ends early (no end-of-archive blocks)")
        return super().frombuf(buf, encoding, errors)


def format_of(path: Path, kind: str | None) -> str:
    """parquet for a Parquet file (`kind`: what its first bytes say), jsonl for a name that,
    less any compression suffix, ends as a JSON Lines file's does, else text."""
    if kind == "parquet":
        return "parquet"
    return "jsonl" if uncompressed_name(path.name.lower()).endswith(JSON_LINES_SUFFIXES) \
        else "text"


def uncompressed_name(name: str) -> str:
    """`name` less a compression suffix (`vectors.bin.gz`: `vectors.bin`)."""
    suffix = next((s for s in COMPRESSED_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def open_binary(path: str, compression: str | None) -> BinaryFile:
    """The file's bytes, decompressed (`compression`: one of COMPRESSIONS, as `kind` found it,
    or None)."""
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bzip2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    if compression == "zstd":
        return _ZstdFrames(path)
    return open(path, "rb")


@contextmanager
def compressing(f: IO[bytes], name: str) -> Iterator[BufferedFile]:
    """Writes to `f`, compressed as `name`'s suffix says (gzip at level 6, as `gzip` itself,
    without a name or time in its header; bzip2, xz, zstd at their defaults), or as they
    are. `f` stays open."""
    suffix = name.lower()[len(uncompressed_name(name)):]
    if not suffix:
        yield f
        return
    writer: BufferedFile
    if suffix == ".gz":
        writer = gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=f, mtime=0)
    elif suffix == ".bz2":
        writer = bz2.BZ2File(f, "wb")
    elif suffix == ".xz":
        writer = lzma.LZMAFile(f, "wb")
    else:
        writer = zstandard.ZstdCompressor().stream_writer(f, closefd=False)
    with writer:
        yield writer


class _ZstdFrames(io.RawIOBase):
    """The zstd frames of a file, one after another as `zstd -d` reads them, raising at the end
    of a file that ends inside a frame (zstandard's own readers return what they have, so a
    truncated download would be read as a shorter corpus)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._file = open(path, "rb")
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._inside = False  # whether input has gone into a frame not yet complete
        self._out, self._at = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._at == len(self._out):
            block = self._file.read(READ_UNIT)
            if not block:
                if self._inside:
                    raise zstandard.ZstdError("the file ends inside a frame (truncated)")
                return 0
            self._out, self._at = self._decompress(block), 0
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._frame.decompress(data))
            self._inside = not self._frame.eof
            if self._inside:
                break
            data = self._frame.unused_data
            self._frame = self._context.decompressobj()
        return b"".join(out)

    def close(self) -> None:
        self._file.close()
        super().close()


# ---------------------------------------------------------------------------------------------
# Parquet: pyarrow is an optional dependency (`pip install 'w2vdist[parquet]'`).


def parquet_row_groups(path: str, column: str) -> int:
    """How many row groups the file has, once its footer is read and `column` found to hold
    text (so a wrong column stops `prepare` before any work)."""
    pa, pq = _pyarrow(path)
    try:
        table = pq.ParquetFile(path)
        schema, groups = table.schema_arrow, table.metadata.num_row_groups
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{path}: cannot read parquet file: {exc}") from None
    found = _column(pa, schema, column)
    if found is None:
        raise UsageError(f"{path}: no {column!r} column (its columns: {', '.join(schema.names)});"
                         " name the text's column with --text-field")
    kind_of = found[1]
    if pa.types.is_dictionary(kind_of):
        kind_of = kind_of.value_type
    if not (pa.types.is_string(kind_of) or pa.types.is_large_string(kind_of)
            or pa.types.is_string_view(kind_of)):
        raise UsageError(f"{path}: the {column!r} column holds {kind_of}, not text")
    return groups


def _column(pa: Any, schema: Any, column: str) -> tuple[int, Any] | None:
    """(depth, type) of `column`: a column of the table (depth 0, taken first), or `a.b`,
    field b of the struct column a (depth 1; as a JSON Lines file's `a.b` is field b of
    object a); None if there is none."""
    if column in schema.names:
        return 0, schema.field(column).type
    head, *rest = column.split(".")
    if head not in schema.names:
        return None
    kind = schema.field(head).type
    for name in rest:
        if not pa.types.is_struct(kind) or kind.get_field_index(name) < 0:
            return None
        kind = kind.field(name).type
    return len(rest), kind


def parquet_texts(path: str, column: str, first: int, end: int) -> Iterator[tuple[list, int]]:
    """(texts, bytes) for each batch of `column` in row groups [first, end): None for a null
    (a null struct above a nested column too). Of a nested column only its own values are
    read, not the rest of the structs it is in."""
    pa, pq = _pyarrow(path)
    try:
        table = pq.ParquetFile(path)
        depth, _ = _column(pa, table.schema_arrow, column) or (0, None)  # checked at probe
        row = sum(table.metadata.row_group(g).num_rows for g in range(first))
        for batch in table.iter_batches(PARQUET_BATCH_ROWS, range(first, end), [column]):
            values = batch.column(0)
            for _ in range(depth):  # each struct holds only the field read: its one child
                values = values.flatten()[0]
            try:
                texts = values.to_pylist()
            except UnicodeDecodeError:  # Arrow reads strings unchecked; a writer may not check
                bad = _first_not_utf8(values.cast(pa.large_binary()).to_pylist())
                raise UsageError(f"{path}: row {row + bad:,}: the {column!r} column's text is "
                                 "not valid UTF-8") from None
            yield texts, values.nbytes
            row += len(values)
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{path}: cannot read parquet file: {exc}") from None


def _first_not_utf8(values: list[bytes | None]) -> int:
    """The index of the first value that does not decode as UTF-8."""
    for i, value in enumerate(values):
        try:
            (value or b"").decode("utf-8")
        except UnicodeDecodeError:
            return i
    raise ValueError("every value decodes")


def _pyarrow(path: str) -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UsageError(f"{path}: reading Parquet needs pyarrow "
                         "(pip install 'w2vdist[parquet]')") from None
    return pyarrow, pyarrow.parquet
