"""The prepared-corpus format: `vocab.tsv`, `manifest.json` and WebDataset tar shards.

Each shard `shard-NNNNNN.tar` holds samples of whole sentences (a sentence longer than
`max_sentence_len` is cut into pieces). A sample has two int32 `.npy` fields:
`tokens.npy` (token ids, OOV words already dropped) and `lengths.npy` (sentence lengths,
summing to the number of tokens). Windows never cross a sentence boundary. `ShardPacker`
writes them; `Manifest` describes and checks them.
"""

from __future__ import annotations

import functools
import io
import json
import re
import tarfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_origin, get_type_hints

import numpy as np

from w2vdist.errors import UsageError
from w2vdist.files import sha256_file

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

FORMAT = "w2vdist-shards"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass
class ShardInfo:
    name: str
    tokens: int
    samples: int
    bytes: int = 0  # the file's size (0 in manifests written before it was recorded)
    sha256: str = ""  # its SHA-256, which copies from a URL are checked against ("": older)


@dataclass
class Manifest:
    vocab_size: int
    total_tokens: int
    shards: list[ShardInfo]
    vocab_hash: str
    tokenizer: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def save(self, directory: str | Path) -> None:
        (Path(directory) / MANIFEST_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "Manifest":
        path = Path(directory) / MANIFEST_FILE
        if not path.is_file():
            raise UsageError(f"{path}: not found; is {directory} a `w2vdist prepare` output?")
        return cls.parse(path.read_bytes(), str(path))

    @classmethod
    def parse(cls, text: bytes, where: str) -> "Manifest":
        """The manifest in `text`; errors name `where` (its file or URL)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {data.get('version')} is not {FORMAT_VERSION}")
            manifest = _typed(cls, data)
            manifest.shards = [_typed(ShardInfo, s, f"shard {i}: ")
                               for i, s in enumerate(manifest.shards)]
            _check_names([s.name for s in manifest.shards])
            return manifest
        except ValueError as exc:  # JSON's errors and the checks'
            raise UsageError(f"{where}: unreadable manifest: {exc}") from None

    def check_files(self, directory: str | Path, files: bool = True) -> None:
        """Every shard with samples and tokens and, with `files`, present and of the size the
        manifest records: a truncated, deleted or miscounted shard fails here, before
        training, not mid-run."""
        directory = Path(directory)
        if not self.shards or self.total_tokens <= 0:
            raise UsageError(f"{directory / MANIFEST_FILE}: lists no tokens to train on")
        for shard in self.shards:
            # A sample is two tar members of at least 1,024 bytes each (a header and a block
            # of data), a token 4 bytes of them: counts the shard's bytes cannot hold are
            # damage, for which the loader would plan (a trillion samples: out of memory).
            if (shard.samples < 1 or shard.tokens < 1 or shard.bytes
                    and max(shard.samples * 2048, shard.tokens * 4) > shard.bytes):
                raise UsageError(f"{directory / MANIFEST_FILE}: shard {shard.name} has "
                                 f"{shard.samples:,} samples and {shard.tokens:,} tokens" +
                                 (f" in {shard.bytes:,} bytes" if shard.bytes else ""))
        if not files:
            return
        for shard in self.shards:
            problem = size_problem(directory / shard.name, shard)
            if problem:
                raise UsageError(f"{directory / shard.name}: {problem}")

    def shard_paths(self, directory: str | Path) -> list[str]:
        return [str(Path(directory) / s.name) for s in self.shards]

    def sources(
        self, directory: str | Path, indices: list[int] | None = None
    ) -> list[tuple[str, int]]:
        """(path, samples) of the shards at `indices` (all by default), as the loader reads them."""
        chosen = range(len(self.shards)) if indices is None else indices
        paths = self.shard_paths(directory)
        return [(paths[i], self.shards[i].samples) for i in chosen]


def size_problem(path: Path, shard: ShardInfo) -> str:
    """What is wrong with a shard's file by its presence and size ('' if nothing): what
    training checks of every shard as it starts, and `verify` before reading it."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    if shard.bytes and size != shard.bytes:
        return (f"{size:,} bytes, but the manifest says {shard.bytes:,} (truncated or replaced; "
                "run prepare again)")
    return ""


_Record = TypeVar("_Record", bound="DataclassInstance")
_JSON = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def _typed(cls: type[_Record], data: Any, where: str = "") -> _Record:
    """`cls` from the fields of the JSON object `data` that it declares, each of its declared
    type (what a later version adds is left for it to read): a manifest edited by hand or
    damaged fails here, naming the field, not deep in training."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}not a JSON object")
    kept = {}
    for name, kind, required in _schema(cls):
        if name not in data:
            if required:
                raise ValueError(f"{where}{name} is missing")
            continue
        problem = type_problem(name, data[name], kind)
        if problem:
            raise ValueError(f"{where}{problem}")
        kept[name] = data[name]
    return cls(**kept)


def type_problem(name: str, value: Any, kind: type) -> str:
    """'NAME is VALUE, not an integer' when a JSON `value` is not of type `kind` (true and
    false are not integers), else ''."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return ""
    return f"{name} is {json.dumps(value)[:80]}, not {_JSON.get(kind, kind.__name__)}"


@functools.cache
def _schema(cls: type[DataclassInstance]) -> list[tuple[str, type, bool]]:
    """Each field's name, JSON type and whether it is required (once a class: a manifest
    lists up to millions of shards)."""
    hints = get_type_hints(cls)
    return [(f.name, get_origin(hints[f.name]) or hints[f.name],
             f.default is MISSING and f.default_factory is MISSING) for f in fields(cls)]


def _check_names(names: list[str]) -> None:
    """Shard names are plain file names, each listed once: a manifest from a URL names the
    files its shards are copied to, and `../../.bashrc` must not be one of them."""
    seen: set[str] = set()
    for name in names:
        if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(f"shard name {name!r} is not a file name in the corpus folder")
        if name in seen:
            raise ValueError(f"shard {name!r} is listed twice")
        seen.add(name)


class ShardReader:
    """Any sample of one shard, in any order: the tar's headers are read once for where each
    sample's two fields lie, then a sample costs two reads. The loader visits a rank's samples
    in a new order every pass this way, and seeks without reading what it skips. With `vocab`,
    a sample holding a token id outside it (a damaged shard, which would index past the
    tables) fails to read."""

    def __init__(self, path: str | Path, samples: int, vocab: int | None = None) -> None:
        self.path = str(path)
        self.vocab = vocab
        fields: dict[str, dict[str, tuple[int, int]]] = {}
        with tarfile.open(self.path, "r:") as tar:
            for member in tar:
                if member.isfile():
                    key, _, name = Path(member.name).name.partition(".")
                    fields.setdefault(key, {})[name] = (member.offset_data, member.size)
        self.where: list[tuple[tuple[int, int], tuple[int, int]]] = []
        for key, found in fields.items():
            if "tokens.npy" not in found or "lengths.npy" not in found:
                raise ValueError(f"sample {key} lacks tokens.npy or lengths.npy")
            self.where.append((found["tokens.npy"], found["lengths.npy"]))
        if len(self.where) != samples:
            raise ValueError(f"{len(self.where)} samples, but the manifest says {samples}")

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, lengths) of sample `index`, in the shard's order."""
        with open(self.path, "rb") as file:
            arrays = []
            for offset, size in self.where[index]:
                file.seek(offset)
                data = file.read(size)
                if len(data) != size:
                    raise ValueError(f"sample {index} is cut short")
                arrays.append(_unnpy(data))
        tokens, lengths = arrays
        if int(lengths.sum()) != len(tokens):
            raise ValueError(f"sample {index}: sentence lengths sum to {int(lengths.sum())}, "
                             f"not its {len(tokens)} tokens")
        if self.vocab is not None and len(tokens):
            if tokens.dtype != np.int32:
                raise ValueError(f"sample {index} holds {tokens.dtype} token ids, not int32")
            # Negative ids read as unsigned are past any vocabulary: one pass for both ends.
            top = int(np.max(tokens.view(np.uint32)))
            if top >= self.vocab:
                bad = top - (1 << 32) if top >= 1 << 31 else top
                raise ValueError(f"sample {index} holds token id {bad}, but the vocabulary "
                                 f"has {self.vocab:,} words")
        return tokens, lengths


def encode_sample(key: str, tokens: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    """A WebDataset sample dict (`__key__` and a field's bytes by extension)."""
    assert int(lengths.sum()) == len(tokens)
    return {
        "__key__": key,
        "tokens.npy": _npy(tokens.astype(np.int32, copy=False)),
        "lengths.npy": _npy(lengths.astype(np.int32, copy=False)),
    }


def decode_sample(sample: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, lengths) from a raw WebDataset sample (values still bytes)."""
    return _unnpy(sample["tokens.npy"]), _unnpy(sample["lengths.npy"])


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


# The header `np.save` writes for a one-dimensional little-endian array (format 1.0): magic,
# version, header length, then the dictionary padded with spaces to a newline.
_SAVED_1D = re.compile(rb"\x93NUMPY\x01\x00..\{'descr': '(<[iuf][248])', 'fortran_order': "
                       rb"False, 'shape': \((\d+),\), \} *\n", re.DOTALL)


def _unnpy(data: bytes) -> np.ndarray:
    """The array an `.npy` file holds, as a read-only view of its bytes: `np.load` would copy
    it, which halved the loader's rate. The header `np.save` writes for the shards' arrays is
    matched directly; numpy's reader, which evaluates the header as Python, took a seventh of
    a loader worker's time (BENCHMARKS.md, "The loader's own time"), and reads any other."""
    saved = _SAVED_1D.match(data)
    if saved and len(saved[0]) == 10 + int.from_bytes(data[8:10], "little"):
        return np.frombuffer(data, dtype=saved[1].decode(), count=int(saved[2]),
                             offset=len(saved[0]))
    header = io.BytesIO(data)
    version = np.lib.format.read_magic(header)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
    if fortran or dtype.hasobject or len(shape) != 1:
        raise ValueError(f"expected a one-dimensional array, not shape {shape} of {dtype}")
    return np.frombuffer(data, dtype=dtype, count=shape[0], offset=header.tell())


# ---------------------------------------------------------------------------------------------
# Writing: whole sentences packed into samples and shards (`prepare`'s main process).


class ShardPacker:
    """Whole sentences -> samples of at most block_tokens -> shards of at most shard_tokens.

    Greedy: a sample (shard) is closed when the next sentence (sample) would overflow it, so
    only a single sentence longer than a block, or a sample longer than a shard, exceeds them.
    Sample boundaries depend only on the sentence stream, so workers cannot change them.
    """

    def __init__(self, directory: Path, shard_tokens: int, block_tokens: int) -> None:
        self.directory = directory
        self.shard_tokens = shard_tokens
        self.block_tokens = min(block_tokens, shard_tokens)  # a sample never spans two shards
        self.shards: list[ShardInfo] = []
        self._writer: TarWriter | None = None
        self._samples = 0
        self._tokens = np.zeros(0, np.int32)  # the open sample's sentences
        self._lengths = np.zeros(0, np.int32)

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append whole sentences (tokens concatenated, lengths summing to len(tokens))."""
        tokens = np.concatenate([self._tokens, tokens])
        lengths = np.concatenate([self._lengths, lengths])
        ends = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        first = 0  # first sentence of the sample being built
        while True:
            last = int(np.searchsorted(ends, ends[first] + self.block_tokens, side="right")) - 1
            last = max(last, first + 1)  # a sentence longer than a block is a sample alone
            if last >= len(lengths):
                break  # the rest may grow with the next sentences
            self._write(tokens[ends[first] : ends[last]], lengths[first:last])
            first = last
        self._tokens, self._lengths = tokens[ends[first] :], lengths[first:]

    def close(self) -> list[ShardInfo]:
        if len(self._lengths):
            self._write(self._tokens, self._lengths)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for shard in self.shards:  # what the trainer checks each file, or copy, against
            shard.bytes = (self.directory / shard.name).stat().st_size
            shard.sha256 = sha256_file(self.directory / shard.name)
        return self.shards

    def abort(self) -> None:
        """Close the shard being written, unfinished (prepare failed: the staging folder goes
        with it), rather than leave its tar stream for the garbage collector to flush into a
        closed file. Nothing after `close`."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(finish=False)

    def _write(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        shard, writer = (self.shards[-1] if self.shards else None), self._writer
        if shard is None or writer is None or \
                (shard.tokens and shard.tokens + len(tokens) > self.shard_tokens):
            if writer is not None:
                writer.close()
            shard = ShardInfo(f"shard-{len(self.shards):06d}.tar", 0, 0)
            self.shards.append(shard)
            writer = self._writer = TarWriter(self.directory / shard.name)
        writer.write(encode_sample(f"{self._samples:09d}", tokens, lengths))
        self._samples += 1
        shard.tokens += len(tokens)
        shard.samples += 1


class TarWriter:
    """A shard's tar stream, member by member, as `webdataset.TarWriter` writes it (the same
    bytes: tests read the shards with webdataset itself), without importing webdataset, which
    imports torch: a second and a half of every `prepare`. A sample's fields are members
    `KEY.FIELD`, sorted by field; the fixed mtime makes the same input give the same bytes."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w|")

    def write(self, sample: dict[str, Any]) -> None:
        key = sample["__key__"]
        for name in sorted(k for k in sample if not k.startswith("_")):
            data = sample[name]
            member = tarfile.TarInfo(f"{key}.{name}")
            member.size, member.mtime, member.mode = len(data), 0, 0o444
            member.uname = member.gname = "bigdata"
            self._tar.addfile(member, io.BytesIO(data))

    def close(self, finish: bool = True) -> None:
        """Ends the archive and the file; `finish=False` (prepare failed: the staging folder
        goes with it) only closes them, ignoring the error that stopped prepare, again."""
        try:
            self._tar.close()
        except (OSError, ValueError):
            if finish:
                raise
        finally:
            self._file.close()
