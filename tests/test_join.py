"""A corpus prepared in parts, as on several machines: each part's words counted apart
(`prepare --counts-only`), each part prepared with the summed counts (`--vocab`), the parts
joined (`w2vdist join`) into what one prepare of the whole makes."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import w2vdist
from benchmarks.prepare_parts import tokens_and_lengths
from tests.test_phrases import planted_corpus
from tests.test_prepare import prep, random_corpus
from tests.test_prepare_inputs import documents, write_parquet
from w2vdist.cli import main
from w2vdist.corpus import counting, filetypes
from w2vdist.corpus import text as corpus_text
from w2vdist.corpus.pieces import share_input
from w2vdist.corpus.shards import Manifest
from w2vdist.corpus.tokenize import Tokenizer
from w2vdist.errors import UsageError


def split_lines(text: str, counts: list[int], where: Path) -> list[Path]:
    """`text`'s lines in files of `counts` lines each (the last takes the rest)."""
    lines, paths, start = text.splitlines(keepends=True), [], 0
    for k, count in enumerate(counts + [len(text.splitlines()) - sum(counts)]):
        paths.append(where / f"part-{k}.txt")
        paths[-1].write_text("".join(lines[start : start + count]))
        start += count
    return paths


def prepare_by_part(corpus: Path, tmp_path: Path, n: int) -> None:
    """What N machines run, `--part K/N` each: counts-K, then shards-K with the summed counts
    (min_count 2), in `tmp_path`."""
    for k in range(n):
        assert prep(corpus, out=tmp_path / f"counts-{k}", counts_only=True, part=f"{k}/{n}") == 0
    summed = ",".join(str(tmp_path / f"counts-{k}") for k in range(n))
    for k in range(n):
        assert prep(corpus, out=tmp_path / f"shards-{k}", vocab=summed, min_count=2,
                    part=f"{k}/{n}") == 0


def test_parts_counted_prepared_and_joined_equal_the_whole_prepared_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = random_corpus(3, 3000)
    (tmp_path / "whole.txt").write_text(text)
    assert prep(tmp_path / "whole.txt", out=tmp_path / "whole", min_count=3,
                shard_tokens=4000) == 0
    parts = split_lines(text, [700, 1500], tmp_path)
    counts = [tmp_path / f"counts-{k}" for k in range(len(parts))]
    for part, out in zip(parts, counts):
        assert prep(part, out=out, counts_only=True) == 0
    assert (f"counts  {Manifest.load(counts[0]).vocab_size:,} words in "
            f"{counts[0] / 'vocab.tsv'}") in capsys.readouterr().out
    assert not list(counts[0].glob("*.tar")) and Manifest.load(counts[0]).total_tokens == 0
    shards = [tmp_path / f"shards-{k}" for k in range(len(parts))]
    for part, out in zip(parts, shards):
        assert prep(part, out=out, vocab=",".join(map(str, counts)), min_count=3,
                    shard_tokens=4000) == 0
    joined, whole = tmp_path / "joined", tmp_path / "whole"
    capsys.readouterr()
    assert main(["join", *map(str, shards), "-o", str(joined)]) == 0
    assert capsys.readouterr().out.startswith(f"joined 3 parts into {joined}: ")

    assert (joined / "vocab.tsv").read_bytes() == (whole / "vocab.tsv").read_bytes()
    for ours, theirs in zip(tokens_and_lengths(joined), tokens_and_lengths(whole)):
        assert np.array_equal(ours, theirs)
    mine, one = Manifest.load(joined), Manifest.load(whole)
    assert mine.total_tokens == one.total_tokens and mine.vocab_hash == one.vocab_hash
    for key in ("raw_tokens", "lines", "sentences", "oov_dropped", "bytes"):
        assert mine.stats[key] == one.stats[key], key
    assert [s.name for s in mine.shards] == [f"shard-{n:06d}.tar" for n in range(len(mine.shards))]
    first = Manifest.load(shards[0]).shards[0]
    assert os.path.samefile(joined / mine.shards[0].name, shards[0] / first.name)  # linked
    assert main(["verify", str(joined)]) == 0


def test_joined_parts_keep_their_phrases(tmp_path: Path) -> None:
    corpus = planted_corpus(tmp_path / "corpus.txt", lines=3000)
    found = tmp_path / "found"
    assert prep(corpus, out=found, phrases=1, phrase_threshold=50) == 0
    parts = split_lines(corpus.read_text(), [1000], tmp_path)
    for k, part in enumerate(parts):
        assert prep(part, out=tmp_path / f"counts-{k}", counts_only=True,
                    phrases_file=found / "phrases.tsv") == 0
    summed = f"{tmp_path / 'counts-0'},{tmp_path / 'counts-1'}"
    for k, part in enumerate(parts):
        assert prep(part, out=tmp_path / f"shards-{k}", vocab=summed,
                    phrases_file=found / "phrases.tsv") == 0
    joined = tmp_path / "joined"
    assert main(["join", str(tmp_path / "shards-0"), str(tmp_path / "shards-1"), "-o",
                 str(joined)]) == 0
    tokenizer = Manifest.load(joined).tokenizer
    assert tokenizer["phrases_file"] == str(joined / "phrases.tsv")
    assert Tokenizer.from_settings(tokenizer)("New York, los angeles") == ["new_york",
                                                                          "los_angeles"]


def test_parts_that_do_not_fit_together_are_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(*argv: str) -> str:
        assert main(list(argv)) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    (tmp_path / "a.txt").write_text(random_corpus(0, 300))
    (tmp_path / "b.txt").write_text(random_corpus(1, 300))
    a, b, counts = tmp_path / "a", tmp_path / "b", tmp_path / "counts"
    assert prep(tmp_path / "a.txt", out=a, min_count=1) == 0
    assert prep(tmp_path / "b.txt", out=b, min_count=1) == 0
    assert prep(tmp_path / "a.txt", out=counts, counts_only=True) == 0
    other = tmp_path / "other-tokens"
    assert prep(tmp_path / "b.txt", out=other, vocab=a, min_count=1, tokenizer="whitespace") == 0
    out = str(tmp_path / "out")
    assert refused("join", str(a), str(b), "-o", out) == \
        f"w2vdist: {b}: its vocabulary is not {a}'s (prepare every part with the same --vocab)"
    assert refused("join", str(a), str(counts), "-o", out) == \
        (f"w2vdist: {counts}: holds counts only (--counts-only); join the parts prepared with "
         "them as --vocab")
    assert refused("join", str(a), str(other), "-o", out).startswith(
        f"w2vdist: {other}: tokenized otherwise than {a} (")
    assert refused("join", str(a), "-o", str(a)) == \
        f"w2vdist: {a}: is one of the parts; join into a new folder"
    assert refused("join", str(a), str(tmp_path / "." / "a"), "-o", out) == \
        f"w2vdist: {tmp_path / 'a'}: given twice; its shards would be trained twice an epoch"
    assert main(["join", str(a), "-o", out]) == 0
    assert refused("join", str(a), "-o", out).endswith("already exists; pass --overwrite to "
                                                       "replace it")
    assert prep(tmp_path / "a.txt", out=tmp_path / "c", counts_only=True, phrases=1) == 2
    assert "cannot find phrases (each part would find others)" in capsys.readouterr().err
    assert prep(tmp_path / "a.txt", out=tmp_path / "c", counts_only=True, vocab=a) == 2
    assert "counts words, which --vocab gives" in capsys.readouterr().err


@pytest.mark.parametrize("key, value, said", [
    ("sentences", [3], "stats.sentences is [3], not an integer"),
    ("lines", True, "stats.lines is true, not an integer"),
    ("formats", {"text": "1"}, 'stats.formats.text is "1", not an integer'),
    ("formats", ["text"], 'stats.formats is ["text"], not an object'),
    ("paths", "a.txt", 'stats.paths is "a.txt", not a list'),
    ("paths", [1], "stats.paths[0] is 1, not a string"),
    ("part", 0, "stats.part is 0, not a string"),
])
def test_a_parts_figures_of_another_type_are_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object, said: str
) -> None:
    """`stats` is left free for a later version, so the manifest reader does not type it; the
    figures join adds up and lists must be prepare's types (a hand edit raised from the sums)."""
    (tmp_path / "a.txt").write_text(random_corpus(0, 300))
    a, b = tmp_path / "a", tmp_path / "b"
    assert prep(tmp_path / "a.txt", out=a, min_count=1) == 0
    assert prep(tmp_path / "a.txt", out=b, vocab=a, min_count=1) == 0
    data = json.loads((b / "manifest.json").read_text())
    data["stats"][key] = value
    (b / "manifest.json").write_text(json.dumps(data))
    assert main(["join", str(a), str(b), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"w2vdist: {b / 'manifest.json'}: unreadable manifest: {said}"
    assert not (tmp_path / "out").exists()


def test_parts_cut_from_another_listing_of_the_input_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Machines cut the input alike only if they list the same files of the same sizes: a
    file added or grown between two machines' prepares would have a line read twice or not
    at all, so counts or parts from another listing are refused by name."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    split_lines(random_corpus(2, 1200), [300, 300, 300], corpus)
    prepare_by_part(corpus, tmp_path, 2)
    with (corpus / "part-1.txt").open("a") as f:  # grows after the parts were prepared
        f.write("a line written later\n")
    summed = f"{tmp_path / 'counts-0'},{tmp_path / 'counts-1'}"
    assert prep(corpus, out=tmp_path / "late", vocab=summed, min_count=2, part="1/2") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"w2vdist: {tmp_path / 'counts-0'}: counted from another listing of the input than this "
        "part's (files added, removed or resized since, or other inputs named): count every "
        "part again")
    # Vocabulary files, not folders, say nothing of the listing; join still refuses the part.
    files = f"{tmp_path / 'counts-0' / 'vocab.tsv'},{tmp_path / 'counts-1' / 'vocab.tsv'}"
    assert prep(corpus, out=tmp_path / "late", vocab=files, min_count=2, part="1/2") == 0
    late = str(tmp_path / "late")
    assert main(["join", str(tmp_path / "shards-0"), late, "-o", str(tmp_path / "j")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"w2vdist: {late}: cut from another listing of the input than {tmp_path / 'shards-0'} "
        "(files added, removed or resized between the parts' prepares, or other inputs "
        "named): prepare the parts again")
    assert main(["join", str(tmp_path / "shards-0"), str(tmp_path / "shards-1"), "-o",
                 str(tmp_path / "j")]) == 0


def test_a_given_vocabulary_reads_the_text_once_and_still_checks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --vocab there is nothing to count: one pass, whose reading still stops text in
    another encoding or without words, as the counting pass does."""
    (tmp_path / "a.txt").write_text(random_corpus(0, 400))
    counted = tmp_path / "counted"
    assert prep(tmp_path / "a.txt", out=counted, min_count=2) == 0

    def no_counting(*args: object, **kwargs: object) -> None:
        raise AssertionError("counted the words of a corpus whose vocabulary was given")

    monkeypatch.setattr(counting, "count", no_counting)
    once = tmp_path / "once"
    assert prep(tmp_path / "a.txt", out=once, vocab=counted, min_count=2) == 0
    assert (once / "vocab.tsv").read_bytes() == (counted / "vocab.tsv").read_bytes()
    for ours, theirs in zip(tokens_and_lengths(once), tokens_and_lengths(counted)):
        assert np.array_equal(ours, theirs)
    mine, theirs = Manifest.load(once).stats, Manifest.load(counted).stats
    for key in ("raw_tokens", "lines", "text_bytes", "sentences", "oov_dropped", "formats"):
        assert mine[key] == theirs[key], key
    assert mine["distinct_words"] is None
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("le café est très bon près de la forêt\n" * 300).encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    capsys.readouterr()
    assert prep(latin, out=tmp_path / "x", vocab=counted) == 2
    assert "not valid utf-8, the first at byte 6" in capsys.readouterr().err
    assert prep(empty, out=tmp_path / "y", vocab=counted) == 2
    assert f"{empty}: empty corpus (no words in 2 lines)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_vocabulary_file_saved_with_a_byte_order_mark_is_the_same_vocabulary(
    tmp_path: Path
) -> None:
    """The mark made the first (most frequent) word another, unknown to the corpus."""
    (tmp_path / "a.txt").write_text(random_corpus(0, 400))
    counted = tmp_path / "counted"
    assert prep(tmp_path / "a.txt", out=counted, min_count=2) == 0
    marked = tmp_path / "vocab.tsv"
    marked.write_bytes(b"\xef\xbb\xbf" + (counted / "vocab.tsv").read_bytes())
    assert prep(tmp_path / "a.txt", out=tmp_path / "again", vocab=marked, min_count=2) == 0
    assert (tmp_path / "again" / "vocab.tsv").read_bytes() == (counted / "vocab.tsv").read_bytes()


@pytest.mark.parametrize("content, problem", [
    (b"the\t5\ncaf\xe9\t3\n", "2: not valid UTF-8"),  # latin-1, as an old tool wrote it
    (b"the 5\nof\n", "2: expected 'word<TAB>count' or 'word count'"),
    (b"the\t99999999999999999999\n", "1: the count 99999999999999999999 is over 64 bits"),
])
def test_a_vocabulary_file_that_cannot_be_read_is_refused_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str
) -> None:
    (tmp_path / "a.txt").write_text(random_corpus(0, 50))
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(content)
    assert prep(tmp_path / "a.txt", out=tmp_path / "out", vocab=vocab) == 2
    assert capsys.readouterr().err == f"w2vdist: {vocab}:{problem}\n"
    assert not (tmp_path / "out").exists()


def test_machines_share_the_input_files_by_part_and_join_them_in_turn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--part K/N` on every machine, the same inputs named: runs of consecutive files of
    about equal bytes, so that the parts joined in turn are the whole."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = random_corpus(5, 2500)
    split_lines(text, [300, 400, 500, 600], corpus)  # five files, the last of 700 lines
    assert prep(corpus, out=tmp_path / "whole", min_count=2) == 0
    n = 2
    probed: list[str] = []  # each file's first bytes are read once, though parts are cut first
    probe = filetypes.probe
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(filetypes, "probe", lambda path: probed.append(path.name) or probe(path))
        assert prep(corpus, out=tmp_path / "probed", part="0/2", counts_only=True) == 0
    assert sorted(probed) == [f"part-{k}.txt" for k in range(5)], probed
    assert re.search(r"^files   3 \([\d.]+ MB; part 0/2 of the input\), 1,200 lines",
                     capsys.readouterr().out, re.M)
    prepare_by_part(corpus, tmp_path, n)
    assert [len(Manifest.load(tmp_path / f"shards-{k}").stats["paths"]) for k in range(n)] == \
        [3, 2]  # 1,200 and 1,300 lines; by count, 2 and 3 files, 700 and 1,800
    shards = [str(tmp_path / f"shards-{k}") for k in range(n)]
    capsys.readouterr()
    assert main(["join", shards[1], shards[0], "-o", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"w2vdist: {shards[1]}: prepared --part 1/2, but joined as part 0/2: give all the "
        "parts, in turn")
    assert main(["join", shards[0], "-o", str(tmp_path / "x")]) == 2
    assert "prepared --part 0/2, but joined as part 0/1" in capsys.readouterr().err
    joined = tmp_path / "joined"
    assert main(["join", *shards, "-o", str(joined)]) == 0
    assert (joined / "vocab.tsv").read_bytes() == (tmp_path / "whole" / "vocab.tsv").read_bytes()
    for ours, theirs in zip(tokens_and_lengths(joined), tokens_and_lengths(tmp_path / "whole")):
        assert np.array_equal(ours, theirs)
    assert Manifest.load(joined).stats["paths"] == Manifest.load(tmp_path / "whole").stats["paths"]

    for part, said in (("2/2", "config: prepare.part must be K/N with 0 <= K < N (got '2/2')"),
                       ("1/9", "prepare: --part 1/9: the input is 5 piece(s) (a plain file's 1 "
                               "MB segments, a table's row groups, a compressed file or an "
                               "archive) for 9 parts; give more input or fewer parts")):
        assert prep(corpus, out=tmp_path / "y", part=part) == 2
        assert capsys.readouterr().err.strip() == f"w2vdist: {said}"
    with pytest.raises(UsageError, match="--part shares out files, not standard input or "):
        w2vdist.prepare(output=tmp_path / "z", sentences=[["a", "b"]], part="0/2")


def test_a_plain_file_or_a_table_is_cut_between_parts_where_workers_cut_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One big plain file or Parquet table shares out too: `--part` cuts a file where workers'
    byte ranges may start (whole segments) and a table between row groups, so the parts read
    their lines as the whole's prepare does, and the joined corpus is the whole's, its
    figures too; a compressed file goes whole to a part. (The parts' stats count a file's
    format in the part that reads its start, so they sum to the whole's.)"""
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 4096)  # 1 MB otherwise
    monkeypatch.setattr(corpus_text, "LONG_LINE_BYTES", 1024)  # 64 KB, under a segment
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(random_corpus(7, 1500))  # 17 segments
    (corpus / "b.txt.gz").write_bytes(gzip.compress(random_corpus(8, 300).encode()))
    (corpus / "c.txt").write_text(" ".join(random_corpus(9, 1100).split()))  # one long line
    write_parquet(corpus / "d.parquet", documents(random_corpus(10, 2000), 1))  # 20 row groups
    assert prep(corpus, out=tmp_path / "whole", min_count=2) == 0
    n = 4
    prepare_by_part(corpus, tmp_path, n)
    read = [[Path(p).name for p in Manifest.load(tmp_path / f"shards-{k}").stats["paths"]]
            for k in range(n)]
    assert read == [["a.txt"], ["a.txt", "b.txt.gz", "c.txt"], ["c.txt", "d.parquet"],
                    ["d.parquet"]], read
    said = re.findall(r"^files .*", capsys.readouterr().out, re.M)[-1]  # the last part's
    assert re.search(r"; part 3/4 of the input\), [\d,]+ records, ", said), said
    joined = tmp_path / "joined"
    assert main(["join", *(str(tmp_path / f"shards-{k}") for k in range(n)), "-o",
                 str(joined)]) == 0
    assert (joined / "vocab.tsv").read_bytes() == (tmp_path / "whole" / "vocab.tsv").read_bytes()
    for ours, theirs in zip(tokens_and_lengths(joined), tokens_and_lengths(tmp_path / "whole")):
        assert np.array_equal(ours, theirs)
    stats, whole = Manifest.load(joined).stats, Manifest.load(tmp_path / "whole").stats
    for figure in ("paths", "files", "bytes", "lines", "records", "raw_tokens", "text_bytes",
                   "sentences", "formats"):
        assert stats[figure] == whole[figure], figure


@pytest.mark.parametrize("sizes, n, shares", [
    ([10] * 10, 3, [3, 4, 3]),
    ([100, 1, 1, 1, 1, 1, 1, 100], 2, [4, 4]),  # as many files each were as many bytes
    ([1, 1, 1, 1, 1000], 2, [4, 1]),
    ([1000, 1, 1, 1], 4, [1, 1, 1, 1]),  # a file each, however uneven
    ([0] * 5, 3, [1, 1, 3]),
])
def test_parts_are_runs_of_files_of_about_equal_bytes(tmp_path: Path, sizes: list[int], n: int,
                                                      shares: list[int]) -> None:
    files = []
    for i, size in enumerate(sizes):
        files.append(tmp_path / f"{i:02d}.txt")
        files[-1].write_bytes(b"x" * size)
    parts = [share_input(files, k, n).files for k in range(n)]
    assert [len(part) for part in parts] == shares and sum(parts, []) == files
