"""`w2vdist export`: a real checkpoint to files that gensim and word2vec.c's layout read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors
from tests.helpers import WORDS, distance_c_read, write_run

from w2vdist import cli
from w2vdist.settings import from_dict
from w2vdist.training import checkpoint, metrics
from w2vdist.training.config import Config
from w2vdist.vectors import export


@pytest.mark.parametrize("fmt", ["text", "binary"])
@pytest.mark.parametrize("table", ["input", "output", "average"])
def test_export_is_read_back_by_gensim_with_counts(tmp_path: Path, fmt: str, table: str) -> None:
    inp, out = write_run(tmp_path / "run", WORDS)
    expected = {"input": inp, "output": out, "average": (inp + out) / 2}[table]
    target, counts = tmp_path / "vectors", tmp_path / "vocab.txt"
    argv = ["export", str(tmp_path / "run"), "-o", str(target), "--format", fmt, "--table", table]
    assert cli.main([*argv, "--counts", str(counts)]) == 0
    kv = KeyedVectors.load_word2vec_format(str(target), binary=fmt == "binary", fvocab=str(counts))
    assert kv.index_to_key == WORDS
    np.testing.assert_array_equal(kv.vectors, expected.numpy())
    assert [kv.get_vecattr(w, "count") for w in WORDS] == [
        10 * (len(WORDS) - i) for i in range(len(WORDS))
    ]
    if fmt == "binary":
        words, matrix = distance_c_read(target)
        assert [w.decode() for w in words] == WORDS
        np.testing.assert_array_equal(matrix, expected.numpy())


def test_a_checkpoint_folder_copied_elsewhere_alone_exports_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp, _ = write_run(tmp_path / "run", WORDS)
    alone = tmp_path / "elsewhere" / "step"
    shutil.copytree(checkpoint.complete_steps(tmp_path / "run")[0], alone)
    shutil.rmtree(tmp_path / "run")
    assert cli.main(["export", str(alone), "-o", str(tmp_path / "v.txt")]) == 0
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "v.txt"))
    assert kv.index_to_key == WORDS
    np.testing.assert_array_equal(kv.vectors, inp.numpy())
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("the\tof\t3\nx\tnaïve\t1\nthe\tx\t2\n", encoding="utf-8")
    assert cli.main(["eval", str(alone), "--eval.similarity", str(pairs)]) == 0
    assert "pairs 3" in capsys.readouterr().out


def test_the_sidecar_holds_the_scores_logged_at_the_exported_step(tmp_path: Path) -> None:
    """The scores of the checkpoint exported, not the newest logged: a later step's may belong
    to a checkpoint a kill left incomplete. A step logged again (a resumed run) counts last, a
    second file's keys come along, and a line a killed run cut short is passed over."""
    run = tmp_path / "run"
    write_run(run, WORDS)  # one checkpoint, at step 7
    logged = metrics.build_metrics(from_dict(Config, {"wandb": {"mode": "disabled"}}), run, 0,
                                   None, 100, 0)
    at_7 = {"analogy/total": 0.25, "similarity:SimLex-999/spearman": 0.5}
    for step, record in [(0, {"analogy/total": 0.0}), (7, {"analogy/total": 0.2}),
                         (7, {"loss": 2.0}), (7, at_7), (9, {"analogy/total": 0.75})]:
        logged.log(step, record)
    logged.close()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "analo')
    for source in (run, checkpoint.complete_steps(run)[0]):
        out = tmp_path / "v.txt"
        assert cli.main(["export", str(source), "-o", str(out)]) == 0
        assert json.loads(export.sidecar(out).read_text())["scores"] == at_7
    alone = tmp_path / "elsewhere" / "step-000000007"  # a step folder without its run
    shutil.copytree(checkpoint.complete_steps(run)[0], alone)
    assert cli.main(["export", str(alone), "-o", str(out)]) == 0
    assert json.loads(export.sidecar(out).read_text())["scores"] == {}


@pytest.mark.parametrize("bad", ["new york", "tab\tword"])
def test_word_with_whitespace_is_refused_by_name_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    write_run(tmp_path / "run", ["a", "b", bad, "c"])
    out = tmp_path / "out" / "v.bin"
    out.parent.mkdir()
    argv = [
        "export",
        str(tmp_path / "run"),
        "-o",
        str(out),
        "--format",
        "binary",
        "--counts",
        str(out) + ".vocab",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad!r} (row 2)" in err and str(out) in err
    assert list(out.parent.iterdir()) == []  # nothing written, no temporary left


def test_skip_unwritable_drops_those_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp, _ = write_run(tmp_path / "run", ["a", "new york", "b", "c d"])
    out, counts = tmp_path / "v.txt", tmp_path / "counts.txt"
    argv = [
        "export",
        str(tmp_path / "run"),
        "-o",
        str(out),
        "--counts",
        str(counts),
        "--skip-unwritable",
    ]
    assert cli.main(argv) == 0
    assert "left out 2 unwritable word(s), first 'new york' (row 1)" in capsys.readouterr().err
    kv = KeyedVectors.load_word2vec_format(str(out), fvocab=str(counts))
    assert kv.index_to_key == ["a", "b"]
    np.testing.assert_array_equal(kv.vectors, inp[[0, 2]].numpy())
    assert counts.read_text() == "a 40\nb 20\n"
    assert json.loads(export.sidecar(out).read_text())["words"] == 2  # the words written


def test_help_documents_the_word_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    text = capsys.readouterr().out
    assert "contains a space, tab, line break" in text and "--skip-unwritable" in text


def test_bad_sources_and_targets_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "v.txt")]) == 2
    assert "nope: no such run directory, checkpoint folder or vectors file" in \
        capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["export", str(tmp_path / "empty"), "-o", str(tmp_path / "v.txt")]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    write_run(tmp_path / "run", WORDS)
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "no" / "v.txt")]) == 2
    assert "directory not found" in capsys.readouterr().err
    assert not (tmp_path / "v.txt").exists()


def test_export_replaces_an_existing_file_whole(tmp_path: Path) -> None:
    inp, _ = write_run(tmp_path / "run", WORDS, dim=3)
    out = tmp_path / "v.txt"
    out.write_text("stale content that is longer than the export\n" * 100)
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{len(WORDS)} 3" and len(lines) == len(WORDS) + 1
    first = torch.tensor([float(x) for x in lines[1].split()[1:]], dtype=torch.float32)
    assert lines[1].split()[0] == WORDS[0] and torch.equal(first, inp[0])


def test_a_vectors_file_is_converted_as_gensim_would_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GloVe text to word2vec binary, compressed (gensim's glove2word2vec and a save)."""
    vectors = torch.randn(len(WORDS), 4, generator=torch.Generator().manual_seed(3))
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} " + " ".join(f"{x:.9g}" for x in row) + "\n"
                             for w, row in zip(WORDS, vectors.tolist())), encoding="utf-8")
    out = tmp_path / "v.bin.gz"
    assert cli.main(["export", str(glove), "-o", str(out), "--limit", "3"]) == 0
    assert f"wrote 3 x 4 input vectors to {out} (binary)" in capsys.readouterr().out
    kv = KeyedVectors.load_word2vec_format(str(out), binary=True)
    assert kv.index_to_key == WORDS[:3]
    np.testing.assert_array_equal(kv.vectors, vectors[:3].numpy())
    meta = json.loads(export.sidecar(out).read_text())
    assert meta["converted_from"] == str(glove) and meta["words"] == 3 and meta["spec"] == {}

    assert cli.main(["export", str(glove), "-o", str(tmp_path / "c.txt"), "--counts",
                     str(tmp_path / "counts.txt")]) == 2
    assert "glove.txt: a vectors file carries no counts for --counts" in capsys.readouterr().err
    assert cli.main(["export", str(glove), "-o", str(tmp_path / "o.txt"), "--table",
                     "output"]) == 2
    assert "a vectors file holds one table" in capsys.readouterr().err
    assert cli.main(["export", str(glove), "-o", str(glove)]) == 2
    assert "the vectors file to convert; write to another name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glove.txt", "v.bin.gz",
                                                          "v.bin.gz.json"]
