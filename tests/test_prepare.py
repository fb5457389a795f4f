"""`w2vdist prepare`: real text files in, real WebDataset tars read back out."""

from __future__ import annotations

import bz2
import collections
import gc
import gzip
import hashlib
import os
import random
from pathlib import Path

import numpy as np
import pytest
import webdataset

from w2vdist import cli
from w2vdist.corpus import filetypes
from w2vdist.corpus import pieces as corpus_pieces
from w2vdist.corpus import text as corpus_text
from w2vdist.corpus.shards import Manifest, TarWriter, decode_sample
from w2vdist.corpus.tokenize import WORD_DESCRIPTION, Tokenizer
from w2vdist.corpus.vocab import Vocab, build_vocab
from w2vdist.errors import UsageError


def prep(*inputs: str | Path, out: Path, **flags: object) -> int:
    """`w2vdist prepare INPUTS -o OUT --flag-name VALUE ...`, with one worker unless told."""
    argv = [*map(str, inputs), "-o", str(out)]
    for name, value in {"workers": 1, **flags}.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return cli.main(["prepare", *argv])


def read_shards(out: Path) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Every shard's samples, in order, read with webdataset itself."""
    shards = []
    for path in Manifest.load(out).shard_paths(out):
        dataset = webdataset.WebDataset(path, shardshuffle=False, empty_check=False)
        shards.append([decode_sample(sample) for sample in dataset])
    return shards


def sentences(out: Path) -> list[list[str]]:
    """The prepared corpus as sentences of words."""
    words = Vocab.load(out).words
    result = []
    for samples in read_shards(out):
        for tokens, lengths in samples:
            assert tokens.dtype == np.int32 and lengths.dtype == np.int32
            assert lengths.sum() == len(tokens) and (lengths > 0).all()
            for piece in np.split(tokens, np.cumsum(lengths)[:-1]):
                result.append([words[i] for i in piece])
    return result


def random_corpus(seed: int, lines: int, vocab: int = 300) -> str:
    """Zipf-ish words with punctuation, capitals, blank lines and accents."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)] + ["Café", "naïve", "über", "ÉTÉ"]
    weights = [1 / (i + 1) for i in range(len(words))]
    out = []
    for _ in range(lines):
        n = rng.choice([0, 1, 3, 8, 20, 40])
        out.append(" ".join(rng.choices(words, weights, k=n)) + rng.choice(["", ".", " !", ","]))
    return "\n".join(out) + "\n"


def expected_sentences(texts: list[str], out: Path) -> list[list[str]]:
    """Every non-empty line, tokenized, without the words not in the vocabulary."""
    known = set(Vocab.load(out).words)
    kept = ([w for w in Tokenizer()(line) if w in known] for t in texts for line in t.split("\n"))
    return [s for s in kept if s]


def leftovers(out: Path) -> list[str]:
    """OUT and anything named after it (staging or old copies) beside it."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name))


def files_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    """A directory of .txt, .gz and .bz2 files (one nested); texts in the order read."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    texts = [random_corpus(seed, 400) for seed in range(4)]
    (root / "a.txt").write_text(texts[0], encoding="utf-8")
    with gzip.open(root / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write(texts[1])
    with bz2.open(root / "c.bz2", "wt", encoding="utf-8") as f:
        f.write(texts[2])
    (root / "sub" / "d.txt").write_text(texts[3], encoding="utf-8")
    (root / "notes.md").write_text("not corpus text\n")
    return root, texts


# ---------------------------------------------------------------------------------------------
# What comes out.


def test_round_trip(corpus: tuple[Path, list[str]], tmp_path: Path, capsys) -> None:
    root, texts = corpus
    out = tmp_path / "out"
    assert prep(root, out=out, min_count=3) == 0
    assert sentences(out) == expected_sentences(texts, out)

    counts = collections.Counter(w for t in texts for w in Tokenizer()(t))
    vocab = Vocab.load(out)
    assert dict(zip(vocab.words, vocab.counts.tolist())) == {w: counts[w] for w in vocab.words}
    assert set(vocab.words) == {w for w, c in counts.items() if c >= 3}
    assert "café" in vocab.words and "été" in vocab.words

    manifest = Manifest.load(out)
    kept = sum(map(len, expected_sentences(texts, out)))
    assert manifest.total_tokens == kept == sum(s.tokens for s in manifest.shards)
    assert manifest.stats["raw_tokens"] == counts.total()
    assert manifest.stats["oov_dropped"] == counts.total() - kept
    assert manifest.stats["files"] == 4 and manifest.stats["lines"] == 4 * 400
    assert sorted(os.listdir(out)) == ["manifest.json", "shard-000000.tar", "vocab.tsv"]
    assert leftovers(out) == ["out"]
    printed = capsys.readouterr().out
    assert f"{kept:,} kept" in printed and str(out) in printed


def test_vocab_order_min_count_and_max_vocab(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("b a c c\nc b a c\nd c a b e e\n")  # c 5, a 3, b 3, e 2, d 1
    assert prep(text, out=tmp_path / "all", min_count=1) == 0
    vocab = Vocab.load(tmp_path / "all")
    assert vocab.words == ["c", "a", "b", "e", "d"] and vocab.counts.tolist() == [5, 3, 3, 2, 1]

    assert prep(text, out=tmp_path / "min", min_count=3) == 0
    assert Vocab.load(tmp_path / "min").words == ["c", "a", "b"]
    expected = [["b", "a", "c", "c"], ["c", "b", "a", "c"], ["c", "a", "b"]]
    assert sentences(tmp_path / "min") == expected

    assert prep(text, out=tmp_path / "max", min_count=1, max_vocab=2) == 0
    assert Vocab.load(tmp_path / "max").words == ["c", "a"]
    assert Manifest.load(tmp_path / "max").stats["oov_dropped"] == 14 - 8


def test_vocab_never_holds_empty_or_whitespace_words() -> None:
    counts = collections.Counter({"ok": 9, "": 9, "a b": 9, "x\u001cy": 9, "tab\t": 9})
    assert build_vocab(counts, min_count=1, max_vocab=0).words == ["ok"]


def test_long_lines_are_cut_into_sentences(tmp_path: Path) -> None:
    words = [f"w{i % 7}" for i in range(25)]
    text = tmp_path / "t.txt"
    text.write_text(" ".join(words[:12]) + " rare " + " ".join(words[12:]) + "\nw1 w2\n")
    out = tmp_path / "out"
    assert prep(text, out=out, min_count=2, max_sentence_len=10) == 0
    assert [len(s) for s in sentences(out)] == [10, 10, 5, 2]
    assert sum(sentences(out)[:3], []) == words  # "rare" dropped before cutting


def test_samples_and_shards_are_sized_greedily(tmp_path: Path) -> None:
    rng = random.Random(0)
    lines = [" ".join(rng.choices("abcdef", k=rng.randint(1, 12))) for _ in range(300)]
    text = tmp_path / "t.txt"
    text.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert prep(text, out=out, min_count=1, block_tokens=20, shard_tokens=70) == 0
    manifest = Manifest.load(out)
    shards = read_shards(out)
    assert [s.name for s in manifest.shards] == [f"shard-{i:06d}.tar" for i in range(len(shards))]
    for shard, info in zip(shards, manifest.shards):
        assert info.samples == len(shard) and info.tokens == sum(len(t) for t, _ in shard)
        assert info.tokens <= 70
    for info, following in zip(manifest.shards, shards[1:]):
        assert info.tokens + len(following[0][0]) > 70  # closed only when the next overflows
    samples = [sample for shard in shards for sample in shard]
    for (tokens, _), (_, following) in zip(samples, samples[1:]):
        assert len(tokens) <= 20 < len(tokens) + following[0]
    assert [len(s) for s in sentences(out)] == [len(line.split()) for line in lines]


def test_a_sentence_longer_than_a_block_is_a_sample_alone(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("a b\n" + "a " * 30 + "\nb a\n")
    out = tmp_path / "out"
    assert prep(text, out=out, min_count=1, block_tokens=8, shard_tokens=8) == 0
    assert [[len(t) for t, _ in shard] for shard in read_shards(out)] == [[2], [30], [2]]


def test_reading_in_tiny_chunks_and_byte_ranges_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte ranges cut lines (and UTF-8 characters) anywhere; chunks cut long lines at spaces:
    what is read is exactly what reading each file whole gives (for words under a chunk)."""
    path = tmp_path / "t.txt"
    text = "".join([
        "Ünïcödé wörds çà et là\r\n",
        "a " * 50 + "long line " + "é" * 7 + " over many chunks\n",
        random_corpus(3, 200),
        "no final newline ÿ",
    ])  # fmt: skip
    path.write_text(text, encoding="utf-8")
    assert prep(path, out=tmp_path / "whole", min_count=1, max_sentence_len=7) == 0
    monkeypatch.setattr(corpus_text, "CHUNK_BYTES", 16)
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 37)
    monkeypatch.setattr(corpus_pieces, "MAX_RANGE_BYTES", 37)
    assert len(corpus_pieces.split_pieces([path], 1)) > 50
    assert prep(path, out=tmp_path / "cut", min_count=1, max_sentence_len=7) == 0
    assert files_of(tmp_path / "whole") == files_of(tmp_path / "cut")
    assert Manifest.load(tmp_path / "cut").stats["lines"] == text.count("\n") + 1


def test_a_line_without_spaces_is_cut_between_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = "aé€𝄞" * 40
    path = tmp_path / "t.txt"
    path.write_text(line + "\nnext\n", encoding="utf-8")
    monkeypatch.setattr(corpus_text, "CHUNK_BYTES", 16)
    stats = corpus_text.TextStats()
    parts = list(corpus_text.read_lines(corpus_pieces.Piece(0, str(path)), stats))
    assert len(parts) > 10 and all(not done for _, done in parts[:-2])
    assert "".join(text for text, _ in parts[:-1]) == line and parts[-1] == ("next", True)
    assert stats.undecodable_bytes == 0 and stats.lines == 2


def test_manifest_records_settings_and_stats(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_bytes(b"caf\xe9 ok ok\n\nok \xff\xfe fine fine\n")  # caf, ok x3, fine x2
    out = tmp_path / "out"
    assert prep(text, out=out, min_count=2) == 0
    manifest = Manifest.load(out)
    vocab = Vocab.load(out)
    assert manifest.vocab_size == len(vocab) == 2 and manifest.vocab_hash == vocab.hash
    assert manifest.total_tokens == 5
    settings = {"name": "default", "lowercase": True, "normalize": "nfc", "stem": None,
                "pattern": WORD_DESCRIPTION}
    assert manifest.tokenizer == {**settings, "stopwords_file": None, "stopwords": 0}
    stats = manifest.stats
    assert stats["lines"] == 3 and stats["sentences"] == 2 and stats["raw_tokens"] == 6
    assert stats["oov_dropped"] == 1 and stats["undecodable_bytes"] == 3
    assert stats["files"] == 1 and stats["bytes"] == text.stat().st_size
    assert stats["distinct_words"] == 3 and stats["min_count"] == 2
    # Each shard's size and SHA-256, as `sha256sum` gives it: what copies are checked against.
    for shard in manifest.shards:
        data = (out / shard.name).read_bytes()
        assert shard.bytes == len(data) and shard.sha256 == hashlib.sha256(data).hexdigest()


def test_inputs_as_files_globs_and_directories(
    corpus: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, texts = corpus
    out = tmp_path / "out"
    inputs = [root / "sub" / "d.txt", f"{root}/*.txt", root / "a.txt", root / "sub"]
    assert prep(*inputs, out=out, min_count=1) == 0
    assert Manifest.load(out).stats["files"] == 2  # each file read once, in the order named
    assert sentences(out) == expected_sentences([texts[3], texts[0]], out)


def test_a_file_linked_or_named_twice_is_read_once(tmp_path: Path) -> None:
    """Files are one by (device, inode): a hard link, a link to a file or a second name for it
    is the first one again; links to directories are not followed (as `Path.rglob`), broken
    links and other suffixes are not files of the corpus."""
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha beta\n")
    (root / "sub" / "b.txt").write_text("gamma delta\n")
    os.link(root / "a.txt", root / "sub" / "hard.txt")
    (root / "soft.txt").symlink_to(root / "sub" / "b.txt")
    (root / "broken.txt").symlink_to(root / "gone.txt")
    (root / "loop").symlink_to(root)  # would find every file again, forever
    (root / "notes.md").write_text("not text\n")
    found = filetypes.find_files([str(root), str(root / "sub" / "b.txt"), f"{root}/*.txt"])
    assert found == [root / "a.txt", root / "soft.txt"]
    out = tmp_path / "out"
    assert prep(root, out=out, min_count=1) == 0
    assert sentences(out) == [["alpha", "beta"], ["gamma", "delta"]]


def test_files_are_probed_in_order_on_threads(tmp_path: Path) -> None:
    """`probed` returns each file's answer in the files' order, however many runs its threads
    take, and the first error in that order."""
    files = [tmp_path / f"{i:04d}.txt" for i in range(1000)]
    for i, f in enumerate(files):
        f.write_bytes(gzip.compress(b"x\n") if i % 7 == 0 else b"x\n")
    probes = filetypes.probed(filetypes.probe, files)
    assert probes == [(f.stat().st_size, "gzip" if i % 7 == 0 else None)
                      for i, f in enumerate(files)]
    files[300].unlink()
    files[700].unlink()
    with pytest.raises(UsageError, match="0300.txt: cannot read"):
        filetypes.probed(filetypes.probe, files)


def test_tokenizer_options(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("The runner's Running, THE runs!\nthe runners run\n")
    stop = tmp_path / "stop.txt"
    stop.write_text("the\n")
    out = tmp_path / "out"
    assert prep(text, out=out, min_count=1, tokenizer="wordpunct", stem="english",
                stopwords=stop) == 0  # fmt: skip
    assert sentences(out) == [["runner", "'", "s", "run", ",", "run", "!"], ["runner", "run"]]
    settings = Manifest.load(out).tokenizer
    assert (settings["name"], settings["stem"], settings["stopwords"]) == (
        "wordpunct",
        "english",
        1,
    )

    assert prep(text, out=tmp_path / "tt", min_count=1, tokenizer="toktok", no_lowercase=True) == 0
    first = ["The", "runner", "'", "s", "Running", ",", "THE", "runs", "!"]
    assert sentences(tmp_path / "tt")[0] == first
    assert Manifest.load(tmp_path / "tt").tokenizer["lowercase"] is False


# ---------------------------------------------------------------------------------------------
# Bad input, errors and interruptions.


def _make_bad_inputs(tmp: Path) -> None:
    (tmp / "empty_dir").mkdir()
    (tmp / "empty.txt").write_text("\n  \n... !!\n")
    (tmp / "few.txt").write_text("alpha beta gamma alpha\n")
    good = gzip.compress(b"some words here\n" * 5000)
    (tmp / "cut.gz").write_bytes(good[: len(good) // 2])
    (tmp / "fake.bz2").write_bytes(b"BZh9" + b"\x00" * 100)
    (tmp / "ok.txt").write_text("a b c a b c\n")
    (tmp / "taken").mkdir()
    (tmp / "taken" / "x").write_text("")
    os.mkfifo(tmp / "pipe")


BAD_INPUTS = {  # case: (arguments, where {tmp} is the test's directory; expected message)
    "missing": ("{tmp}/nope.txt", "nope.txt: no such file or directory"),
    "no match": ("{tmp}/*.xyz", "*.xyz: no files matched"),
    "only directories match": ("{tmp}/*_dir", "*_dir: no files matched"),
    "not a file": ("{tmp}/pipe", "pipe: not a regular file"),
    "no text files": ("{tmp}/empty_dir", "empty_dir: no .txt, .jsonl, .ndjson, .parquet, .zip, .tar, .gz"),
    "empty corpus": ("{tmp}/empty.txt", "empty.txt: empty corpus"),
    "below min_count": ("{tmp}/few.txt", "no word occurs min_count=5 times"),
    "truncated gzip": ("{tmp}/cut.gz", "cut.gz: cannot read gzip file"),
    "bad bzip2": ("{tmp}/fake.bz2", "fake.bz2: cannot read bzip2 file"),
    "stopwords": ("{tmp}/ok.txt --stopwords {tmp}/no", "no: stopword file not found"),
    "stem": ("{tmp}/ok.txt --stem klingon", "prepare.stem must be one of"),
    "number": ("{tmp}/ok.txt --min-count many", "prepare.min_count must be an integer"),
    "min_count": ("{tmp}/ok.txt --min-count 0", "prepare.min_count must be >= 1"),
    "max_vocab": ("{tmp}/ok.txt --max-vocab -1", "prepare.max_vocab must be >= 0"),
    "shard_tokens": ("{tmp}/ok.txt --shard-tokens 0", "prepare.shard_tokens must be >= 1"),
    "block_tokens": ("{tmp}/ok.txt --block-tokens 0", "prepare.block_tokens must be >= 1"),
    "sentence_len": ("{tmp}/ok.txt --max-sentence-len 1", "prepare.max_sentence_len must be >= 2"),
    "workers": ("{tmp}/ok.txt --workers -1", "prepare.workers must be >= 0"),
    "threshold": ("{tmp}/ok.txt --phrases 1 --phrase-threshold 0",
                  "prepare.phrase_threshold must be > 0"),
    "exists": ("{tmp}/ok.txt -o {tmp}/taken", "taken: already exists; pass --overwrite"),
    "not ours": (
        "{tmp}/ok.txt -o {tmp}/taken --overwrite",
        "taken: exists and is not a `w2vdist prepare` output",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys) -> None:
    _make_bad_inputs(tmp_path)
    template, message = BAD_INPUTS[case]
    argv = template.format(tmp=tmp_path).split()
    out = tmp_path / "out"
    if "-o" not in argv:
        argv += ["-o", str(out)]
    if "--workers" not in argv:
        argv += ["--workers", "1"]
    assert cli.main(["prepare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("w2vdist: ") and err.count("\n") == 1 and message in err, err
    assert leftovers(out) == [] and not list(tmp_path.glob("*.tmp-*"))


def test_worker_error_midway_leaves_nothing(corpus: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = corpus
    good = gzip.compress(b"some words here\n" * 5000)
    (root / "sub" / "z.gz").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    assert prep(root, out=out, min_count=1, workers=2) == 2
    assert leftovers(out) == []


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_crash_while_writing_shards_keeps_the_old_output(
    corpus: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = corpus
    out = tmp_path / "out"
    assert prep(root / "a.txt", out=out, min_count=1) == 0
    before = files_of(out)
    original = TarWriter.write
    written = []

    def write_then_fail(self, sample):  # the disk fills up after two samples
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(sample["__key__"])
        return original(self, sample)

    monkeypatch.setattr(TarWriter, "write", write_then_fail)
    assert prep(root, out=out, overwrite=True, block_tokens=50) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert len(written) == 2
    assert leftovers(out) == ["out"] and files_of(out) == before
    gc.collect()  # the failed shard's tar stream was closed, not left to flush at collection


def test_overwrite_replaces_a_previous_output(tmp_path: Path) -> None:
    first, second = tmp_path / "1.txt", tmp_path / "2.txt"
    first.write_text("a a b\n")
    second.write_text("c c c d\n")
    out = tmp_path / "out"
    assert prep(first, out=out, min_count=1) == 0
    assert prep(second, out=out, min_count=1) == 2
    assert Vocab.load(out).words == ["a", "b"]
    assert prep(second, out=out, min_count=1, overwrite=True) == 0
    assert Vocab.load(out).words == ["c", "d"] and sentences(out) == [["c", "c", "c", "d"]]
    assert leftovers(out) == ["out"]
