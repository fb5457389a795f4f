"""`w2vdist prepare INPUT... -o OUT`: text -> vocab.tsv + WebDataset shards + manifest.json.

Two passes over the input, spread over worker processes: the first counts words (`counting`)
and builds the vocabulary (no such pass when one is given, `--vocab`; the only one with
`--counts-only`), the second turns each line into word ids (out-of-vocabulary words dropped,
as word2vec.c does) and packs whole sentences into samples and shards (`shards.ShardPacker`).
With `--phrases N`, N passes before them find the word pairs to join into phrases
(`phrases`). Big plain files are cut into byte ranges, compressed files into
blocks, small files share tasks (`pieces`). Memory is bounded by the (bounded) word and pair
counts, not the corpus. The output is the same for any number of workers while the
counts stay within their bounds (`counting`).

Everything is written into a temporary folder beside OUT and renamed to OUT once complete
(`files.atomic_path`), so an error, Ctrl-C or SIGTERM never leaves a shard set that looks complete.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import signal
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from w2vdist import settings
from w2vdist.corpus import counting
from w2vdist.corpus.filetypes import find_files
from w2vdist.corpus.config import PrepareConfig
from w2vdist.corpus.phrases import PHRASES_FILE, Phrases, choose
from w2vdist.corpus.shards import Manifest, ShardInfo, ShardPacker
from w2vdist.corpus.pieces import Piece, expand, grouped, share_input, split_pieces
from w2vdist.corpus.sentences import STDIN, Sentences, copied
from w2vdist.corpus.text import TextStats, read_lines, readable
from w2vdist.corpus.tokenize import Tokenizer
from w2vdist.corpus.vocab import VOCAB_FILE, Vocab, build_vocab, summed_counts
from w2vdist.corpus.workers import Workers, parallel
from w2vdist.errors import UsageError
from w2vdist.files import atomic_path
from w2vdist.host import cores

FORMAT_NAMES = {"text": "text", "jsonl": "JSON Lines", "parquet": "Parquet"}
FLUSH_TOKENS = 1 << 20  # a worker writes its encoded ids out every this many tokens
PACK_SENTENCES = 1 << 20  # sentences the main process packs at a time


@dataclass
class EncodedPiece:
    """Pass 2's result: int32 ids and sentence lengths in two files under the staging dir."""

    tokens_file: str
    lengths_file: str
    tokens: int
    sentences: int
    oov: int
    read: TextStats  # what reading the text found (a vocabulary given: the only pass)


def encode_pieces(
    tokenizer: Tokenizer, vocab: tuple[str, str], parts_dir: str, max_len: int,
    pieces: list[Piece],
) -> EncodedPiece:
    """Pass 2: the pieces' sentences as word ids, lines longer than max_len cut in pieces (and
    a piece's end ends a sentence), into one pair of files.

    `vocab` is (vocab.tsv path, vocab hash).
    """
    word_id = _word_ids(*vocab).get
    prefix = os.path.join(parts_dir, f"piece-{pieces[0].number:06d}")
    result = EncodedPiece(f"{prefix}.tokens", f"{prefix}.lengths", 0, 0, 0, TextStats())
    tokens, lengths = array("i"), array("i")
    with open(result.tokens_file, "wb") as tok_out, open(result.lengths_file, "wb") as len_out:
        for piece in readable(pieces):
            pending: list[int] = []  # the sentence being read, while its line comes in parts
            for text, line_complete in read_lines(piece, result.read):
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


# ---------------------------------------------------------------------------------------------
# The whole run.


@dataclass
class Summary:
    output: Path
    manifest: Manifest
    seconds: float
    workers: int  # processes that read the corpus (1: this one)

    def __str__(self) -> str:
        m, s = self.manifest, self.manifest.stats
        samples = sum(x.samples for x in m.shards)
        formats = s.get("formats", {})
        record_files = {name: n for name, n in formats.items() if name != "text"}
        kinds = " ({}; text in {!r})".format(", ".join(
            f"{n:,} {FORMAT_NAMES[name]}" for name, n in record_files.items()), s["text_field"]) \
            if record_files else ""
        rows = s.get("records", 0)  # a JSON Lines record or a Parquet row counts as a line
        read = "lines" if not rows else "records" if rows == s["lines"] else "lines and records"
        part = f"; part {s['part']} of the input" if s.get("part") else ""
        files = (f"files   {s['files']:,} ({s['bytes'] / 1e6:,.1f} MB{part}), {s['lines']:,} "
                 f"{read}{kinds}, {s['undecodable_bytes']:,} undecodable bytes replaced")
        if s.get("counts_only"):
            counted = [files, f"tokens  {s['raw_tokens']:,} read",
                       f"counts  {m.vocab_size:,} words in {self.output / VOCAB_FILE} (every word "
                       "counted: give it to each part's --vocab)"]
            return "\n".join(counted + [f"time    {self.seconds:.1f} s"])
        lines = [
            files,
            f"tokens  {s['raw_tokens']:,} read, {s['oov_dropped']:,} out of vocabulary dropped, "
            f"{m.total_tokens:,} kept in {s['sentences']:,} sentences",
            f"vocab   {m.vocab_size:,} words (min_count {s['min_count']}"
            + (f"; {s['pruned_words']:,} rare words dropped while counting, past the bound of "
               f"distinct words: counts near it are low)" if s.get("pruned_words") else ")"),
            *([f"phrases {s['phrases']:,} pairs joined in {s['phrase_passes']} pass(es) "
               + (f"(from {s['phrases_file']}" if s.get("phrases_file") else
                  f"(threshold {s['phrase_threshold']:g}")
               + (f"; {s['phrases_not_in_vocab']:,} not in the vocabulary left unjoined"
                  if s.get("phrases_not_in_vocab") else "") + f"; {PHRASES_FILE})"]
              if s.get("phrase_passes") else []),
            f"shards  {len(m.shards):,} ({samples:,} samples) in {self.output}",
            f"time    {self.seconds:.1f} s, {self.workers} worker"
            + ("s" if self.workers > 1 else ""),
        ]
        read = s.get("paths", [])
        shown = ", ".join(read[:10]) + (f" and {len(read) - 10} more" if len(read) > 10 else "")
        return "\n".join([f"read    {shown}", *lines] if read else lines)


def prepare(cfg: PrepareConfig, sentences: Sentences | None = None) -> Summary:
    """Run both passes and publish OUT atomically; UsageError for bad input. The corpus is
    `cfg.inputs` (`-`: standard input) or, from Python, `sentences`."""
    started = time.monotonic()
    if not cfg.inputs and sentences is None:
        raise UsageError("prepare: no INPUT given")
    if cfg.inputs and sentences is not None:
        raise UsageError("prepare: give files or sentences, not both")
    if cfg.inputs.count(STDIN) > 1:
        raise UsageError("prepare: '-' (standard input) given twice")
    if not cfg.output:
        raise UsageError("prepare: no output directory given (-o OUT)")
    out = Path(cfg.output).absolute()
    check_output(out, cfg.overwrite)
    named = [name for name in cfg.inputs if name != STDIN]
    files = find_files(named) if named else []
    share = None
    if cfg.share:
        if sentences is not None or STDIN in cfg.inputs:
            raise UsageError("prepare: --part shares out files, not standard input or sentences")
        share = share_input(files, *cfg.share, cfg.format, cfg.text_field)
        files = share.files
    tokenizer = Tokenizer.from_config(cfg)
    workers = cfg.workers or cores()
    given = None
    if cfg.vocab:  # word2vec.c's -read-vocab: the files' words and counts, summed
        if share:
            share.check_counts(cfg.vocab)
        given = build_vocab(summed_counts(cfg.vocab), cfg.min_count, cfg.max_vocab)
    phrases = Phrases.load(cfg.phrases_file) if cfg.phrases_file else Phrases()
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(atomic_path(out, directory=True))
        copies = stack.enter_context(copied(staging, cfg.inputs, sentences))
        files += list(copies)  # read after the files named
        pieces = split_pieces(files, workers, cfg.encoding, cfg.format, cfg.text_field, share)
        # A compressed file is read in blocks by every worker (`expand`): all of them are
        # used; otherwise no more than there are tasks (many small files share one).
        workers_used = workers if any(p.compression for p in pieces) else \
            min(workers, sum(1 for _ in grouped(pieces)))
        pool = stack.enter_context(parallel(workers_used))
        base, phrases_file = tokenizer, str(staging / PHRASES_FILE)  # workers read it there
        scratch = staging / "counts"
        for number in range(1, cfg.phrases + 1):  # each pass reads the text as joined so far
            counts, pairs, _ = _count(pool, tokenizer, pieces, files, cfg, scratch,
                                      f"phrases {number}/{cfg.phrases}", True)
            phrases = phrases.then(choose(counts, pairs, cfg.min_count, cfg.phrase_threshold))
            del counts, pairs
            phrases.save(Path(phrases_file))
            tokenizer = base.with_phrases(phrases, phrases_file)
        found = len(phrases)
        if given is not None:
            phrases = phrases.within(set(given.words))
        if phrases != tokenizer.phrases:  # read from a file, or left within the vocabulary
            phrases.save(Path(phrases_file))
            tokenizer = base.with_phrases(phrases, phrases_file)
        counted: TextStats | None = None  # with a vocabulary given, the text is read once
        distinct_words = None
        vocab = given
        if vocab is None:
            counts, _, counted = _count(pool, tokenizer, pieces, files, cfg, scratch, "counting")
            distinct_words = len(counts)
            # Counting only: every word, as the parts' counts are summed, then cut (--vocab).
            vocab = build_vocab(counts, 1, 0) if cfg.counts_only else \
                build_vocab(counts, cfg.min_count, cfg.max_vocab)
            del counts
        vocab.save(staging / VOCAB_FILE)
        shards: list[ShardInfo] = []
        kept_sentences = oov = 0
        read = TextStats()
        if not cfg.counts_only:
            packer = ShardPacker(staging, cfg.shard_tokens, cfg.block_tokens)
            stack.callback(packer.abort)  # on an error; a closed packer has nothing to abort
            kept_sentences, oov, read = _encode(pool, tokenizer, pieces, vocab, staging, cfg,
                                                packer)
            shards = packer.close()
            read.raw_tokens = sum(s.tokens for s in shards) + oov
            if counted is None:
                _check_read(read, files, cfg.encoding)
            elif read.raw_tokens != counted.raw_tokens:
                raise UsageError(f"{_describe(files)}: input changed while being read; run again")
        stats = counted or read
        total = sum(s.tokens for s in shards)
        manifest = Manifest(
            vocab_size=len(vocab),
            total_tokens=total,
            shards=shards,
            vocab_hash=vocab.hash,
            tokenizer=tokenizer.settings(phrases_file=str(out / PHRASES_FILE)),
            stats={
                "files": len(files),
                "paths": [copies.get(f, str(f)) for f in files],
                "bytes": share.bytes if share else
                         sum({p.path: p.file_bytes for p in pieces}.values()),
                **dataclasses.asdict(stats),
                "sentences": kept_sentences,
                "oov_dropped": oov,
                "distinct_words": distinct_words,
                "encoding": cfg.encoding,
                "text_field": cfg.text_field,
                "min_count": cfg.min_count,
                "max_vocab": cfg.max_vocab,
                "max_sentence_len": cfg.max_sentence_len,
                "phrase_passes": len(phrases.passes),
                "phrase_threshold": cfg.phrase_threshold,
                "phrases_file": cfg.phrases_file,
                "phrases": len(phrases),
                "phrases_not_in_vocab": found - len(phrases),
                "block_tokens": cfg.block_tokens,
                "shard_tokens": cfg.shard_tokens,
                "counts_only": cfg.counts_only,
                "part": cfg.part,  # K/N, which `join` checks it is given in turn
                "listing": share.listing if share else "",  # and cut from the same input
            },
        )
        manifest.save(staging)
        check_output(out, cfg.overwrite)  # it may have appeared while we worked
    return Summary(out, manifest, time.monotonic() - started, workers_used)


# Bytes that may fail to decode before prepare calls the text mis-encoded: a stray byte or two
# in a big corpus is noise, a share like this is text in another encoding.
UNDECODABLE_SHARE = 1e-4
UNDECODABLE_MIN = 16


def _count(
    pool: Workers, tokenizer: Tokenizer, pieces: list[Piece], files: list[Path],
    cfg: PrepareConfig, scratch: Path, what: str, with_pairs: bool = False,
) -> tuple[Counter[str], dict[str, int], TextStats]:
    """Word counts (and the counts of pairs that may be phrases `with_pairs`, for a phrase pass)
    over every piece (`counting.count`); text in another encoding, or with no words, stops
    here."""
    counts, pairs, stats = counting.count(pool, tokenizer, pieces, scratch, with_pairs,
                                          cfg.min_count, what)
    _check_read(stats, files, cfg.encoding)
    return counts, pairs, stats


def _encode(pool: Workers, tokenizer: Tokenizer, pieces: list[Piece], vocab: Vocab,
            staging: Path, cfg: PrepareConfig, packer: ShardPacker
            ) -> tuple[int, int, TextStats]:
    """Pass 2: every piece's sentences as word ids, packed into shards in the pieces' order;
    returns the sentences kept, the out-of-vocabulary words dropped, and what reading found."""
    parts = staging / "parts"
    parts.mkdir()
    encode = functools.partial(encode_pieces, tokenizer, (str(staging / VOCAB_FILE), vocab.hash),
                               str(parts), cfg.max_sentence_len)
    kept_sentences = oov = 0
    read = TextStats()
    for encoded in pool.map(encode, grouped(expand(pieces, pool.size)), "encoding"):
        _pack(packer, encoded)
        kept_sentences += encoded.sentences
        oov += encoded.oov
        read.add(encoded.read)
    parts.rmdir()
    return kept_sentences, oov, read


def _check_read(stats: TextStats, files: list[Path], encoding: str) -> None:
    """Text in another encoding, or with no words, stops prepare."""
    bad = stats.undecodable_bytes
    if bad > UNDECODABLE_MIN and bad > UNDECODABLE_SHARE * stats.text_bytes:
        where, _, offset = stats.first_undecodable.rpartition(":")
        raise UsageError(
            f"{where}: {bad:,} bytes are not valid {encoding}, the first at byte {int(offset):,};"
            " if the text is in another encoding, pass it (--encoding latin-1, cp1252, ...)"
        )
    if stats.raw_tokens == 0:
        raise UsageError(f"{_describe(files)}: empty corpus (no words in {stats.lines:,} lines)")


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


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier `prepare` output, and that only if asked."""
    parent = next(p for p in out.parents if p.exists())
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{parent}: not writable (read-only or no permission)")
    if not out.exists():
        return
    if not overwrite:
        raise UsageError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file()):
        raise UsageError(f"{out}: exists and is not a `w2vdist prepare` output; not replacing it")


# ---------------------------------------------------------------------------------------------
# Command line.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, PrepareConfig)


def command(args: argparse.Namespace) -> int:
    cfg = settings.from_args(PrepareConfig, args, prefix="prepare.")
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
