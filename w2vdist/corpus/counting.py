"""Pass 1 of `prepare`: how often each word, and for a phrase pass each adjacent pair of words
in a line, occurs in the corpus.

Each worker process adds the pieces it reads to counters of its own. At the end of the pass
every worker splits its counters into one partition per worker, by a hash of the word that
every process computes alike, and writes them to files; then each worker merges one partition
from every worker's files. The main process only joins the merged partitions, which share no
word. It used to merge one counter per piece itself, which capped a pass at a few workers'
speed: a 40 MB piece's counter took it 0.08 s against 1.8 s of a worker's reading, its pair
counter 1.9 s against 6 s (BENCHMARKS.md, "Counting in the workers").

Counts are exact; only past their bounds (MAX_WORDS, MAX_PAIRS, as word2vec.c's and
word2phrase's ReduceVocab) are the rarest dropped, which of them depending on how the pieces
fell to the workers.
"""

from __future__ import annotations

import functools
import os
import pickle
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from w2vdist.corpus.pieces import Piece, expand, grouped
from w2vdist.corpus.text import TextStats, read_lines, readable
from w2vdist.corpus.tokenize import Tokenizer
from w2vdist.corpus.workers import Workers

FLUSH_WORDS = 1 << 20
# Distinct words and pairs counted, at about 100 bytes each: in all (~3.4 GB each; word2vec.c
# prunes its vocabulary at 21M words, gensim's Phrases at 40M), and by each worker, for the
# pieces it reads, its share of that or at least WORKER_MAX. Past a bound the rarest are dropped.
MAX_WORDS = MAX_PAIRS = 1 << 25
WORKER_MAX = 1 << 22
# This process's counts in the pass under way (a worker's, or this one's with one worker).
_words: Counter[str] = Counter()
_pairs: Counter[str] = Counter()


def count(pool: Workers, tokenizer: Tokenizer, pieces: list[Piece], scratch: Path,
          with_pairs: bool, min_pair_count: int, what: str
          ) -> tuple[Counter[str], dict[str, int], TextStats]:
    """(word counts, counts of the pairs seen more than min_pair_count times: the only ones a
    phrase can be made of, stats) over every piece; `scratch`: a directory for the partitions,
    made and removed here."""
    pool.each(_clear)  # a pass that failed in this process may have left counts
    stats = TextStats()
    bounds = Bounds(max(WORKER_MAX, MAX_WORDS // pool.size),
                    max(WORKER_MAX, MAX_PAIRS // pool.size))
    for group_stats in pool.map(functools.partial(count_pieces, tokenizer, with_pairs, bounds),
                                grouped(expand(pieces, pool.size)), what):
        stats.add(group_stats)
    if pool.executor is None:  # counted here, in full: nothing to split or merge
        words, pairs = _words.copy(), _frequent(_pairs, min_pair_count)
        _clear()
        return words, pairs, stats
    scratch.mkdir()
    pool.each(functools.partial(_write_partitions, str(scratch), pool.size))
    words = Counter()
    pairs = {}
    merge = functools.partial(_merge_partition, str(scratch), min_pair_count,
                              Bounds(MAX_WORDS // pool.size, MAX_PAIRS // pool.size))
    for part_words, part_pairs, pruned in pool.map(merge, range(pool.size), f"{what}: merging"):
        dict.update(words, part_words)  # partitions share no word: no counts to add up
        pairs.update(part_pairs)
        stats.pruned_words += pruned
    scratch.rmdir()
    return words, pairs, stats


@dataclass(frozen=True)
class Bounds:
    """Distinct words and pairs a counter may hold (`prune` past them)."""

    words: int
    pairs: int


def count_pieces(tokenizer: Tokenizer, with_pairs: bool, bounds: Bounds, pieces: list[Piece]
                 ) -> TextStats:
    """Add the pieces' words (and pairs) to this process's counters, within `bounds`."""
    stats = TextStats()
    words: list[str] = []
    for piece in readable(pieces):
        for text, _ in read_lines(piece, stats):
            line = tokenizer(text)
            words += line
            if with_pairs and len(line) > 1:
                _pairs.update(map(" ".join, zip(line, line[1:])))
                if len(_pairs) > bounds.pairs:
                    prune(_pairs, bounds.pairs)
            if len(words) >= FLUSH_WORDS:
                _add(words, stats, bounds)
    _add(words, stats, bounds)
    return stats


def _add(words: list[str], stats: TextStats, bounds: Bounds) -> None:
    _words.update(words)  # a list at a time: counted in C
    if len(_words) > bounds.words:
        stats.pruned_words += prune(_words, bounds.words)
    stats.raw_tokens += len(words)
    words.clear()


def prune(counts: Counter[str], limit: int) -> int:
    """Drop the rarest until at most half of `limit` remain (word2vec.c's ReduceVocab: the
    floor rises one count at a time); how many were dropped."""
    before, floor = len(counts), 1
    while len(counts) > limit // 2:
        for key in [k for k, c in counts.items() if c <= floor]:
            del counts[key]
        floor += 1
    return before - len(counts)


def _clear() -> None:
    _words.clear()
    _pairs.clear()


def _partition(key: str, partitions: int) -> int:
    """The same in every process (`hash` of a string is salted per process)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


def _write_partitions(scratch: str, partitions: int) -> None:
    """This process's counters split into `partitions` files (named by partition and process),
    then emptied."""
    parts: list[tuple[dict[str, int], dict[str, int]]] = [({}, {}) for _ in range(partitions)]
    for word, n in _words.items():
        parts[_partition(word, partitions)][0][word] = n
    for pair, n in _pairs.items():
        parts[_partition(pair, partitions)][1][pair] = n
    _clear()
    for number, part in enumerate(parts):
        with open(os.path.join(scratch, f"{number:05d}-{os.getpid()}.pickle"), "wb") as f:
            pickle.dump(part, f, pickle.HIGHEST_PROTOCOL)


def _merge_partition(scratch: str, min_pair_count: int, bounds: Bounds, number: int
                     ) -> tuple[Counter[str], dict[str, int], int]:
    """One partition's counts from every process's file (removed once read), and how many
    distinct words its bound dropped."""
    words: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    pruned = 0
    for path in sorted(Path(scratch).glob(f"{number:05d}-*.pickle")):
        with open(path, "rb") as f:
            part_words, part_pairs = pickle.load(f)
        path.unlink()
        words.update(part_words)
        if len(words) > bounds.words:
            pruned += prune(words, bounds.words)
        pairs.update(part_pairs)
        if len(pairs) > bounds.pairs:
            prune(pairs, bounds.pairs)
    return words, _frequent(pairs, min_pair_count), pruned


def _frequent(pairs: Counter[str], min_count: int) -> dict[str, int]:
    return {pair: n for pair, n in pairs.items() if n > min_count}
