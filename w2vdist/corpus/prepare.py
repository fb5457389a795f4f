"""`w2vdist prepare INPUT... -o OUT`: text -> vocab.tsv + WebDataset shards + manifest.json.

Two passes over the input, spread over worker processes: the first counts words and builds
the vocabulary, the second turns each line into word ids (out-of-vocabulary words dropped, as
word2vec.c does) and packs whole sentences into samples and shards. Big plain-text files are
cut into byte ranges; compressed files are read whole by one worker each. Memory is bounded by
the vocabulary, not the corpus. The output is the same for any number of workers.

Everything is written into `OUT.tmp-<pid>` beside OUT and renamed to OUT once complete, so an
error, Ctrl-C or SIGTERM never leaves a shard set that looks complete.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import dataclasses
import functools
import glob
import gzip
import multiprocessing
import os
import re
import shutil
import signal
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from w2vdist import config as config_mod
from w2vdist.config import PrepareConfig
from w2vdist.errors import UsageError
from w2vdist.corpus.shards import Manifest, ShardInfo, encode_sample
from w2vdist.corpus.tokenize import Tokenizer
from w2vdist.corpus.vocab import VOCAB_FILE, Vocab

TEXT_SUFFIXES = (".txt", ".gz", ".bz2")
CHUNK_BYTES = 1 << 22  # read unit; a line longer than this is read in parts, cut at a space
MIN_RANGE_BYTES = 1 << 20
MAX_RANGE_BYTES = 1 << 26
RANGES_PER_WORKER = 4  # several byte ranges per worker, so that one slow range does not stall
FLUSH_TOKENS = 1 << 20  # a worker writes its encoded ids out every this many tokens
PACK_SENTENCES = 1 << 20  # sentences the main process packs at a time
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_WHITESPACE = re.compile(r"\s")


# ---------------------------------------------------------------------------------------------
# Finding and reading the input.


@dataclass(frozen=True)
class Piece:
    """The lines of `path` that start in bytes [start, end); end -1: to the end of the file."""

    number: int
    path: str
    start: int = 0
    end: int = -1


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


def split_pieces(files: list[Path], workers: int) -> list[Piece]:
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
    return [Piece(i, *r) for i, r in enumerate(ranges)]


def _compressed(path: Path | str) -> bool:
    return str(path).endswith((".gz", ".bz2"))


@dataclass
class TextStats:
    """What reading the text found; summed over pieces for the manifest."""

    lines: int = 0
    raw_tokens: int = 0
    undecodable_bytes: int = 0

    def add(self, other: "TextStats") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


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
    carry = b""
    for block in _piece_bytes(piece):
        data = carry + block
        cut = data.rfind(b"\n") + 1 or _safe_cut(data)
        carry = data[cut:]
        if cut:
            yield _decode(data[:cut], stats)
    if carry:
        yield _decode(carry, stats)


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


def _decode(data: bytes, stats: TextStats) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="surrogateescape")
        text, replaced = _ESCAPED_BYTE.subn("\ufffd", text)
        stats.undecodable_bytes += replaced
        return text


def _piece_bytes(piece: Piece) -> Iterator[bytes]:
    """The raw bytes of the lines that start in the piece, in blocks of at most CHUNK_BYTES."""
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
                pos += len(block)
                last = block[-1:]
                yield block
            while last != b"\n" and (block := f.readline(CHUNK_BYTES)):
                last = block[-1:]  # finish the line that began before `end`
                yield block
    except (OSError, EOFError, zlib.error) as exc:
        kind = {".gz": "gzip", ".bz2": "bzip2"}.get(Path(piece.path).suffix, "text")
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UsageError(f"{piece.path}: cannot read {kind} file: {reason}") from None


def _open_binary(path: str) -> IO[bytes]:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


# ---------------------------------------------------------------------------------------------
# The two passes, each run on one piece in a worker process.


def count_piece(tokenizer: Tokenizer, piece: Piece) -> tuple[Counter[str], TextStats]:
    """Pass 1: how often each word occurs in the piece."""
    stats = TextStats()
    counts: Counter[str] = Counter()
    words: list[str] = []
    for text, _ in read_lines(piece, stats):
        words += tokenizer(text)
        if len(words) >= FLUSH_TOKENS:
            counts.update(words)
            words.clear()
    counts.update(words)
    stats.raw_tokens = counts.total()
    return counts, stats


@dataclass
class EncodedPiece:
    """Pass 2's result: int32 ids and sentence lengths in two files under the staging dir."""

    tokens_file: str
    lengths_file: str
    tokens: int
    sentences: int
    oov: int


def encode_piece(
    tokenizer: Tokenizer, vocab: tuple[str, str], parts_dir: str, max_len: int, piece: Piece
) -> EncodedPiece:
    """Pass 2: the piece's sentences as word ids, lines longer than max_len cut in pieces.

    `vocab` is (vocab.tsv path, vocab hash).
    """
    word_id = _word_ids(*vocab).get
    prefix = os.path.join(parts_dir, f"piece-{piece.number:06d}")
    result = EncodedPiece(f"{prefix}.tokens", f"{prefix}.lengths", 0, 0, 0)
    tokens, lengths = array("i"), array("i")
    pending: list[int] = []  # the sentence being read, while its line comes in parts
    with open(result.tokens_file, "wb") as tok_out, open(result.lengths_file, "wb") as len_out:
        for text, line_complete in read_lines(piece, TextStats()):
            words = tokenizer(text)
            ids = [i for i in map(word_id, words) if i is not None]
            result.oov += len(words) - len(ids)
            if pending:
                ids = pending + ids
            cut = 0
            while len(ids) - cut >= max_len or (line_complete and len(ids) > cut):
                sentence = ids[cut : cut + max_len]
                tokens.extend(sentence)
                lengths.append(len(sentence))
                cut += len(sentence)
            pending = ids[cut:]
            if len(tokens) >= FLUSH_TOKENS:
                _flush(tokens, lengths, tok_out, len_out, result)
        if pending:
            tokens.extend(pending)
            lengths.append(len(pending))
        _flush(tokens, lengths, tok_out, len_out, result)
    return result


def _flush(
    tokens: array, lengths: array, tok_out: IO[bytes], len_out: IO[bytes], result: EncodedPiece
) -> None:
    result.tokens += len(tokens)
    result.sentences += len(lengths)
    tokens.tofile(tok_out)
    lengths.tofile(len_out)
    del tokens[:], lengths[:]


@functools.lru_cache(maxsize=1)
def _word_ids(vocab_file: str, vocab_hash: str) -> dict[str, int]:
    """Each worker reads the vocabulary once for all the pieces it encodes (the hash is part of
    the cache key: a later run in this process may reuse the path)."""
    return Vocab.load(vocab_file).index()


def build_vocab(counts: Counter[str], min_count: int, max_vocab: int) -> Vocab:
    """Words seen at least min_count times, most frequent first, ties in code-point order,
    the first max_vocab kept (0: all). Words the word2vec formats cannot hold are left out."""
    kept = [(w, c) for w, c in counts.items() if c >= min_count and w and not _WHITESPACE.search(w)]
    kept.sort(key=lambda wc: (-wc[1], wc[0]))
    if max_vocab:
        kept = kept[:max_vocab]
    if not kept:
        most = max(counts.items(), key=lambda wc: wc[1])
        raise UsageError(
            f"no word occurs min_count={min_count} times (the most frequent, {most[0]!r}, "
            f"occurs {most[1]}); lower --min-count or add text"
        )
    return Vocab([w for w, _ in kept], np.array([c for _, c in kept], dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Packing sentences into samples and shards (main process).


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
        self._writer: Any = None
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
        return self.shards

    def _write(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        # webdataset imports torch (a second or more): only the main process needs it.
        import webdataset

        shard = self.shards[-1] if self.shards else None
        if shard is None or (shard.tokens and shard.tokens + len(tokens) > self.shard_tokens):
            if self._writer is not None:
                self._writer.close()
            shard = ShardInfo(f"shard-{len(self.shards):06d}.tar", 0, 0)
            self.shards.append(shard)
            # A fixed mtime makes the same input give byte-identical shards.
            self._writer = webdataset.TarWriter(
                str(self.directory / shard.name), encoder=False, mtime=0
            )
        self._writer.write(encode_sample(f"{self._samples:09d}", tokens, lengths))
        self._samples += 1
        shard.tokens += len(tokens)
        shard.samples += 1


# ---------------------------------------------------------------------------------------------
# The whole run.


@dataclass
class Summary:
    output: Path
    manifest: Manifest
    seconds: float

    def __str__(self) -> str:
        m, s = self.manifest, self.manifest.stats
        samples = sum(x.samples for x in m.shards)
        lines = [
            f"files   {s['files']:,} ({s['bytes'] / 1e6:,.1f} MB), {s['lines']:,} lines, "
            f"{s['undecodable_bytes']:,} undecodable bytes replaced",
            f"tokens  {s['raw_tokens']:,} read, {s['oov_dropped']:,} out of vocabulary dropped, "
            f"{m.total_tokens:,} kept in {s['sentences']:,} sentences",
            f"vocab   {m.vocab_size:,} words (min_count {s['min_count']})",
            f"shards  {len(m.shards):,} ({samples:,} samples) in {self.output}",
            f"time    {self.seconds:.1f} s",
        ]
        return "\n".join(lines)


def prepare(cfg: PrepareConfig) -> Summary:
    """Run both passes and publish OUT atomically; UsageError for bad input."""
    started = time.monotonic()
    if not cfg.inputs:
        raise UsageError("prepare: no INPUT given")
    if not cfg.output:
        raise UsageError("prepare: no output directory given (-o OUT)")
    out = Path(cfg.output).absolute()
    _check_output(out, cfg.overwrite)
    files = find_files(cfg.inputs)
    tokenizer = Tokenizer.from_config(cfg)
    workers = cfg.workers or _cores()
    pieces = split_pieces(files, workers)
    with _staging_dir(out, cfg.overwrite) as staging, _parallel(min(workers, len(pieces))) as run:
        stats = TextStats()
        counts: Counter[str] = Counter()
        for piece_counts, piece_stats in run(
            functools.partial(count_piece, tokenizer), pieces, "counting"
        ):
            counts.update(piece_counts)
            stats.add(piece_stats)
        if stats.raw_tokens == 0:
            raise UsageError(
                f"{_describe(files)}: empty corpus (no words in {stats.lines:,} lines)"
            )
        vocab = build_vocab(counts, cfg.min_count, cfg.max_vocab)
        distinct_words = len(counts)
        del counts
        vocab.save(staging / VOCAB_FILE)
        parts = staging / "parts"
        parts.mkdir()
        vocab_key = (str(staging / VOCAB_FILE), vocab.hash)
        encode = functools.partial(
            encode_piece, tokenizer, vocab_key, str(parts), cfg.max_sentence_len
        )
        packer = ShardPacker(staging, cfg.shard_tokens, cfg.block_tokens)
        sentences = oov = 0
        for encoded in run(encode, pieces, "encoding"):
            _pack(packer, encoded)
            sentences += encoded.sentences
            oov += encoded.oov
        shards = packer.close()
        parts.rmdir()
        total = sum(s.tokens for s in shards)
        if total + oov != stats.raw_tokens:
            raise UsageError(f"{_describe(files)}: input changed while being read; run again")
        manifest = Manifest(
            vocab_size=len(vocab),
            total_tokens=total,
            shards=shards,
            vocab_hash=vocab.hash,
            tokenizer=tokenizer.settings(),
            stats={
                "files": len(files),
                "bytes": sum(f.stat().st_size for f in files),
                **dataclasses.asdict(stats),
                "sentences": sentences,
                "oov_dropped": oov,
                "distinct_words": distinct_words,
                "min_count": cfg.min_count,
                "max_vocab": cfg.max_vocab,
                "max_sentence_len": cfg.max_sentence_len,
                "block_tokens": cfg.block_tokens,
                "shard_tokens": cfg.shard_tokens,
            },
        )
        manifest.save(staging)
    return Summary(out, manifest, time.monotonic() - started)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may use, on Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _describe(files: list[Path]) -> str:
    return str(files[0]) if len(files) == 1 else f"{files[0]} and {len(files) - 1} more files"


def _pack(packer: ShardPacker, encoded: EncodedPiece) -> None:
    """Feed one encoded piece to the packer from its files, a bounded slice at a time."""
    if encoded.sentences:
        tokens = np.memmap(encoded.tokens_file, dtype=np.int32, mode="r")
        lengths = np.memmap(encoded.lengths_file, dtype=np.int32, mode="r")
        offset = 0
        for a in range(0, len(lengths), PACK_SENTENCES):
            part = np.array(lengths[a : a + PACK_SENTENCES])
            n = int(part.sum())
            packer.add(np.array(tokens[offset : offset + n]), part)
            offset += n
        del tokens, lengths
    os.remove(encoded.tokens_file)
    os.remove(encoded.lengths_file)


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier `prepare` output, and that only if asked."""
    if not out.exists():
        return
    if not overwrite:
        raise UsageError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file()):
        raise UsageError(f"{out}: exists and is not a `w2vdist prepare` output; not replacing it")


@contextlib.contextmanager
def _staging_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """`OUT.tmp-<pid>`, renamed to OUT on success and removed on any error or interrupt."""
    path = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()
    try:
        yield path
        if out.exists():
            _check_output(out, overwrite)  # it may have appeared while we worked
            old = out.with_name(f"{out.name}.old-{os.getpid()}")
            os.rename(out, old)
            os.rename(path, out)
            shutil.rmtree(old)
        else:
            os.rename(path, out)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _parallel(workers: int) -> Iterator[Callable[[Callable[[Any], Any], list[Any], str], Any]]:
    """`run(fn, items, what)`: fn's results over items, in order, with a progress bar; in this
    process for one worker, else in a pool whose workers leave Ctrl-C to this process."""
    pool = None
    if workers > 1:
        # spawn: a fresh interpreter, safe whatever this process has imported or started.
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_sigint)

    def run(fn: Callable[[Any], Any], items: list[Any], what: str) -> Iterator[Any]:
        results = pool.imap(fn, items) if pool else map(fn, items)
        return tqdm(results, total=len(items), desc=what, unit="piece", disable=None, leave=False)

    try:
        yield run
    finally:
        if pool is not None:
            pool.terminate()  # every result has been used, or an error is on its way out
            pool.join()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------
# Command line.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PrepareConfig()
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="text files (.txt, .gz, .bz2), directories or globs",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    flags: list[tuple[str, str, str]] = [
        ("min-count", "N", f"drop words seen fewer times (default {defaults.min_count})"),
        ("max-vocab", "N", "keep only the N most frequent words (default 0: no limit)"),
        ("tokenizer", "NAME", "default (lowercase \\w+), wordpunct, toktok or whitespace"),
        ("stem", "LANG", "Snowball stemming in this language, e.g. english"),
        ("stopwords", "FILE", "remove the words in FILE (one per line)"),
        ("shard-tokens", "N", f"tokens per shard (default {defaults.shard_tokens:,})"),
        ("block-tokens", "N", f"tokens per sample (default {defaults.block_tokens:,})"),
        (
            "max-sentence-len",
            "N",
            f"cut longer lines into sentences of N tokens (default {defaults.max_sentence_len:,})",
        ),
        ("workers", "N", "worker processes (default 0: all cores)"),
    ]
    for flag, metavar, help_text in flags:
        parser.add_argument(f"--{flag}", metavar=metavar, help=help_text)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="replace an existing OUT (once the new one is complete)",
    )
    parser.add_argument(
        "--no-lowercase",
        dest="lowercase",
        action="store_false",
        default=None,
        help="keep the case of the text",
    )


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """The flags given, over PrepareConfig's defaults, coerced and validated there."""
    names = {f.name for f in dataclasses.fields(PrepareConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return config_mod.from_dict(PrepareConfig, given, prefix="prepare.")


def command(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        summary = prepare(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary)
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so the staging directory is removed on the way out."""
    raise SystemExit(128 + signum)
