"""`w2vdist prepare --phrases`: the pairs word2vec.c's word2phrase joins, joined again when new
text is tokenized. The reference is word2phrase itself (tests/reference/word2phrase.c, as
Google released it with word2vec), compiled here."""

from __future__ import annotations

import collections
import pickle
import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.test_prepare import files_of, prep, sentences
from w2vdist.corpus import counting
from w2vdist.corpus import phrases as corpus_phrases
from w2vdist.corpus import pieces as corpus_pieces
from w2vdist.corpus import text as corpus_text
from w2vdist.corpus.phrases import Phrase, Phrases, choose
from w2vdist.corpus.shards import Manifest
from w2vdist.corpus.tokenize import Tokenizer
from w2vdist.corpus.vocab import Vocab
from w2vdist.errors import UsageError

PLANTED = ["new york city", "new york", "los angeles", "united states", "united nations"]


def planted_corpus(path: Path, lines: int = 6000, seed: int = 0) -> Path:
    """Zipfian filler with planted collocations (`new york city` for a second pass). Every
    line starts with `bos` and ends with `eos`: word2phrase also counts the pair a line's last
    word makes with the next line's first (which it never joins), so those are always the
    same pair, which no line holds."""
    rng = random.Random(seed)
    filler = [f"f{i}" for i in range(400)]
    weights = [1 / (i + 1) for i in range(len(filler))]
    out = []
    for _ in range(lines):
        words = rng.choices(filler, weights, k=rng.randint(3, 14))
        for phrase in PLANTED:
            if rng.random() < 0.05:
                words.insert(rng.randrange(len(words) + 1), phrase)
        if rng.random() < 0.03:  # the words of a phrase also apart
            words.insert(rng.randrange(len(words) + 1), rng.choice(["new", "york", "city"]))
        out.append(" ".join(["bos", *words, "eos"]))
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.fixture(scope="module")
def word2phrase(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = Path(__file__).parent / "reference" / "word2phrase.c"
    binary = tmp_path_factory.mktemp("word2phrase") / "word2phrase"
    subprocess.run(["gcc", "-O2", "-o", binary, source, "-lm", "-pthread"], check=True)
    return binary


def run_word2phrase(binary: Path, corpus: Path, out: Path, passes: int,
                    threshold: float = 100, min_count: int = 5) -> list[list[str]]:
    """word2phrase run `passes` times, each on the last one's output: its lines of words.
    It holds file names in 60 bytes, so it runs in their directory."""
    name = corpus.name
    for n in range(passes):
        target = f"{out.name}.{n}"
        subprocess.run([binary, "-train", name, "-output", target, "-threshold", str(threshold),
                        "-min-count", str(min_count), "-debug", "0"], check=True,
                       stdout=subprocess.DEVNULL, cwd=out.parent)
        name = target
    return [line.split() for line in (out.parent / name).read_text().splitlines()]


@pytest.mark.parametrize("passes", [1, 2])
def test_prepare_joins_the_pairs_word2phrase_joins(word2phrase: Path, tmp_path: Path,
                                                  passes: int) -> None:
    corpus = planted_corpus(tmp_path / "corpus.txt")
    joined = run_word2phrase(word2phrase, corpus, tmp_path / "w2p", passes, threshold=50)
    counts = Counter(w for line in joined for w in line)
    expected = [kept for line in joined if (kept := [w for w in line if counts[w] >= 5])]

    out = tmp_path / "out"
    assert prep(corpus, out=out, min_count=5, phrases=passes, phrase_threshold=50,
                tokenizer="whitespace", no_lowercase=True, normalize="none") == 0
    assert sentences(out) == expected
    words = set(w for line in expected for w in line)
    planted = {"new_york", "los_angeles", "united_states", "united_nations"}
    assert planted <= words and ("new_york_city" in words) == (passes == 2)
    stats = Manifest.load(out).stats
    assert stats["phrase_passes"] == passes and stats["phrases"] == len(
        Phrases.load(out / "phrases.tsv"))


def test_joining_runs_left_to_right_without_chaining_in_a_pass() -> None:
    one = Phrases().then([Phrase("a", "b", 9, 200.0), Phrase("b", "c", 9, 300.0)])
    assert one(["a", "b", "c", "b", "c"]) == ["a_b", "c", "b_c"]
    assert one(["x", "a"]) == ["x", "a"] and one([]) == []
    two = one.then([Phrase("a_b", "c", 9, 200.0)])
    assert two(["a", "b", "c", "a", "b"]) == ["a_b_c", "a_b"]
    assert len(two) == 3 and len(two.passes) == 2


def test_the_score_is_word2phrase_s() -> None:
    """(count(a b) - min_count) / count(a) / count(b) x words > threshold, both words and the
    pair seen more than min_count times; sorted by pair count. (Powers of two: word2phrase's
    float32 arithmetic is exact on them.)"""
    words = Counter({"a": 8, "b": 16, "c": 4, "d": 2, "e": 8, "f": 8})
    words["filler"] = 1024 - words.total()
    pairs = Counter({"a b": 7, "a c": 5, "d e": 4, "e f": 5, "b a": 4})
    # a b: (7-3)/8/16*1024 = 32; a c: (5-3)/8/4*1024 = 64; d e: d below min_count;
    # e f: (5-3)/8/8*1024 = 32; b a: (4-3)/16/8*1024 = 8
    found = choose(words, pairs, min_count=3, threshold=16)
    assert found == [Phrase("a", "b", 7, 32.0), Phrase("a", "c", 5, 64.0),
                     Phrase("e", "f", 5, 32.0)]
    assert choose(words, pairs, min_count=3, threshold=32) == [found[1]]  # strictly above
    assert choose(words, pairs, min_count=5, threshold=1) == [Phrase("a", "b", 7, 16.0)]
    assert choose(words, Counter(), min_count=5, threshold=1) == []
    # (6-3)/10/10*1000 is 30, but 30.0000019 in word2phrase's float32, so it joins the pair at
    # a threshold of 30 (checked with the binary): so does prepare.
    tie = Counter({"a": 10, "b": 10, "filler": 980})
    assert [p.count for p in choose(tie, Counter({"a b": 6}), min_count=3, threshold=30)] == [6]


def test_new_text_is_tokenized_with_the_phrases(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = planted_corpus(tmp_path / "corpus.txt")
    assert prep(corpus, out=tmp_path / "one", phrases=2, phrase_threshold=50) == 0
    manifest = Manifest.load(tmp_path / "one")
    tokenizer = Tokenizer.from_settings(manifest.tokenizer)
    assert tokenizer("New York City, and LOS ANGELES!") == ["new_york_city", "and", "los_angeles"]
    assert manifest.tokenizer["phrases_file"] == str(tmp_path / "one" / "phrases.tsv")

    # Pickled for a worker, it names the phrases file instead of carrying the pairs.
    assert b"angeles" not in pickle.dumps(tokenizer) and b"angeles" in pickle.dumps(
        tokenizer.phrases)
    assert pickle.loads(pickle.dumps(tokenizer)).phrases == tokenizer.phrases

    # The same shards from two workers reading byte ranges.
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 5000)
    assert len(corpus_pieces.split_pieces([corpus], 2)) > 4
    assert prep(corpus, out=tmp_path / "two", phrases=2, phrase_threshold=50, workers=2) == 0
    shards = {n: b for n, b in files_of(tmp_path / "two").items() if n.endswith(".tar")}
    assert shards == {n: b for n, b in files_of(tmp_path / "one").items() if n.endswith(".tar")}

    # Without the file, or with another one, text cannot be tokenized as prepare did.
    path = tmp_path / "one" / "phrases.tsv"
    path.write_text(path.read_text().replace("york", "yorke"))
    with pytest.raises(UsageError, match="phrases.tsv: not the phrases file prepare wrote"):
        Tokenizer.from_settings(manifest.tokenizer)
    shutil.move(path, tmp_path / "elsewhere.tsv")
    with pytest.raises(UsageError, match="phrases.tsv: cannot read the phrases prepare joined"):
        Tokenizer.from_settings(manifest.tokenizer)


@pytest.mark.parametrize("bound", ["MAX_PAIRS", "MAX_WORDS"])
def test_counts_stay_bounded(bound: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys) -> None:
    """Past a worker's share of MAX_PAIRS distinct pairs (MAX_WORDS words; WORKER_MAX at
    least) the rarest are dropped as they are counted; frequent words and phrases still
    pass, and the summary and manifest say how many words were dropped."""
    seen: list[int] = []
    prune = counting.prune

    def recorded(counts: collections.Counter[str], limit: int) -> int:
        dropped = prune(counts, limit)
        seen.append(len(counts))
        return dropped

    monkeypatch.setattr(counting, bound, 200)
    monkeypatch.setattr(counting, "WORKER_MAX", 100)
    monkeypatch.setattr(counting, "FLUSH_WORDS", 1000)  # words are counted (and bounded) so
    monkeypatch.setattr(counting, "prune", recorded)
    corpus = planted_corpus(tmp_path / "corpus.txt", lines=3000)
    assert prep(corpus, out=tmp_path / "out", phrases=1, phrase_threshold=50) == 0
    assert len(seen) > 3 and max(seen) <= 100  # while counting, not only once merged
    joined = {(p.first, p.second) for p in Phrases.load(tmp_path / "out" / "phrases.tsv").passes[0]}
    assert {("new", "york"), ("los", "angeles"), ("united", "states")} <= joined
    assert {"new_york", "los_angeles", "f0", "f1"} <= set(Vocab.load(tmp_path / "out").words)
    pruned = Manifest.load(tmp_path / "out").stats["pruned_words"]
    said = "rare words dropped while counting" in capsys.readouterr().out
    assert (pruned > 0 and said) if bound == "MAX_WORDS" else (pruned == 0 and not said)
    # Two workers: the bounds travel with the calls; the merged partitions are bounded too.
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 20_000)
    assert prep(corpus, out=tmp_path / "two", phrases=1, phrase_threshold=50, workers=2) == 0
    assert {"new_york", "los_angeles", "f0", "f1"} <= set(Vocab.load(tmp_path / "two").words)
    assert (Manifest.load(tmp_path / "two").stats["pruned_words"] > 0) == (bound == "MAX_WORDS")


def test_a_phrases_file_and_a_vocabulary_from_an_earlier_run(tmp_path: Path, capsys) -> None:
    """Given a run's vocab.tsv and phrases.tsv, prepare tokenizes (here, the same) text as that
    run did: the same shards and vocabulary. `york city` is a phrase that never forms (`new york
    city` becomes `new_york city`): not in the vocabulary, it is left out of the phrases file.
    (One pass: after two, a phrase the second absorbed can fall below min_count, and is then
    left unjoined too, as below.)"""
    corpus = planted_corpus(tmp_path / "corpus.txt")
    first = tmp_path / "first"
    assert prep(corpus, out=first, phrases=1, phrase_threshold=50) == 0
    again = tmp_path / "again"
    assert prep(corpus, out=again, vocab=first / "vocab.tsv",
                phrases_file=first / "phrases.tsv") == 0
    assert (f"phrases 4 pairs joined in 1 pass(es) (from {first / 'phrases.tsv'}; 1 not in the "
            "vocabulary left unjoined; phrases.tsv)") in capsys.readouterr().out
    kept = {n: b for n, b in files_of(first).items() if n.endswith((".tar", "vocab.tsv"))}
    assert kept and kept == {n: b for n, b in files_of(again).items() if n in kept}
    phrases = Phrases.load(first / "phrases.tsv").passes[0]
    assert Phrases.load(again / "phrases.tsv").passes[0] == tuple(
        p for p in phrases if (p.first, p.second) != ("york", "city"))
    tokenizer = Tokenizer.from_settings(Manifest.load(again).tokenizer)
    assert tokenizer("New York City, los angeles") == ["new_york", "city", "los_angeles"]
    assert prep(corpus, out=tmp_path / "both", phrases=1, phrases_file=first / "phrases.tsv") == 2
    assert "give either phrases to find (--phrases N) or a file of them" in capsys.readouterr().err


def test_with_a_vocabulary_only_its_phrases_are_joined(tmp_path: Path, capsys) -> None:
    """A phrase the given vocabulary lacks would be a token it drops, losing both words: it is
    left unjoined, and so are the parts of a dropped longer phrase that only it needs."""
    corpus = planted_corpus(tmp_path / "corpus.txt")
    first = tmp_path / "first"
    assert prep(corpus, out=first, phrases=2, phrase_threshold=50) == 0
    lines = (first / "vocab.tsv").read_text().splitlines()
    assert {"new_york_city", "new_york", "los_angeles"} <= {line.split("\t")[0] for line in lines}
    vocab = tmp_path / "vocab.tsv"  # new_york is there, new_york_city and los_angeles are not
    vocab.write_text("".join(line + "\n" for line in lines
                             if line.split("\t")[0] not in ("new_york_city", "los_angeles"))
                     + "los\t300\nangeles\t300\n")  # always joined, so far never counted
    out = tmp_path / "out"
    assert prep(corpus, out=out, vocab=vocab, phrases=2, phrase_threshold=50) == 0
    assert "3 not in the vocabulary left unjoined" in capsys.readouterr().out
    joined = Phrases.load(out / "phrases.tsv")
    pairs = {(p.first, p.second) for found in joined.passes for p in found}
    assert ("new", "york") in pairs and ("los", "angeles") not in pairs
    assert ("new_york", "city") not in pairs
    words = [w for s in sentences(out) for w in s]
    assert words.count("los") == words.count("angeles") >= 250 and "new_york" in words
    stats = Manifest.load(out).stats
    assert stats["oov_dropped"] == Manifest.load(first).stats["oov_dropped"] == 0
    assert stats["phrases_not_in_vocab"] == 3  # york_city too, which never forms


def test_a_phrase_in_the_vocabulary_keeps_the_joins_that_make_it() -> None:
    ab, cd, abe = Phrase("a", "b", 9, 1.0), Phrase("c", "d", 9, 1.0), Phrase("a_b", "e", 9, 1.0)
    phrases = Phrases(((ab, cd), (abe,)))
    assert phrases.within({"a_b_e", "c"}).passes == ((ab,), (abe,))  # a_b: a part of a_b_e
    assert phrases.within({"c_d", "a_b"}).passes == ((ab, cd), ())
    assert phrases.within({"c_d"})(["a", "b", "e", "c", "d"]) == ["a", "b", "e", "c_d"]


@pytest.mark.parametrize("text, problem", [
    ("new\tyork\t8\t9.5\n", "not a phrases.tsv (its first line is not"),
    (f"{corpus_phrases._HEADER}\n1\tnew\tyork\t8\n", "phrases.tsv:2: not a phrases.tsv line"),
    (f"{corpus_phrases._HEADER}\n2\ta\tb\t8\t9\n1\tc\td\t8\t9\n",
     "phrases.tsv:3: not a phrases.tsv line"),
    # A pass past prepare's four: it made as many empty passes first (a billion: no end).
    (f"{corpus_phrases._HEADER}\n1000000000\ta\tb\t8\t9\n", "phrases.tsv:2: not a phrases.tsv"),
])
def test_a_bad_phrases_file_is_one_line(text: str, problem: str, tmp_path: Path,
                                        capsys) -> None:
    (tmp_path / "phrases.tsv").write_text(text)
    corpus = planted_corpus(tmp_path / "corpus.txt", lines=100)
    assert prep(corpus, out=tmp_path / "out", phrases_file=tmp_path / "phrases.tsv") == 2
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
