"""Phrases: word pairs that occur together far more often than chance, joined into one token
(`new_york`), found as word2vec.c's word2phrase finds them, so that a phrase gets a vector.

Each pass counts the words and the adjacent pairs of each line of the text as the earlier passes
left it, then joins a pair `a b` when

    (count(a b) - min_count) / count(a) / count(b) x words > threshold

with both words seen min_count times and `words` the pass's token count: word2phrase's score,
computed in its float32 arithmetic so that the same pairs pass. Joining runs left to right and
a joined pair does not join the next word in the same pass, so N passes make phrases of up to
2^N words. The pairs are counted in `counting`, within bounds past which the rarest are dropped,
as word2phrase and gensim's Phrases do under theirs.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from w2vdist.errors import UsageError

DELIMITER = "_"
PHRASES_FILE = "phrases.tsv"
_HEADER = "# pass\tfirst\tsecond\tpair count\tscore"

MAX_PASSES = 4  # prepare --phrases N: phrases of up to 2^N words


@dataclass(frozen=True)
class Phrase:
    """A joined pair, with the pair count and score that joined it (phrases.tsv's columns)."""

    first: str
    second: str
    count: int
    score: float


@dataclass(frozen=True)
class Phrases:
    """The pairs each pass joins, in pass order; callable on a line's words."""

    passes: tuple[tuple[Phrase, ...], ...] = ()
    _joins: tuple[dict[str, frozenset[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        joins = []
        for found in self.passes:
            seconds: dict[str, set[str]] = {}
            for p in found:
                seconds.setdefault(p.first, set()).add(p.second)
            joins.append({a: frozenset(b) for a, b in seconds.items()})
        object.__setattr__(self, "_joins", tuple(joins))

    def __len__(self) -> int:
        return sum(map(len, self.passes))

    def __call__(self, words: list[str]) -> list[str]:
        for joins in self._joins:
            if len(words) < 2:
                break
            out: list[str] = []
            i, n = 0, len(words)
            while i < n:
                word = words[i]
                seconds = joins.get(word)
                if seconds is not None and i + 1 < n and words[i + 1] in seconds:
                    out.append(word + DELIMITER + words[i + 1])
                    i += 2
                else:
                    out.append(word)
                    i += 1
            words = out
        return words

    def then(self, found: list[Phrase]) -> "Phrases":
        """These passes and one more."""
        return Phrases((*self.passes, tuple(found)))

    def within(self, words: set[str]) -> "Phrases":
        """Only the joins that make a word of `words` (a fixed vocabulary), or a part of one
        a later pass joins: the others would make a token the vocabulary drops, losing both
        words, where unjoined they are kept."""
        needed, kept = set(words), []
        for found in reversed(self.passes):
            chosen = tuple(p for p in found if p.first + DELIMITER + p.second in needed)
            needed.update(w for p in chosen for w in (p.first, p.second))
            kept.append(chosen)
        return Phrases(tuple(reversed(kept)))

    def save(self, path: Path) -> None:
        path.write_bytes(self._text())

    def sha256(self) -> str:
        """The hash of the file `save` writes, which tokenizer settings name it by."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:  # once: every piece sent to a worker names the file by it
        return hashlib.sha256(self._text()).hexdigest()

    def _text(self) -> bytes:
        lines = [_HEADER] + [f"{n}\t{p.first}\t{p.second}\t{p.count}\t{p.score:.6g}"
                             for n, found in enumerate(self.passes, 1) for p in found]
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> "Phrases":
        """The phrases `prepare` wrote; UsageError if the file is gone or not the one named."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the phrases prepare joined ({exc.strerror}); "
                             "text cannot be tokenized as prepare did without them") from None
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise UsageError(f"{path}: not the phrases file prepare wrote (its sha256 differs)")
        lines = data.decode("utf-8", errors="replace").splitlines()
        if not lines or lines[0] != _HEADER:
            raise UsageError(f"{path}: not a phrases.tsv (its first line is not "
                             f"{_HEADER!r}, as prepare writes it)")
        passes: list[list[Phrase]] = []
        for n, line in enumerate(lines[1:], 2):
            try:
                number, first, second, count, score = line.split("\t")
                if not max(1, len(passes)) <= int(number) <= MAX_PASSES:
                    raise ValueError("passes out of order, or more than prepare makes")
                while len(passes) < int(number):
                    passes.append([])
                passes[-1].append(Phrase(first, second, int(count), float(score)))
            except ValueError:
                raise UsageError(f"{path}:{n}: not a phrases.tsv line (pass, first, second, "
                                 f"pair count, score; in pass order): {line[:80]!r}") from None
        return cls(tuple(map(tuple, passes)))


def choose(words: Counter[str], pairs: dict[str, int], min_count: int,
           threshold: float) -> list[Phrase]:
    """The pairs word2phrase joins, by count (most frequent first), then by pair."""
    candidates = [(key, c) for key, c in pairs.items() if c > min_count]
    firsts, seconds = zip(*(key.split(" ") for key, _ in candidates)) if candidates else ((), ())
    pa = np.array([words[a] for a in firsts], dtype=np.int64)
    pb = np.array([words[b] for b in seconds], dtype=np.int64)
    pab = np.array([c for _, c in candidates], dtype=np.int64)
    total = np.float32(words.total())
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (pab - min_count).astype(np.float32) / pa.astype(np.float32) \
            / pb.astype(np.float32) * total
    keep = (pa >= min_count) & (pb >= min_count) & (score > np.float32(threshold))
    found = [Phrase(firsts[i], seconds[i], int(pab[i]), float(score[i]))
             for i in np.flatnonzero(keep)]
    found.sort(key=lambda p: (-p.count, p.first, p.second))
    return found
