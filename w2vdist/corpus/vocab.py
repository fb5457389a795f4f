"""The vocabulary: words sorted by count, most frequent first; a word's id is its row."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2vdist.errors import UsageError
from w2vdist.files import numbered_lines

VOCAB_FILE = "vocab.tsv"
_WHITESPACE = re.compile(r"\s")  # no word2vec format can hold a word containing one


@dataclass(frozen=True)
class Vocab:
    words: list[str]
    counts: np.ndarray  # int64, same order as words, non-increasing

    def __len__(self) -> int:
        return len(self.words)

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def to_tsv(self) -> str:
        return "".join(f"{w}\t{int(c)}\n" for w, c in zip(self.words, self.counts))

    @property
    def hash(self) -> str:
        """Identifies the vocabulary: checkpoints and exports refuse a different one."""
        return hashlib.sha256(self.to_tsv().encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_tsv(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        p = Path(path)
        if p.is_dir():
            p = p / VOCAB_FILE
        words: list[str] = []
        counts: list[int] = []
        for lineno, line in numbered_lines(p, "vocabulary file"):
            # vocab.tsv, or word2vec.c's -save-vocab / gensim's fvocab ("word count")
            line = line.rstrip("\r\n")
            word, sep, count = line.rpartition("\t") if "\t" in line else line.rpartition(" ")
            if not sep or not word or not count.isdigit():
                raise UsageError(f"{p}:{lineno}: expected 'word<TAB>count' or 'word count'")
            if int(count) >= 2**63:
                raise UsageError(f"{p}:{lineno}: the count {count} is over 64 bits")
            words.append(word)
            counts.append(int(count))
        if not words:
            raise UsageError(f"{p}: vocabulary is empty")
        return cls(words, np.asarray(counts, dtype=np.int64))


def summed_counts(paths: list[str]) -> Counter[str]:
    """The words of vocabulary files (or folders holding one) and their counts, summed over
    the files: the parts of a corpus counted apart (`prepare --counts-only`), made one."""
    counts: Counter[str] = Counter()
    for path in paths:
        read = Vocab.load(path)
        counts.update(dict(zip(read.words, read.counts.tolist())))
    return counts


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
