"""Corpora that are not files: `w2vdist prepare -` reads standard input, and
`w2vdist.prepare(sentences=...)` takes strings or token lists from Python, as gensim does; both
give the shards the same text in a file gives, and bad items are refused by their number."""

from __future__ import annotations

import gzip
import os
import pty
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import w2vdist
from tests.test_prepare import files_of, leftovers, random_corpus
from w2vdist.corpus.shards import Manifest
from w2vdist.errors import UsageError

FLAGS = ["--min-count", "2", "--shard-tokens", "3000", "--block-tokens", "500"]
SETTINGS = {"min_count": 2, "shard_tokens": 3000, "block_tokens": 500}


def shards_and_vocab(out: Path) -> dict[str, bytes]:
    """Everything prepare wrote but the manifest, whose stats name the input."""
    return {name: data for name, data in files_of(out).items() if name != "manifest.json"}


def prepare_cli(*argv: str, stdin: bytes | int) -> subprocess.CompletedProcess[bytes]:
    feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run([sys.executable, "-m", "w2vdist", "prepare", *argv], **feed,
                          capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("compressed", [False, True])
def test_standard_input_gives_the_shards_of_the_same_file(tmp_path: Path,
                                                          compressed: bool) -> None:
    text = random_corpus(0, 1500).encode()
    (tmp_path / "c.txt").write_bytes(text)
    from_file = prepare_cli(str(tmp_path / "c.txt"), "-o", str(tmp_path / "file"), *FLAGS,
                            stdin=b"")
    piped = prepare_cli("-", "-o", str(tmp_path / "pipe"), *FLAGS,
                        stdin=gzip.compress(text) if compressed else text)
    assert from_file.returncode == 0 and piped.returncode == 0, piped.stderr
    assert len(list((tmp_path / "pipe").glob("shard-*.tar"))) > 2
    assert shards_and_vocab(tmp_path / "pipe") == shards_and_vocab(tmp_path / "file")
    assert Manifest.load(tmp_path / "pipe").stats["paths"] == ["standard input"]
    assert b"read    standard input" in piped.stdout
    assert leftovers(tmp_path / "pipe") == ["pipe"]  # the copy went with the staging folder


def test_standard_input_beside_files_and_its_errors(tmp_path: Path) -> None:
    first, second = random_corpus(1, 400), random_corpus(2, 400)
    (tmp_path / "a.txt").write_text(first, encoding="utf-8")
    (tmp_path / "both.txt").write_text(first + second, encoding="utf-8")
    mixed = prepare_cli(str(tmp_path / "a.txt"), "-", "-o", str(tmp_path / "mixed"), *FLAGS,
                        stdin=second.encode())
    assert mixed.returncode == 0, mixed.stderr
    assert prepare_cli(str(tmp_path / "both.txt"), "-o", str(tmp_path / "one"), *FLAGS,
                       stdin=b"").returncode == 0
    assert (tmp_path / "mixed" / "vocab.tsv").read_bytes() == \
        (tmp_path / "one" / "vocab.tsv").read_bytes()
    assert Manifest.load(tmp_path / "mixed").stats["paths"] == [str(tmp_path / "a.txt"),
                                                                "standard input"]

    out = tmp_path / "bad"
    nul = prepare_cli("-", "-o", str(out), stdin=b"one two\n\x00three\n")
    assert nul.returncode == 2 and nul.stderr.decode().startswith(
        "w2vdist: standard input: not text (a NUL byte at byte 8)")
    assert nul.stderr.count(b"\n") == 1 and leftovers(out) == []
    empty = prepare_cli("-", "-o", str(out), stdin=b"")
    assert empty.returncode == 2 and b"standard input: empty corpus" in empty.stderr
    twice = prepare_cli("-", "-", "-o", str(out), stdin=b"a b\n")
    assert twice.returncode == 2 and b"'-' (standard input) given twice" in twice.stderr
    assert leftovers(out) == []


def test_a_copy_that_cannot_be_written_says_where_and_leaves_nothing(tmp_path: Path) -> None:
    """A file-size limit (as a full disk would) stops the copy of standard input: one line
    naming OUT, exit 1, nothing left beside it."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    done = subprocess.run([sys.executable, "-m", "w2vdist", "prepare", "-", "-o",
                           str(tmp_path / "out")], input=random_corpus(4, 20_000).encode(),
                          capture_output=True, timeout=120, preexec_fn=limited, check=False)
    assert done.returncode == 1
    assert done.stderr.decode() == f"w2vdist: {tmp_path / 'out'}: File too large\n"
    assert list(tmp_path.iterdir()) == []


def test_a_terminal_on_standard_input_is_refused_not_waited_on(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        done = prepare_cli("-", "-o", str(tmp_path / "out"), stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2 and b"standard input is a terminal; pipe the corpus in" in \
        done.stderr
    assert leftovers(tmp_path / "out") == []


def test_sentences_from_python_as_strings_and_as_token_lists(tmp_path: Path) -> None:
    text = random_corpus(3, 1500).replace("w1 ", "W1 ")  # case that token lists keep
    (tmp_path / "c.txt").write_text(text, encoding="utf-8")
    lines = text.splitlines()
    w2vdist.prepare(tmp_path / "c.txt", tmp_path / "file", **SETTINGS)
    summary = w2vdist.prepare(output=tmp_path / "strings", sentences=lines, **SETTINGS)
    assert shards_and_vocab(tmp_path / "strings") == shards_and_vocab(tmp_path / "file")
    assert summary.manifest.stats["paths"] == ["sentences"]
    assert "read    sentences" in str(summary)

    # Token lists, from a generator (read once), are taken as they are: no lowercasing,
    # which is what prepare does with the whitespace tokenizer on the same text.
    w2vdist.prepare(tmp_path / "c.txt", tmp_path / "as-is", tokenizer="whitespace",
                    lowercase=False, normalize="none", **SETTINGS)
    tokens = (line.split() if i % 3 == 0 else tuple(line.split()) if i % 3 == 1
              else iter(line.split()) for i, line in enumerate(lines))  # any sequence
    summary = w2vdist.prepare(output=tmp_path / "tokens", sentences=tokens, **SETTINGS)
    assert shards_and_vocab(tmp_path / "tokens") == shards_and_vocab(tmp_path / "as-is")
    assert "W1\t" in (tmp_path / "tokens" / "vocab.tsv").read_text()
    assert summary.manifest.tokenizer["name"] == "whitespace"
    assert not summary.manifest.tokenizer["lowercase"]
    # Settings given explicitly still apply to token lists.
    w2vdist.prepare(output=tmp_path / "lower", sentences=[line.split() for line in lines],
                    lowercase=True, **SETTINGS)
    assert "W1\t" not in (tmp_path / "lower" / "vocab.tsv").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "as-is", "c.txt", "file", "lower", "strings", "tokens"]


@pytest.mark.parametrize("items, message", [
    ([["a", "new york"]], "item 0: token 1 ('new york') contains whitespace"),
    ([["a"], ["b", "\tc"]], "item 1: token 1 ('\\tc') contains whitespace"),
    ([["a", ""]], "item 0: token 1 is empty"),
    ([["a"], [""]], "item 1: token 0 is empty"),  # alone, it would pass for an empty line
    ([["a", "b\nc"]], "item 0: token 1 ('b\\nc') contains whitespace"),
    ([["a\u00a0b"]], "item 0: token 0 ('a\\xa0b') contains whitespace"),  # no-break space
    ([["ok"]] * 12_000 + [iter(["a", "b c"])], "item 12000: token 1 ('b c') contains"),
    ([["ok"]] * 3 + [["a", "\x00"]], "item 3 holds a NUL character"),
    ([["a", 3]], "item 0: token 1 is of type int, not str"),
    (["a b", ["c"]], "item 1 is of type list, where the first was a string: give one kind"),
    ([("a",), "b"], "item 1 is of type str, where the first was a sequence of tokens"),
    ([b"a b"], "item 0 is of type bytes, not a string or a sequence of tokens"),
    ([7], "item 0 is of type int, not a string or a sequence of tokens"),
    (["a\x00b"], "item 0 holds a NUL character"),
    (["ok"] * 12_000 + ["\udcff"], "item 12000 is not valid Unicode"),
    ("the cat sat", "not a single str"),
    ([], "no sentences given"),
])
def test_bad_sentences_are_refused_by_their_number(tmp_path: Path, items: object,
                                                   message: str) -> None:
    with pytest.raises(UsageError) as refused:
        w2vdist.prepare(output=tmp_path / "out", sentences=items)
    assert str(refused.value).startswith("sentences: ") and message in str(refused.value)
    assert leftovers(tmp_path / "out") == []


def test_sentences_and_files_are_not_mixed_up(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give a corpus in Python as sentences="):
        w2vdist.prepare([["a", "b"]], tmp_path / "out")
    with pytest.raises(UsageError, match="give files or sentences, not both"):
        w2vdist.prepare(tmp_path / "c.txt", tmp_path / "out", sentences=["a b"])
    with pytest.raises(UsageError, match="encoding applies to files, not to sentences"):
        w2vdist.prepare(output=tmp_path / "out", sentences=["a b"], encoding="latin-1")
    with pytest.raises(UsageError, match=r"no output directory given \(-o OUT\)"):
        w2vdist.prepare(sentences=["a b"])
    assert list(tmp_path.iterdir()) == []
