"""Damaged files users hand the commands: every one gets a one-line error naming the problem
and a non-zero exit, or reads as the data it still holds, never a traceback.

Each reader's real input (vectors, evaluation sets, a config file, a prepared corpus's
manifest and vocabulary, corpora as text, JSON Lines, Parquet, compressed and archived, a
phrases file and a stopword list) is
damaged in seeded ways (bytes flipped, cut, duplicated, deleted,
lines repeated, a stray NUL, a non-UTF-8 byte, a number too large), as a disk, a copy or an
editor damages files, and handed to the command that reads it, in this process. Mutating
inputs this way found the tracebacks of a vocabulary or config file that was not UTF-8 and of
a manifest whose JSON held fields of another type.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import zstandard

from tests.helpers import WORDS
from tests.test_prepare import prep, random_corpus
from w2vdist import cli
from w2vdist.corpus.phrases import Phrase, Phrases
from w2vdist.vectors.keyed import WordVectors

CASES = 40  # mutations of each input; seeded, so every run tries the same ones
INSERTS = [b"\n", b"\t", b" ", b"\r", b"\x00", b"-", b"nan", b"1e999", b"\xff\xfe", b"0",
           b"99999999999999999999", b'"', b"{", b"}", b"[", b"]", b":"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """`data` damaged by one to eight edits."""
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        b = b or bytearray(b"x")
        i, op = rng.randrange(len(b)), rng.randrange(7)
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del b[i:i + rng.randrange(1, 64)]
        elif op == 2:
            b = b[:i]
        elif op == 3:
            b[i:i] = rng.choice(INSERTS)
        elif op == 4:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randrange(1, 200)]
        elif op == 5:
            b[i] = rng.randrange(256)
        else:
            lines = bytes(b).split(b"\n")
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
            b = bytearray(b"\n".join(lines))
    return bytes(b)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared corpus, vectors in every format, evaluation files and a config file."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "corpus.txt").write_text(random_corpus(0, 200, vocab=60))
    assert prep(root / "corpus.txt", out=root / "shards", min_count=1) == 0
    words = [f"{w}{i}" for i in range(4) for w in WORDS]
    vectors = WordVectors(words, torch.randn(len(words), 8, generator=torch.Generator()
                                             .manual_seed(0)))
    for name in ("v.txt", "v.bin", "v.txt.gz"):
        vectors.save(root / name)
    (root / "questions.txt").write_text(": one\n" + "".join(
        " ".join(words[i:i + 4]) + "\n" for i in range(0, len(words) - 4, 2)), encoding="utf-8")
    (root / "pairs.tsv").write_text("".join(f"{a}\t{b}\t{i % 10}\n" for i, (a, b) in
                                            enumerate(zip(words, words[3:]))), encoding="utf-8")
    (root / "cfg.yaml").write_text("model: {dim: 20, window: 3}\noptim: {alpha: 0.05}\n"
                                   "train: {epochs: 2}\nsync: {strategy: local}\n")
    lines = (root / "corpus.txt").read_text().splitlines()[:60]
    pairs = [line.split()[:2] for line in lines if len(line.split()) > 1][:6]
    Phrases(((*[Phrase(a, b, 5, 120.5) for a, b in pairs[:3]],),
             tuple(Phrase(f"{a}_{b}", c, 3, 150.0) for (a, b), (c, _) in
                   zip(pairs[:3], pairs[3:])))).save(root / "phrases.tsv")
    (root / "stop.txt").write_text("\n".join(w for pair in pairs for w in pair) + "\n")
    text = ("\n".join(lines) + "\n").encode()
    (root / "c.jsonl").write_text("".join(json.dumps({"text": line, "id": i}) + "\n"
                                          for i, line in enumerate(lines)))
    pq.write_table(pa.table({"text": lines}), root / "c.parquet", row_group_size=20)
    (root / "c.txt.gz").write_bytes(gzip.compress(text))
    (root / "c.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    with zipfile.ZipFile(root / "c.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", text)
        archive.writestr("b.jsonl", (root / "c.jsonl").read_bytes())
    with tarfile.open(root / "c.tar.gz", "w:gz") as archive:
        member = tarfile.TarInfo("a.txt")
        member.size = len(text)
        archive.addfile(member, io.BytesIO(text))
    return root


def _read(name: str, damaged: Path, root: Path, work: Path) -> list[str]:
    """The command that reads the input `name`, given its damaged copy."""
    if name in ("phrases.tsv", "stop.txt"):
        flag = "--phrases-file" if name == "phrases.tsv" else "--stopwords"
        return ["prepare", str(root / "corpus.txt"), flag, str(damaged), "-o", str(work / "out"),
                "--workers", "1"]
    if name.startswith("c."):
        return ["prepare", str(damaged), "-o", str(work / "out"), "--min-count", "1",
                "--workers", "1"]
    if name.startswith("v."):
        return ["eval", str(damaged), "--eval.similarity", str(root / "pairs.tsv")]
    if name == "questions.txt":
        return ["eval", str(root / "v.txt"), "--eval.analogies", str(damaged)]
    if name == "pairs.tsv":
        return ["eval", str(root / "v.txt"), "--eval.similarity", str(damaged)]
    if name == "cfg.yaml":
        return ["train", "--config", str(damaged), "--dry-run", "--data.shards",
                str(root / "shards"), "--train.run_dir", str(work / "run")]
    return ["verify", str(damaged.parent)]  # the corpus's manifest.json or vocab.tsv


@pytest.mark.parametrize("name", ["v.txt", "v.bin", "v.txt.gz", "questions.txt", "pairs.tsv",
                                  "cfg.yaml", "manifest.json", "vocab.tsv", "c.jsonl",
                                  "c.parquet", "c.txt.gz", "c.txt.zst", "c.zip", "c.tar.gz",
                                  "phrases.tsv", "stop.txt"])
def test_a_damaged_input_is_refused_in_one_line_or_read(
    name: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(name)
    in_corpus = name in ("manifest.json", "vocab.tsv")
    original = (inputs / "shards" / name if in_corpus else inputs / name).read_bytes()
    refused = 0
    for case in range(CASES):
        work = tmp_path / str(case)
        work.mkdir()
        if in_corpus:
            shutil.copytree(inputs / "shards", work / "shards")
            damaged = work / "shards" / name
        else:
            damaged = work / name
        damaged.write_bytes(mutate(original, rng))
        code = cli.main(_read(name, damaged, inputs, work))
        err = capsys.readouterr().err
        shown = [line for line in err.splitlines() if line.startswith("w2vdist: ")]
        assert code in (0, 1, 2), (case, code, err)
        if code:
            refused += 1
            assert len(shown) == 1, (case, err)  # one line, and no traceback
            assert "Traceback" not in err, (case, err)
    assert refused > 0  # the damage is seen at all


def test_mutations_are_seeded() -> None:
    data = json.dumps({"a": list(range(50))}).encode()
    assert mutate(data, random.Random(3)) == mutate(data, random.Random(3)) != data
