"""Corpora that are not files: standard input (`w2vdist prepare -`) and sentences handed over
in Python (`w2vdist.prepare(sentences=...)`, gensim's `sentences`).

prepare reads its input more than once (counting, then encoding) and in pieces on several
workers, where a pipe or a generator can be read once, in order: so either is first copied
into a file in prepare's staging folder, which it then reads as any other and removes before
publishing OUT (the copy takes the corpus's size on disk while prepare runs). Errors name
"standard input" or "sentences", never the copy.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from w2vdist.errors import UsageError

STDIN = "-"  # the input name that means standard input, as for most Unix tools
# Token lists are taken as they are (gensim's sentences): prepare's tokenizer settings that
# would change them default to these instead; any given explicitly still apply.
TOKENS_AS_GIVEN = {"tokenizer": "whitespace", "lowercase": False, "normalize": "none"}
_BATCH = 10_000  # sentences joined and written at a time


class Sentences:
    """Sentences from Python, read once: each a string of text (a paragraph or sentence,
    tokenized by prepare's settings as a file's lines are) or a sequence of tokens (taken as
    they are). All of one kind, which the first says."""

    def __init__(self, items: Iterable[str | Sequence[str]]) -> None:
        if isinstance(items, (str, bytes, Path)):
            raise UsageError("sentences: give an iterable of sentences (strings or lists of "
                             f"tokens), not a single {type(items).__name__}")
        rest = iter(items)
        first = next(rest, None)
        if first is None:
            raise UsageError("sentences: no sentences given")
        self.tokenized = not isinstance(first, str)
        self._items = chain([first], rest)

    def write(self, path: Path) -> None:
        """All the sentences as UTF-8 lines of `path` (token lists joined by spaces)."""
        kind = "a sequence of tokens" if self.tokenized else "a string"
        batch: list[str] = []
        number = 0
        with open(path, "wb") as f:
            for number, item in enumerate(self._items):
                if isinstance(item, str) == self.tokenized:
                    raise UsageError(f"sentences: item {number} is of type "
                                     f"{type(item).__name__}, where the first was {kind}: give "
                                     "one kind")
                line = _line(number, item) if self.tokenized else str(item)
                if "\x00" in line:
                    raise UsageError(f"sentences: item {number} holds a NUL character")
                batch.append(line)
                if len(batch) == _BATCH:
                    _write(f, batch, number)
            _write(f, batch, number)


def _line(number: int, item: object) -> str:
    """A token sequence as one line; a token that is not a non-empty string without
    whitespace is refused, naming it (the word2vec formats cannot hold such a word)."""
    where = f"sentences: item {number}"
    if not isinstance(item, Iterable) or isinstance(item, (bytes, dict)):
        raise UsageError(f"{where} is of type {type(item).__name__}, not a string or a "
                         "sequence of tokens")
    tokens = item if isinstance(item, (list, tuple)) else list(item)
    if not tokens:
        return ""  # an empty line: no sentence, as in a file
    try:
        line = " ".join(tokens)
    except TypeError:
        at, token = next((i, t) for i, t in enumerate(tokens) if not isinstance(t, str))
        raise UsageError(f"{where}: token {at} is of type {type(token).__name__}, not str"
                         ) from None
    if line.split() != list(tokens):  # a token held whitespace, or none but that
        at, token = next((i, t) for i, t in enumerate(tokens) if t.split() != [t])
        if not token:
            raise UsageError(f"{where}: token {at} is empty, which no word2vec file can hold")
        raise UsageError(f"{where}: token {at} ({token!r}) contains whitespace, where the "
                         "tokenizer would split it (join a phrase's words with '_')")
    return line


def _write(f: BinaryIO, batch: list[str], last: int) -> None:
    """Write and empty `batch`, whose last item is item `last`."""
    if not batch:
        return
    try:
        data = ("\n".join(batch) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        bad = next(i for i, line in enumerate(batch) if not line.isascii()
                   and _unencodable(line))
        raise UsageError(f"sentences: item {last - len(batch) + 1 + bad} is not valid Unicode "
                         "(a lone surrogate: text decoded with errors='surrogateescape'?)"
                         ) from None
    f.write(data)
    batch.clear()


def _unencodable(line: str) -> bool:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def copy_stdin(path: Path) -> None:
    """Standard input's bytes into `path`, as they come (compressed or not: prepare reads the
    copy by its content, in --encoding)."""
    if sys.stdin is None:
        raise UsageError("-: no standard input to read")
    if sys.stdin.isatty():
        raise UsageError("-: standard input is a terminal; pipe the corpus in, e.g. "
                         "zcat corpus.gz | w2vdist prepare - -o OUT")
    with open(path, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)


@contextlib.contextmanager
def copied(staging: Path, inputs: Sequence[str], sentences: Sentences | None,
           ) -> Iterator[dict[Path, str]]:
    """Copy standard input (named `-` in `inputs`) or `sentences` into `staging` and yield
    {copy: what to call it}; removed when the block ends, and an error raised in the block
    names what was copied instead of the copy."""
    labels: dict[Path, str] = {}
    folder = staging / ".input"
    if STDIN in inputs or sentences is not None:
        folder.mkdir()
        copy = folder / "corpus"
        labels[copy] = "sentences" if sentences is not None else "standard input"
        if sentences is not None:
            sentences.write(copy)
        else:
            copy_stdin(copy)
    try:
        yield labels
    except UsageError as exc:
        message = str(exc)
        for copy, label in labels.items():
            message = message.replace(str(copy), label)
        if message == str(exc):
            raise
        raise type(exc)(message) from None
    shutil.rmtree(folder, ignore_errors=True)
