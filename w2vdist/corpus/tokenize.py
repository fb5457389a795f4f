"""Turning a line of text into words, identically in `prepare`'s counting and encoding passes.

The text is first put in Unicode normal form (NFC by default: `é` typed as `e` + combining
accent and as one character become the same word). The default tokenizer is fast and
dependency-free: lowercase, then every run of Unicode word characters and combining marks is a
word, so that words of scripts written with marks (Devanagari's vowel signs and virama, Thai,
decomposed Latin, the dot of a lowercased `İ`) stay whole. The nltk tokenizers offered need no
data download. None of them can produce an empty word or one containing whitespace, which the
word2vec formats could not hold.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from w2vdist.corpus.phrases import Phrases
from w2vdist.errors import UsageError
from w2vdist.files import numbered_lines


@functools.cache
def unicode_word() -> re.Pattern[str]:
    """A word: a run of word characters and combining marks (categories Mn, Mc, Me), which
    Python's `\\w` leaves out, cutting words of many scripts into pieces. Built on the first
    line that is not ASCII: finding the marks takes a quarter of a second."""
    ranges: list[list[int]] = []
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me"):
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    marks = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
    return re.compile(rf"[\w{marks}]+")


ASCII_WORD = re.compile(r"\w+", re.ASCII)  # a word of ASCII text, twice as fast there
WORD_DESCRIPTION = f"runs of \\w and combining marks (Unicode {unicodedata.unidata_version})"
STEM_CACHE_WORDS = 1 << 20  # distinct words whose stems are remembered, per process


# Unicode normal forms by the names `corpus.normalize` gives them.
_FORMS: dict[str, Literal["NFC", "NFD", "NFKC", "NFKD"]] = {
    "nfc": "NFC", "nfd": "NFD", "nfkc": "NFKC", "nfkd": "NFKD",
}


class Tokenizer:
    """Callable: one line of text -> its words, after lowercasing, stopwords and stemming.

    Pickles as its settings (`__reduce__`), so a worker process rebuilds its own nltk objects
    and stem cache instead of receiving them.
    """

    def __init__(
        self,
        name: str = "default",
        lowercase: bool = True,
        normalize: str = "nfc",
        stem: str | None = None,
        stopwords: frozenset[str] = frozenset(),
        stopwords_file: str | None = None,
        phrases: Phrases = Phrases(),
        phrases_file: str | None = None,
    ) -> None:
        self.name = name
        self.lowercase = lowercase
        self.normalize = normalize
        self.stem = stem
        self.stopwords = stopwords
        self.stopwords_file = stopwords_file
        self.phrases = phrases
        self.phrases_file = phrases_file
        self._split = _splitter(name)
        self._stem = _stemmer(stem) if stem else None

    @classmethod
    def from_config(cls, cfg: Any) -> "Tokenizer":
        """From a `PrepareConfig`; reads the stopword file, one word per line."""
        stopwords: frozenset[str] = frozenset()
        if cfg.stopwords:
            stopwords = read_stopwords(cfg.stopwords, cfg.lowercase)
        return cls(cfg.tokenizer, cfg.lowercase, cfg.normalize, cfg.stem, stopwords,
                   cfg.stopwords)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "Tokenizer":
        """The tokenizer a manifest (or vectors trained on it) records: the same words out of
        the same text. Stopwords are read again from their file when it is still there
        (without it, they stay in the text: they were never in the vocabulary anyway)."""
        path = settings.get("stopwords_file")
        stopwords: frozenset[str] = frozenset()
        if path and Path(path).is_file():
            stopwords = read_stopwords(path, settings.get("lowercase", True))
        phrases, phrases_file = Phrases(), settings.get("phrases_file")
        if settings.get("phrases"):  # joined words must be joined again: the file must be there
            phrases = Phrases.load(settings["phrases_file"], settings.get("phrases_sha256"))
        return cls(settings.get("name", "default"), settings.get("lowercase", True),
                   settings.get("normalize", "none"), settings.get("stem"), stopwords, path,
                   phrases, phrases_file)

    def with_phrases(self, phrases: Phrases, phrases_file: str | None = None) -> "Tokenizer":
        """This tokenizer, then `phrases` joined; `phrases_file` holds them (`Phrases.save`)."""
        return Tokenizer(self.name, self.lowercase, self.normalize, self.stem, self.stopwords,
                         self.stopwords_file, phrases, phrases_file)

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.name, self.lowercase, self.normalize, self.stem, self.stopwords,
                self.stopwords_file)
        if self.phrases and self.phrases_file:
            # A worker reads the phrases file once (`_phrases_from`), rather than receiving a
            # copy of a table of up to millions of pairs with each piece it is sent.
            return (_tokenizer_with_phrases_file,
                    (args, self.phrases_file, self.phrases.sha256()))
        return (Tokenizer, (*args, self.phrases, self.phrases_file))

    def __call__(self, line: str) -> list[str]:
        if self.normalize != "none":
            line = unicodedata.normalize(_FORMS[self.normalize], line)
        if self.lowercase:
            line = line.lower()
        words = self._split(line)
        if self.stopwords:
            words = [w for w in words if w not in self.stopwords]
        if self._stem is not None:
            words = [s for s in map(self._stem, words) if s]
        if self.phrases.passes:  # O(1), once a line (len would sum every pass)
            words = self.phrases(words)
        return words

    def settings(self, phrases_file: str | None = None) -> dict[str, Any]:
        """What the manifest records, enough to tokenize new text the same way; `phrases_file`:
        where the phrases will be read from, if not where they are now (prepare writes them in
        its staging folder first)."""
        out: dict[str, Any] = {"name": self.name, "lowercase": self.lowercase,
                               "normalize": self.normalize, "stem": self.stem}
        if self.name == "default":
            out["pattern"] = WORD_DESCRIPTION
        out["stopwords_file"] = self.stopwords_file
        out["stopwords"] = len(self.stopwords)
        if self.stopwords:
            joined = "\n".join(sorted(self.stopwords)).encode("utf-8")
            out["stopwords_sha256"] = hashlib.sha256(joined).hexdigest()
        if self.phrases:  # by reference: the file can hold a million pairs
            out["phrases_file"] = phrases_file or self.phrases_file
            out["phrases"] = len(self.phrases)
            out["phrase_passes"] = len(self.phrases.passes)
            out["phrases_sha256"] = self.phrases.sha256()
        return out


def _tokenizer_with_phrases_file(
    settings: tuple[str, bool, str, str | None, frozenset[str], str | None], phrases_file: str,
    sha256: str,
) -> Tokenizer:
    return Tokenizer(*settings, phrases=_phrases_from(phrases_file, sha256),
                     phrases_file=phrases_file)


@functools.lru_cache(maxsize=2)
def _phrases_from(path: str, sha256: str) -> Phrases:
    """A process's copy of a phrases file (the hash, part of the key, tells passes apart)."""
    return Phrases.load(path, sha256)


def read_stopwords(path: str, lowercase: bool) -> frozenset[str]:
    """Stopwords, one per line (blank lines and surrounding whitespace ignored).

    Lowercased when the text is, so that `The` in the file still removes `the`.
    """
    p = Path(path)
    try:
        words = [line.strip() for _, line in numbered_lines(p, "stopword file")]
    except OSError as exc:
        raise UsageError(f"{p}: cannot read stopword file: {exc.strerror or exc}") from None
    return frozenset(w.lower() if lowercase else w for w in words if w)


def _splitter(name: str) -> Callable[[str], list[str]]:
    if name == "default":
        return _words
    if name == "whitespace":
        return _whitespace
    # nltk is imported only when asked for: it takes a second or more to import.
    if name == "wordpunct":
        from nltk.tokenize import WordPunctTokenizer

        return _spaces_normalized(WordPunctTokenizer().tokenize)
    if name == "toktok":
        from nltk.tokenize import ToktokTokenizer

        return _spaces_normalized(ToktokTokenizer().tokenize)
    raise UsageError(f"config: prepare.tokenizer: unknown tokenizer {name!r}")


def _words(line: str) -> list[str]:
    """The line's words: ASCII text (most lines of most corpora; `isascii` is O(1)) holds no
    combining marks, and word characters are the same there in ASCII and Unicode mode."""
    return (ASCII_WORD if line.isascii() else unicode_word()).findall(line)


# A byte-order mark inside text: files that each begin with one (Notepad's "UTF-8 with BOM")
# joined by `cat`. Zero-width and not whitespace to Python, it clung to the next word under
# the whitespace tokenizer, and nltk's made it a word; the default tokenizer skips it (not a
# word character), and the reader drops the one a file begins with.
BOM = "\ufeff"


def _whitespace(line: str) -> list[str]:
    """`str.split`, a byte-order mark counted as a space (`isascii` is O(1): most lines of
    most corpora skip the replace)."""
    return line.split() if line.isascii() else line.replace(BOM, " ").split()


def _spaces_normalized(split: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """`split` applied after turning every whitespace character, and a byte-order mark, into a
    plain space.

    nltk matches with the `regex` engine, whose `\\s` misses characters that Python (and
    word2vec readers using str.split) treat as whitespace, such as U+001C..U+001F; without
    this they could end up inside a word.
    """
    table = {c: " " for c in range(sys.maxunicode + 1) if chr(c).isspace() and c != ord(" ")}
    table[ord(BOM)] = " "
    return lambda line: split(line.translate(table))


def _stemmer(language: str) -> Callable[[str], str]:
    from nltk.stem.snowball import SnowballStemmer

    # Snowball is slow and a corpus repeats its words: remember each word's stem.
    return functools.lru_cache(maxsize=STEM_CACHE_WORDS)(SnowballStemmer(language).stem)
