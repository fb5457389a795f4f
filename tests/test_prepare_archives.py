"""`w2vdist prepare` on zip and tar archives (text8 ships as text8.zip, the One Billion Word
benchmark as a .tar.gz): every file in them read as if given on its own."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard

from tests.test_prepare import prep, random_corpus
from tests.test_prepare_inputs import documents, json_lines, shards_and_vocab
from w2vdist.corpus.shards import Manifest


def corpus_files() -> dict[str, bytes]:
    """Text without a final newline (its last line must not run into the next file's first)
    and JSON Lines, in the order an archive holds them."""
    return {
        "corpus/part-1.txt": random_corpus(1, 300).rstrip("\n").encode("utf-8"),
        "corpus/part-2.jsonl": json_lines(documents(random_corpus(2, 300), 2)),
        "corpus/part-3.txt": random_corpus(3, 300).encode("utf-8"),
    }


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("corpus"), None)  # a directory entry: skipped
        tar.getmember("corpus").type = tarfile.DIRTYPE
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("corpus/", b"")  # a directory entry: skipped
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


ARCHIVES = {
    "corpus.zip": lambda files: zip_bytes(files),
    "corpus.tar": lambda files: tar_bytes(files),
    "corpus.tar.gz": lambda files: gzip.compress(tar_bytes(files)),
    "corpus.tgz.zst": lambda files: zstandard.ZstdCompressor().compress(tar_bytes(files)),
}


@pytest.mark.parametrize("name", ARCHIVES)
def test_an_archive_reads_as_its_files(name: str, tmp_path: Path) -> None:
    files = corpus_files()
    for member, data in files.items():
        (tmp_path / Path(member).name).write_bytes(data)
    plain = [tmp_path / Path(member).name for member in files]
    assert prep(*plain, out=tmp_path / "plain", min_count=1, max_sentence_len=7) == 0
    archive = tmp_path / name
    archive.write_bytes(ARCHIVES[name](files))
    assert prep(archive, out=tmp_path / "archive", min_count=1, max_sentence_len=7,
                workers=2) == 0
    assert shards_and_vocab(tmp_path / "archive") == shards_and_vocab(tmp_path / "plain")
    stats = Manifest.load(tmp_path / "archive").stats
    assert stats["formats"] == {"text": 2, "jsonl": 1} == Manifest.load(tmp_path / "plain").stats[
        "formats"]


def test_a_directory_holds_archives_too(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "text8.zip").write_bytes(zip_bytes({"text8": b" anarchism originated as"}))
    assert prep(tmp_path / "in", out=tmp_path / "out", min_count=1) == 0
    assert Manifest.load(tmp_path / "out").total_tokens == 3


WORDS = b"fine words\n" * 100  # 1,100 bytes: a header block, three data blocks
BAD_ARCHIVES = {
    "a bad record": ("bad.zip", zip_bytes({"a.txt": WORDS, "b.jsonl": b'{"text": 3}\n'}),
                     "bad.zip:b.jsonl: the record at byte 0 holds a JSON number"),
    "a NUL byte": ("nul.tar", tar_bytes({"a.txt": WORDS, "b.txt": b"not\0text\n"}),
                   "nul.tar:b.txt: not text (a NUL byte at byte 3)"),
    "zip cut": ("cut.zip", zip_bytes({"a.txt": WORDS})[:-30], "cut.zip: cannot read zip file"),
    "tar.gz cut": ("cut.tar.gz", gzip.compress(tar_bytes({"a.txt": WORDS}))[:-30],
                   "cut.tar.gz: cannot read gzip file"),
    "tar cut in a header": ("cut.tar", tar_bytes({"a.txt": WORDS})[:2560 + 100],
                            "cut.tar: cannot read tar file: the archive ends early"),
    "tar cut in the data": ("cut.tar", tar_bytes({"a.txt": WORDS})[:1024 + 600],
                            "cut.tar: cannot read tar file: unexpected end of data"),
    "tar without its end": ("cut.tar", tar_bytes({"a.txt": WORDS})[:2560],
                            "cut.tar: cannot read tar file: the archive ends early"),
}


@pytest.mark.parametrize("name, data, problem", BAD_ARCHIVES.values(), ids=BAD_ARCHIVES)
def test_a_bad_archive_is_one_line_naming_it(name: str, data: bytes, problem: str,
                                             tmp_path: Path, capsys) -> None:
    (tmp_path / name).write_bytes(data)
    assert prep(tmp_path / name, out=tmp_path / "out", min_count=1) == 2
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
