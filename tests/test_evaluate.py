"""Analogy and similarity scores equal gensim's on the same vectors; `eval` and `neighbors` CLIs."""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest
import torch
from gensim.models import KeyedVectors

from tests.helpers import write_run
from w2vdist import cli
from w2vdist.errors import UsageError
from w2vdist.vectors import evaluate, neighbors
from w2vdist.vectors.keyed import WordVectors
from w2vdist.vectors import word2vec as vectors


def planted_model(seed: int) -> tuple[list[str], torch.Tensor, list[tuple[str, ...]]]:
    """Random vectors where some analogies hold by construction; words in several cases."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    base = [f"w{i}" for i in range(60)] + [
        "paris",
        "france",
        "rome",
        "italy",
        "Paris",
        "ROME",
        "ünï",
    ]
    rng.shuffle(base)
    vecs = {w: torch.randn(10, generator=gen) for w in base}
    planted = []
    for i in range(12):
        a, b, c = rng.sample(base[:30], 3)
        d = f"answer{i}"
        vecs[d] = vecs[b] + vecs[c] - vecs[a] + 0.05 * torch.randn(10, generator=gen)
        planted.append((a, b, c, d))
    answers = [q[3] for q in planted]
    words = base[:20] + answers[:8] + base[20:40] + answers[8:] + base[40:]  # some beyond restrict
    return words, torch.stack([vecs[w] for w in words]), planted


def write_questions(
    path: Path, words: list[str], planted: list[tuple[str, ...]], seed: int
) -> None:
    rng = random.Random(seed)
    cases = [str.lower, str.upper, str.title, lambda w: w]
    lines = [
        ": capital-common",
        "paris france rome italy",
        "Paris FRANCE rome Italy",
        "zzz france rome italy",
    ]
    lines += [" ".join(rng.choice(cases)(w) for w in q) for q in planted[:6]]
    lines += [": family", "only three words", ""]
    lines += [" ".join(rng.choice(cases)(w) for w in rng.sample(words, 4)) for _ in range(80)]
    lines += [": gram1-adjective-to-adverb"]
    lines += [" ".join(rng.choice(cases)(w) for w in q) for q in planted[6:]]
    lines += [f"{q[0]} {q[1]} {q[2]} {q[0]}" for q in planted[:3]]  # answer is a question word
    lines += [": gram2-opposite", "one two three four five"]
    lines += [" ".join(rng.choice(cases)(w) for w in rng.sample(words, 4)) for _ in range(80)]
    lines += [": empty-section"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def gensim_kv(words: list[str], matrix: torch.Tensor) -> KeyedVectors:
    kv = KeyedVectors(matrix.shape[1])
    kv.add_vectors(words, matrix.numpy())
    return kv


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("restrict", [35, 50, 10_000])
def test_analogies_equal_gensim(tmp_path: Path, seed: int, restrict: int) -> None:
    words, matrix, planted = planted_model(seed)
    path = tmp_path / "questions.txt"
    write_questions(path, words, planted, seed)
    score, sections = gensim_kv(words, matrix).evaluate_word_analogies(
        str(path), restrict_vocab=restrict, case_insensitive=True, dummy4unknown=False
    )
    ours = evaluate.analogy_scores(words, matrix, path, restrict)
    gensim_sections = sections[:-1]
    assert [s.name for s in ours.sections] == [s["section"] for s in gensim_sections]
    for mine, theirs in zip(ours.sections, gensim_sections):
        assert (mine.correct, mine.evaluated) == (
            len(theirs["correct"]),
            len(theirs["correct"]) + len(theirs["incorrect"]),
        ), mine.name
    metrics = evaluate.score_analogies(words, matrix, path, restrict)
    assert metrics["total"] == score
    assert metrics["correct"] == len(sections[-1]["correct"])
    assert (
        0 < metrics["correct"] < metrics["evaluated"] < metrics["questions"]
    )  # right, wrong and OOV
    assert metrics["skipped_lines"] == 2
    batched = evaluate.analogy_scores(
        words, matrix, path, restrict, max_scores=1
    )  # one question a product
    assert batched.metrics() == metrics


@pytest.mark.filterwarnings("ignore:Call to deprecated `init_sims`")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("restrict", [35, 10_000])
def test_3cosmul_analogies_equal_gensims_cosmul(tmp_path: Path, seed: int, restrict: int) -> None:
    words, matrix, planted = planted_model(seed)
    path = tmp_path / "questions.txt"
    write_questions(path, words, planted, seed)
    # gensim's scorer asks most_similar; most_similar_cosmul searches every vector it holds,
    # so it is given only the restricted ones
    kv = gensim_kv(words[:restrict], matrix[:restrict])
    kv.most_similar = kv.most_similar_cosmul
    score, sections = kv.evaluate_word_analogies(str(path), restrict_vocab=restrict,
                                                 case_insensitive=True)
    ours = evaluate.analogy_scores(words, matrix, path, restrict, method="3cosmul")
    for mine, theirs in zip(ours.sections, sections[:-1]):
        assert (mine.correct, mine.evaluated) == (
            len(theirs["correct"]), len(theirs["correct"]) + len(theirs["incorrect"])), mine.name
    assert ours.metrics()["total"] == score
    batched = evaluate.analogy_scores(words, matrix, path, restrict, max_scores=1,
                                      method="3cosmul")
    assert batched.metrics() == ours.metrics()
    with pytest.raises(UsageError, match="analogy method must be one of 3cosadd, 3cosmul"):
        evaluate.analogy_scores(words, matrix, path, restrict, method="3cosdiv")


@pytest.mark.filterwarnings("ignore:Call to deprecated `init_sims`")
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("restrict", [35, 10_000])
@pytest.mark.parametrize("case_insensitive", [True, False])
@pytest.mark.parametrize("dummy4unknown", [False, True])
def test_word_vectors_answer_gensims_evaluate_word_analogies_in_its_shape(
    tmp_path: Path, seed: int, restrict: int, case_insensitive: bool, dummy4unknown: bool
) -> None:
    """Code written for gensim's KeyedVectors gets gensim's answer: the score and every
    section's correct and incorrect questions, in the file's order."""
    words, matrix, planted = planted_model(seed)
    path = tmp_path / "questions.txt"
    write_questions(path, words, planted, seed)
    options = {"restrict_vocab": restrict, "case_insensitive": case_insensitive,
               "dummy4unknown": dummy4unknown}
    theirs = gensim_kv(words, matrix).evaluate_word_analogies(str(path), **options)
    ours = WordVectors(words, matrix).evaluate_word_analogies(path, **options)
    assert ours == theirs and ours[1][-1]["incorrect"]
    if case_insensitive and restrict > len(words):  # the planted questions, in mixed case
        assert ours[1][-1]["correct"]
    # gensim takes similarity_function and answers by 3CosAdd; given most_similar_cosmul,
    # it answers by 3CosMul over the restricted words
    kv = gensim_kv(words[:restrict], matrix[:restrict])
    kv.most_similar = kv.most_similar_cosmul
    cosmul = WordVectors(words, matrix).evaluate_word_analogies(
        path, similarity_function="most_similar_cosmul", **options)
    assert cosmul == kv.evaluate_word_analogies(str(path), **options)
    with pytest.raises(ValueError, match="similarity_function must be one of"):
        WordVectors(words, matrix).evaluate_word_analogies(path, similarity_function="cos")


@pytest.mark.parametrize("restrict", [40, 10_000])
@pytest.mark.parametrize("case_insensitive", [True, False])
@pytest.mark.parametrize("dummy4unknown", [False, True])
def test_word_vectors_answer_gensims_evaluate_word_pairs_in_its_shape(
    tmp_path: Path, restrict: int, case_insensitive: bool, dummy4unknown: bool
) -> None:
    words, matrix, _ = planted_model(4)
    rng = random.Random(4)
    lines = ["# Word 1;Word 2;Human (mean)", "paris;France;8.5", "Rome;rome;10", "a;b;x"]
    lines += [f"{rng.choice([a, a.upper()])};{b};{rng.randint(0, 8) / 2}"
              for a, b in (rng.sample(words, 2) for _ in range(60))]
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(lines + ["unknown;paris;3.0"]) + "\n", encoding="utf-8")
    options = {"delimiter": ";", "restrict_vocab": restrict, "case_insensitive": case_insensitive,
               "dummy4unknown": dummy4unknown}
    pearson, spearman, oov = WordVectors(words, matrix).evaluate_word_pairs(path, **options)
    their_pearson, their_spearman, their_oov = gensim_kv(words, matrix).evaluate_word_pairs(
        str(path), **options)
    assert oov == their_oov > 0
    assert pearson.statistic == pytest.approx(their_pearson.statistic, abs=1e-6)
    assert pearson.pvalue == pytest.approx(their_pearson.pvalue, rel=1e-4)
    assert spearman.statistic == pytest.approx(their_spearman.statistic, abs=1e-9)
    assert spearman.pvalue == pytest.approx(their_spearman.pvalue, rel=1e-6)


def test_evaluate_word_pairs_without_scipy_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "pairs.tsv").write_text("a\tb\t1\n")
    code = ("import sys, torch; sys.modules['scipy'] = None\n"  # as if scipy were not installed
            "from w2vdist import WordVectors\n"
            "WordVectors(['a', 'b'], torch.eye(2)).evaluate_word_pairs('pairs.tsv')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: evaluate_word_pairs gives scipy's results, as gensim does: pip install scipy")


def test_analogy_metrics_by_hand(tmp_path: Path) -> None:
    """Exclusion of question words, case folding, OOV, semantic / syntactic split."""
    words = ["a", "b", "c", "d", "e", "A", "far"]
    matrix = torch.tensor(
        [[1.0, 0, 0], [0, 1, 0], [1, 0.05, 0], [0.1, 1, 0.1], [0, 0, 1], [0, 1, 0.01], [-1, -1, -1]]
    )
    # b + c - a ~ b: b itself (and any case variant of a question word) is excluded, so d wins
    path = tmp_path / "q.txt"
    path.write_text(": sem\na b c d\nA B C D\na b c e\n: gram-x\na b c d\na b c missing\n")
    m = evaluate.score_analogies(words, matrix, path, restrict_vocab=6)
    assert (m["correct"], m["evaluated"], m["questions"], m["oov"]) == (3, 4, 5, 1)
    assert (m["semantic"], m["syntactic"], m["total"]) == (2 / 3, 1.0, 0.75)
    assert m["coverage"] == 0.8 and m["section/sem"] == 2 / 3
    assert evaluate.score_analogies(words, matrix, path, restrict_vocab=3)["evaluated"] == 0


def test_files_saved_with_a_byte_order_mark_score_as_without(tmp_path: Path) -> None:
    """Notepad's "UTF-8 with BOM": the mark stuck to the first line, so an analogy file's
    first section line was refused and a pair file's first word was out of vocabulary."""
    words, matrix, planted = planted_model(0)
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    write_questions(plain, words, planted, 0)
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert (evaluate.score_analogies(words, matrix, marked)
            == evaluate.score_analogies(words, matrix, plain))
    plain.write_text(f"{words[0]}\t{words[1]}\t3\n{words[2]}\t{words[3]}\t5\n"
                     f"{words[4]}\t{words[5]}\t1\n", encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    found = evaluate.score_similarity(words, matrix, marked)
    assert found == evaluate.score_similarity(words, matrix, plain) and found["oov"] == 0


@pytest.mark.parametrize("restrict", [40, None])
def test_similarity_equals_gensim(tmp_path: Path, restrict: int | None) -> None:
    words, matrix, _ = planted_model(3)
    rng = random.Random(3)
    lines = [
        "# comment line",
        "# Word 1\tWord 2\tHuman (mean)",
        "paris\tFrance\t8.5",
        "Rome\trome\t10",
    ]
    for _ in range(60):
        w1, w2 = rng.sample(words, 2)
        lines.append(
            f"{rng.choice([w1, w1.upper()])}\t{w2}\t{rng.randint(0, 8) / 2}"
        )  # tied scores
    lines += ["unknown\tparis\t3.0", "not\ta number\tx"]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    kv = gensim_kv(words, matrix)
    pearson, spearman, oov_percent = kv.evaluate_word_pairs(
        str(path), restrict_vocab=restrict or len(words)
    )
    m = evaluate.score_similarity(words, matrix, path, restrict)
    assert abs(m["spearman"] - spearman[0]) < 1e-9
    assert abs(m["pearson"] - pearson[0]) < 1e-6
    assert m["oov_rate"] * 100 == pytest.approx(oov_percent, abs=1e-12) and m["oov"] >= 1
    assert m["skipped_lines"] == 1
    spaced = tmp_path / "pairs.txt"  # whitespace separated, like many published files
    spaced.write_text(path.read_text(encoding="utf-8").replace("\t", "  "), encoding="utf-8")
    m2 = evaluate.score_similarity(words, matrix, spaced, restrict)
    assert (m2["spearman"], m2["pairs"], m2["oov"]) == (m["spearman"], m["pairs"], m["oov"])


def test_eval_cli_same_numbers_for_run_dir_and_exported_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    words, matrix, planted = planted_model(4)
    write_questions(tmp_path / "q.txt", words, planted, 4)
    (tmp_path / "s.tsv").write_text("paris\tfrance\t9\nrome\titaly\t8\nw1\tw2\t1\nzzz\tw1\t2\n")
    inp, _ = write_run(tmp_path / "run", words, dim=10)
    common = ["--eval.analogies", str(tmp_path / "q.txt"),
              "--eval.similarity", str(tmp_path / "s.tsv")]
    reports = []
    for fmt in ("text", "binary"):
        vectors.write_word2vec(tmp_path / fmt, words, inp, binary=fmt == "binary")
    vectors.write_word2vec(tmp_path / "v.bin.gz", words, inp, binary=True)
    for source in ("run", "text", "binary", "v.bin.gz"):
        out = tmp_path / f"{source}.json"
        assert (
            cli.main(
                [
                    "eval",
                    str(tmp_path / source),
                    *common,
                    "--eval.restrict-vocab",
                    "50",
                    "--json",
                    str(out),
                ]
            )
            == 0
        )
        reports.append(json.loads(out.read_text()))
    printed = capsys.readouterr().out
    assert (
        "gram1-adjective-to-adverb" in printed and "syntactic" in printed and "spearman" in printed
    )
    numbers = [{k: r[k] for k in ("analogies", "similarity")} for r in reports]
    for n in numbers:
        n["analogies"].pop("file"), n["similarity"].pop("file")
    assert numbers[0] == numbers[1] == numbers[2] == numbers[3]
    assert len(words) > 50 and "v.bin.gz: 10 dims, using the 50 most frequent words" in printed
    expected = evaluate.score_analogies(words, inp, tmp_path / "q.txt", 50)
    assert {k: reports[0]["analogies"][k] for k in expected} == expected
    # What a run logs, from only the rows it scores: the same numbers; no files, nothing.
    from w2vdist.vectors.config import EvalConfig

    logged = evaluate.scores(EvalConfig(analogies=[str(tmp_path / "q.txt")], restrict_vocab=50),
                             words, inp)
    assert logged == {f"analogy/{k}": float(v) for k, v in expected.items()}
    assert evaluate.scores(EvalConfig(), words, inp) == {}
    with pytest.raises(UsageError, match="words but"):  # not hidden by taking the rows first
        evaluate.scores(EvalConfig(analogies=[str(tmp_path / "q.txt")], restrict_vocab=50),
                        words[:40], inp)
    similarity = reports[0]["similarity"]
    assert similarity["pairs"] + similarity["oov"] == 4 and similarity["oov"] >= 1
    assert reports[0]["restrict_vocab"] == 50 and reports[0]["analogies"]["method"] == "3cosadd"
    out = tmp_path / "mul.json"
    assert cli.main(["eval", str(tmp_path / "run"), "--eval.analogies", str(tmp_path / "q.txt"),
                     "--eval.restrict-vocab", "50", "--eval.analogy-method", "3cosmul",
                     "--json", str(out)]) == 0
    assert "q.txt (3cosmul)" in capsys.readouterr().out
    expected = evaluate.score_analogies(words, inp, tmp_path / "q.txt", 50, "3cosmul")
    assert {k: json.loads(out.read_text())["analogies"][k] for k in expected} == expected


def test_eval_cli_scores_several_files_of_each_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several files, comma-separated: each printed and reported in the order given, each with
    the numbers it gets alone."""
    words, matrix, planted = planted_model(4)
    write_questions(tmp_path / "q.txt", words, planted, 4)
    write_questions(tmp_path / "other.txt", words, planted, 5)  # other random questions
    (tmp_path / "s1.tsv").write_text("paris\tfrance\t9\nrome\titaly\t8\nw1\tw2\t1\n")
    (tmp_path / "s2.tsv").write_text("w1\tw3\t5\nparis\trome\t7\nw2\tw4\t2\nzzz\tw1\t2\n")
    inp, _ = write_run(tmp_path / "run", words, dim=10)
    analogies = [str(tmp_path / "q.txt"), str(tmp_path / "other.txt")]
    similarity = [str(tmp_path / "s2.tsv"), str(tmp_path / "s1.tsv")]
    out = tmp_path / "both.json"
    assert cli.main(["eval", str(tmp_path / "run"), "--eval.analogies", ",".join(analogies),
                     "--eval.similarity", ",".join(similarity), "--eval.restrict-vocab", "50",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [r["file"] for r in report["analogies"]] == analogies
    assert [r["file"] for r in report["similarity"]] == similarity
    assert printed.index(f"similarity: {similarity[0]}") < printed.index(
        f"similarity: {similarity[1]}")
    for kind, files in (("analogies", analogies), ("similarity", similarity)):
        for path, both in zip(files, report[kind]):
            alone = tmp_path / "alone.json"
            assert cli.main(["eval", str(tmp_path / "run"), f"--eval.{kind}", path,
                             "--eval.restrict-vocab", "50", "--json", str(alone)]) == 0
            assert json.loads(alone.read_text())[kind] == both
    assert report["similarity"][0]["spearman"] != report["similarity"][1]["spearman"]


def test_files_of_one_kind_need_names_of_their_own() -> None:
    """Their scores are named after them (`similarity:NAME/...`): two files of one name are
    refused, naming it; other kinds may share one."""
    from w2vdist.settings import from_dict
    from w2vdist.vectors.config import EvalConfig

    with pytest.raises(UsageError, match="^config: eval.similarity two files named 'men': "):
        from_dict(EvalConfig, {"similarity": "a/men.txt,b/men.tsv"})
    both = from_dict(EvalConfig, {"analogies": "x/men.txt", "similarity": "men.tsv,rw.txt"})
    assert both.analogies == ["x/men.txt"] and both.similarity == ["men.tsv", "rw.txt"]
    # A run's config saved when each kind held one file or none (null) still loads.
    old = from_dict(EvalConfig, {"analogies": None, "similarity": "ws353.tsv"})
    assert old.analogies == [] and old.similarity == ["ws353.tsv"]


def test_eval_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "run", ["a", "b", "c", "d"])
    run = str(tmp_path / "run")
    assert cli.main(["eval", run]) == 2
    assert "--eval.analogies FILE and/or --eval.similarity FILE" in capsys.readouterr().err
    assert cli.main(["eval", run, "--eval.analogy-method", "3cosdiv"]) == 2
    assert "eval.analogy_method must be one of 3cosadd, 3cosmul (got '3cosdiv')" in \
        capsys.readouterr().err
    (tmp_path / "q.txt").write_text("a b c d\n: sec\n")
    assert cli.main(["eval", run, "--eval.analogies", str(tmp_path / "q.txt")]) == 2
    assert (
        f"{tmp_path / 'q.txt'}:1: question before the first ': section' line"
        in capsys.readouterr().err
    )
    (tmp_path / "q.txt").write_text(": sec\n\n")
    assert cli.main(["eval", run, "--eval.analogies", str(tmp_path / "q.txt")]) == 2
    assert "no analogy questions found" in capsys.readouterr().err
    assert cli.main(["eval", run, "--eval.similarity", str(tmp_path / "none.tsv")]) == 2
    assert "none.tsv: file not found" in capsys.readouterr().err
    (tmp_path / "s.tsv").write_text("# only comments\n")
    assert cli.main(["eval", run, "--eval.similarity", str(tmp_path / "s.tsv")]) == 2
    assert "no 'word word score' lines" in capsys.readouterr().err


def test_neighbors_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = ["cat", "dog", "car", "Truck", "bus"]
    matrix = torch.tensor(
        [[1.0, 0.1, 0], [0.9, 0.3, 0], [0, 1, 0.2], [0, 0.9, 0.5], [0.1, 0.8, 0.6]]
    )
    vectors.write_word2vec(tmp_path / "v.bin", words, matrix, binary=True)
    assert cli.main(["neighbors", str(tmp_path / "v.bin"), "cat", "truck", "-k", "2"]) == 0
    captured = capsys.readouterr()
    assert (
        "'truck' is not in the vocabulary" in captured.err
        and "did you mean 'Truck'" in captured.err
    )
    lines = captured.out.splitlines()
    unit = vectors.unit_rows(matrix)
    assert lines[0] == "cat" and lines[1].split() == [f"{float(unit[0] @ unit[1]):.4f}", "dog"]
    assert lines[2].split()[1] == "bus" and len(lines) == 3
    # --limit: only the first words loaded, so bus (the fifth) is no one's neighbour
    vectors.write_word2vec(tmp_path / "v.txt.gz", words, matrix, binary=False)
    assert cli.main(["neighbors", str(tmp_path / "v.txt.gz"), "Truck", "-k", "2",
                     "--limit", "4"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]] == ["car", "dog"]
    assert cli.main(["neighbors", str(tmp_path / "v.bin"), "bus", "--limit", "4"]) == 2
    assert "'bus' is not in the vocabulary" in capsys.readouterr().err
    assert cli.main(["neighbors", str(tmp_path / "v.bin"), "bus", "--limit", "1"]) == 2
    assert "config: neighbors.limit must be >= 2" in capsys.readouterr().err
    assert cli.main(["neighbors", str(tmp_path / "v.bin"), "zebra", "truck"]) == 2
    assert "none of the queries' words is in the vocabulary" in capsys.readouterr().err
    # expressions, as word2vec.c's word-analogy and distance answer them
    wv = WordVectors.load(tmp_path / "v.bin")
    for method, search in [("3cosadd", wv.most_similar), ("3cosmul", wv.most_similar_cosmul)]:
        assert cli.main(["neighbors", str(tmp_path / "v.bin"), "car - cat + dog", "bus Truck",
                         "cat - zebra", "-k", "2", "--method", method]) == 0
        captured = capsys.readouterr()
        assert "'zebra' is not in the vocabulary" in captured.err
        expected = ["car - cat + dog"] + [f"  {c:8.4f}  {w}" for w, c in
                                          search(["car", "dog"], ["cat"], topn=2)]
        expected += ["bus Truck"] + [f"  {c:8.4f}  {w}" for w, c in
                                     search(["bus", "Truck"], topn=2)]
        assert captured.out.splitlines() == expected
    assert neighbors.parse("c++ - -lrb- + a b") == (["c++", "a", "b"], ["-lrb-"])
    assert neighbors.parse("- a b") == (["b"], ["a"])
    assert neighbors.parse(" at\u00a0name@domain.com\t-  b\n") == (["at\u00a0name@domain.com"],
                                                                    ["b"])  # as files split
    for dangling, operator in [("car -", "-"), ("car + - dog", "+"), ("+", "+")]:
        assert cli.main(["neighbors", str(tmp_path / "v.bin"), dangling]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"w2vdist: {dangling!r}: {operator!r} has no word after it"
    assert cli.main(["neighbors", str(tmp_path / "v.bin"), "- cat", "--method", "3cosmul"]) == 2
    assert "--method 3cosmul needs a word added in every query" in capsys.readouterr().err


def _lines(stream: IO[str]) -> "queue.Queue[str]":
    """The lines `stream` yields, as a thread reads them: a test can wait for each with a bound
    (select on the pipe would miss lines already in the stream's buffer)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in stream],
                     daemon=True).start()
    return lines


def test_neighbors_answers_queries_from_stdin_as_they_come(tmp_path: Path) -> None:
    """`-` reads a query a line, as word2vec.c's `distance` does: each answered before the next
    is written (the vectors loaded once), bad ones reported and skipped, EOF ends it."""
    words = ["cat", "dog", "car", "Truck", "bus"]
    matrix = torch.tensor(
        [[1.0, 0.1, 0], [0.9, 0.3, 0], [0, 1, 0.2], [0, 0.9, 0.5], [0.1, 0.8, 0.6]]
    )
    path = tmp_path / "v.bin"
    vectors.write_word2vec(path, words, matrix, binary=True)
    wv = WordVectors.load(path)
    command = [sys.executable, "-m", "w2vdist", "neighbors", str(path), "-", "-k", "2"]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a pipe is
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=buffered) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out = _lines(proc.stdout)
        try:
            for query, (positive, negative) in [("cat", (["cat"], [])),
                                                ("car - cat + dog", (["car", "dog"], ["cat"]))]:
                proc.stdin.write(f"\n{query}\nzebra\ncar -\n")  # blank, good, unknown, bad
                proc.stdin.flush()
                expected = [query] + [f"  {c:8.4f}  {w}" for w, c in
                                      wv.most_similar(positive, negative, topn=2)]
                assert [out.get(timeout=60) for _ in expected] == expected  # before the next
        finally:
            proc.stdin.close()  # a run that failed above ends too, rather than wait for more
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read().splitlines()
    assert err == ["w2vdist: 'zebra' is not in the vocabulary of " + str(path),
                   "w2vdist: 'car -': '-' has no word after it"] * 2
    for stdin, message in [("zebra\n", "stdin: none of the 1 queries could be answered"),
                           ("\n", "stdin: no query read")]:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.splitlines()[-1] == f"w2vdist: {message}"


def test_neighbors_into_a_pipe_closed_early_stops_quietly(tmp_path: Path) -> None:
    """`w2vdist neighbors ... | head`: once the reader has gone, the rest of the output is
    dropped without a traceback or an error line, exit status 141 as for a SIGPIPE."""
    words = [f"w{i}" for i in range(3000)]
    path = tmp_path / "v.bin"
    vectors.write_word2vec(path, words, torch.randn(3000, 8, generator=torch.Generator()
                                                    .manual_seed(0)), binary=True)
    # 3,000 answers of 20 neighbours, about 1 MB: far more than a pipe holds
    with subprocess.Popen([sys.executable, "-m", "w2vdist", "neighbors", str(path), *words,
                           "-k", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"w0\n"
        proc.stdout.close()
        assert proc.wait(timeout=60) == 141
        assert proc.stderr.read() == b""


@pytest.mark.parametrize("argv, name, low", [
    (["neighbors", "v.bin", "cat", "-k"], "neighbors.k", ">= 1"),
    (["neighbors", "v.bin", "cat", "--limit"], "neighbors.limit", ">= 2"),
    (["export", "run", "-o", "v.bin", "--limit"], "export.limit", ">= 1"),
    (["verify", "shards", "--workers"], "verify.workers", ">= 0 (0: a core each)"),
    (["synth", "out", "--sentences"], "synth.sentences", ">= 100"),
])
def test_a_command_names_its_setting_one_way(capsys, argv, name, low):
    """Whether a value is no integer or out of range, the message names the setting alike
    (the type check said `k`, the range check `-k`; `workers` and `verify.workers`)."""
    for value, said in (("abc", "must be an integer (got 'abc')"), ("-1", f"must be {low}")):
        assert cli.main([*argv, value]) == 2
        assert capsys.readouterr().err.strip() == f"w2vdist: config: {name} {said}"
