"""`w2vdist synth`: deterministic files that parse, carry the planted structure, and let a real
SGNS trainer (gensim) recover the planted analogies while misaligned vectors cannot."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from w2vdist.corpus import synth
from w2vdist.corpus.config import SynthConfig
from w2vdist.errors import UsageError

SMALL = SynthConfig(seed=7, sentences=20_000)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.write(out, SMALL)
    return out


@pytest.fixture(scope="module")
def counts(small_dir: Path) -> collections.Counter:
    return collections.Counter((small_dir / synth.CORPUS_FILE).read_text().split())


def _read_bytes(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in synth.OUTPUT_FILES}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    spec = SynthConfig(seed=3, sentences=2000)
    synth.write(tmp_path / "a", spec)
    synth.write(tmp_path / "b", spec)
    synth.write(tmp_path / "c", SynthConfig(seed=4, sentences=2000))
    a, b, c = (_read_bytes(tmp_path / d) for d in "abc")
    assert a == b
    for name in (synth.CORPUS_FILE, synth.ANALOGIES_FILE, synth.SIMILARITY_FILE):
        assert a[name] != c[name], name


def test_corpus_is_lowercase_sentences(small_dir: Path) -> None:
    lines = (small_dir / synth.CORPUS_FILE).read_text().split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == SMALL.sentences
    for line in lines:
        words = line.split(" ")
        assert 7 <= len(words) <= 14
        assert all(w.isalpha() and w.islower() and w.isascii() for w in words), line
    settings = json.loads((small_dir / synth.SETTINGS_FILE).read_text())
    assert settings["spec"] == dataclasses.asdict(SMALL)
    assert settings["tokens"] == sum(len(line.split()) for line in lines)


def test_analogy_file_parses_and_words_reach_min_count(small_dir: Path, counts) -> None:
    sections: dict[str, list[list[str]]] = {}
    for line in (small_dir / synth.ANALOGIES_FILE).read_text().splitlines():
        if line.startswith(": "):
            current = sections.setdefault(line[2:], [])
        else:
            current.append(line.split(" "))
    assert list(sections) == ["capital-of", "currency", "gram-plural"]
    for questions in sections.values():
        assert len(questions) == SMALL.pairs * (SMALL.pairs - 1)
        assert all(len(q) == 4 and len(set(q)) == 4 for q in questions)
        assert all(counts[w] >= 5 for q in questions for w in q)
    assert all(b == a + "s" for a, b, _, _ in sections["gram-plural"])
    # a country is the first member of both of its relations
    first_of = {s: {q[0]: q[1] for q in qs} for s, qs in sections.items()}
    assert first_of["capital-of"].keys() == first_of["currency"].keys()


def test_similarity_file_parses_with_three_levels_in_vocabulary(small_dir: Path, counts) -> None:
    lines = (small_dir / synth.SIMILARITY_FILE).read_text().splitlines()
    assert lines[0].startswith("#")
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 3 for r in rows)
    scores = collections.Counter(float(r[2]) for r in rows)
    assert scores == {9.0: 100, 5.0: 100, 1.0: 100}
    assert all(counts[w] >= 5 for r in rows for w in r[:2])
    assert len({frozenset(r[:2]) for r in rows}) == len(rows)


def test_topic_words_cooccur_within_topics_not_across_groups(small_dir: Path) -> None:
    topics = json.loads((small_dir / synth.SETTINGS_FILE).read_text())["topics"]
    topic_of = {w: t for t, (_, words) in enumerate(topics.items()) for w in words.split()}
    per_level = collections.Counter()
    for line in (small_dir / synth.CORPUS_FILE).read_text().splitlines():
        present = sorted({topic_of[w] for w in line.split() if w in topic_of})
        for t1, t2 in itertools.combinations_with_replacement(present, 2):
            level = "same" if t1 == t2 else "sibling" if t1 // 3 == t2 // 3 else "other"
            per_level[level] += 1
    assert per_level["same"] > 2 * per_level["sibling"] > 0
    assert per_level["other"] == 0


def test_filler_frequencies_are_zipfian(counts) -> None:
    lexicon = synth.build_lexicon(SMALL, np.random.default_rng(SMALL.seed))
    filler = np.array([counts[lexicon.words[i]] for i in lexicon.filler[:300]], dtype=float)
    ranks = np.arange(1, len(filler) + 1)
    slope = np.polyfit(np.log(ranks), np.log(filler), 1)[0]
    assert -1.15 < slope < -0.85
    assert filler[0] > 0.05 * sum(counts.values())


def test_write_refuses_to_overwrite_and_leaves_no_temporaries(tmp_path: Path) -> None:
    spec = SynthConfig(sentences=500)
    synth.write(tmp_path, spec)
    with pytest.raises(UsageError, match="corpus.txt: already exists"):
        synth.write(tmp_path, spec)
    synth.write(tmp_path, SynthConfig(sentences=600), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(synth.OUTPUT_FILES)
    assert len((tmp_path / synth.CORPUS_FILE).read_text().splitlines()) == 600
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        synth.write(tmp_path / "file", spec)


def test_bad_settings_name_the_flag() -> None:
    with pytest.raises(UsageError, match="synth.sentences"):
        SynthConfig(sentences=5)
    with pytest.raises(UsageError, match="synth.pairs"):
        SynthConfig(pairs=1)


def test_cli_writes_files_and_says_where(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "out"), "--sentences", "300", "--pairs", "5"])
    assert synth.command(args) == 0
    printed = capsys.readouterr().out
    for name in synth.OUTPUT_FILES:
        assert str(tmp_path / "out" / name) in printed
    questions = (tmp_path / "out" / synth.ANALOGIES_FILE).read_text().splitlines()
    assert len(questions) == 3 * (1 + 5 * 4)


def test_gensim_recovers_planted_structure_and_misaligned_vectors_do_not(small_dir: Path) -> None:
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    model = Word2Vec(
        LineSentence(str(small_dir / synth.CORPUS_FILE)),
        sg=1, negative=5, window=5, sample=1e-3, min_count=5,
        vector_size=50, epochs=5, workers=2, seed=1,
    )
    wv = model.wv
    accuracy, _ = wv.evaluate_word_analogies(str(small_dir / synth.ANALOGIES_FILE))
    pearson, spearman, oov = wv.evaluate_word_pairs(str(small_dir / synth.SIMILARITY_FILE))
    assert accuracy >= 0.9
    assert spearman.statistic > 0.8
    assert oov == 0

    wv.vectors = wv.vectors[np.random.default_rng(0).permutation(len(wv.vectors))]
    wv.fill_norms(force=True)
    shuffled, _ = wv.evaluate_word_analogies(str(small_dir / synth.ANALOGIES_FILE))
    assert shuffled < 0.05
    assert abs(wv.evaluate_word_pairs(str(small_dir / synth.SIMILARITY_FILE))[1].statistic) < 0.3
