"""`w2vdist prepare` on JSON Lines, Parquet, xz and zstd files: the same shards as the same
text in plain files."""

from __future__ import annotations

import gzip
import json
import lzma
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.test_prepare import files_of, leftovers, prep, random_corpus, sentences
from w2vdist import cli
from w2vdist.corpus import prepare
from w2vdist.corpus.config import PrepareConfig
from w2vdist.corpus import pieces as corpus_pieces
from w2vdist.corpus import text as corpus_text
from w2vdist.corpus.shards import Manifest
from w2vdist.corpus.vocab import Vocab
from w2vdist.errors import UsageError


def documents(text: str, seed: int) -> list[str]:
    """The text's lines grouped into documents of 1-6 lines, as a dataset's records hold them."""
    rng = random.Random(seed)
    lines = text.rstrip("\n").split("\n")
    docs = []
    while lines:
        n = rng.randint(1, 6)
        docs.append("\n".join(lines[:n]))
        lines = lines[n:]
    return docs


def json_lines(docs: list[str], field: str = "text", ascii_only: bool = False) -> bytes:
    """One object per document, with other fields around the text, blank lines and null texts
    between them (which hold no words)."""
    out = []
    for i, doc in enumerate(docs):
        out.append(json.dumps({"id": i, field: doc, "meta": {"url": f"u{i}"}},
                              ensure_ascii=ascii_only))
        if i % 7 == 0:
            out += ["", json.dumps({"id": -i, field: None})]
    return ("\n".join(out) + "\n").encode("utf-8")


def shards_and_vocab(out: Path) -> dict[str, bytes]:
    return {name: data for name, data in files_of(out).items() if name != "manifest.json"}


def test_json_lines_give_the_shards_of_the_same_text(tmp_path: Path) -> None:
    """Plain, gzip, zstd and xz JSON Lines (each suffix) read in one run: the same vocabulary
    and shards, byte for byte, as the text in plain files."""
    texts = [random_corpus(seed, 300) for seed in range(4)]
    plain = tmp_path / "plain"
    plain.mkdir()
    for i, text in enumerate(texts):
        (plain / f"{i}.txt").write_text(text, encoding="utf-8")
    records = [json_lines(documents(t, i), ascii_only=i % 2 == 1) for i, t in enumerate(texts)]
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    (jsonl / "0.jsonl").write_bytes(records[0])
    (jsonl / "1.jsonl.gz").write_bytes(gzip.compress(records[1]))
    half = records[2].index(b"\n", len(records[2]) // 2) + 1  # two frames, as `cat` joins them
    frames = [zstandard.ZstdCompressor().compress(r) for r in (records[2][:half], records[2][half:])]
    (jsonl / "2.ndjson.zst").write_bytes(b"".join(frames))
    (jsonl / "3.json.xz").write_bytes(lzma.compress(records[3]))
    (jsonl / "dataset_info.json").write_text('{"features": {}}')  # not searched for in a dir
    inputs = [jsonl / "0.jsonl", jsonl / "1.jsonl.gz", jsonl / "2.ndjson.zst", jsonl / "3.json.xz"]

    assert prep(plain, out=tmp_path / "from-text", min_count=2, shard_tokens=3000) == 0
    assert prep(*inputs, out=tmp_path / "from-json", min_count=2, shard_tokens=3000) == 0
    expected = shards_and_vocab(tmp_path / "from-text")
    assert len(expected) > 3 and shards_and_vocab(tmp_path / "from-json") == expected
    stats = Manifest.load(tmp_path / "from-json").stats
    assert stats["formats"] == {"jsonl": 4} and stats["text_field"] == "text"
    assert stats["lines"] == sum(r.count(b"\n") for r in records)

    # A directory is searched for .jsonl, .ndjson and compressed files, not .json metadata.
    assert prep(jsonl / "0.jsonl", jsonl / "1.jsonl.gz", jsonl / "2.ndjson.zst",
                out=tmp_path / "named", min_count=2, shard_tokens=3000) == 0
    (jsonl / "3.json.xz").unlink()
    assert prep(jsonl, out=tmp_path / "dir", min_count=2, shard_tokens=3000) == 0
    assert Manifest.load(tmp_path / "dir").stats["files"] == 3
    assert shards_and_vocab(tmp_path / "dir") == shards_and_vocab(tmp_path / "named")


def test_json_lines_in_byte_ranges_and_tiny_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records cut anywhere by byte ranges and chunks (raw UTF-8 and escapes, records longer
    than a chunk, no final newline) read as when each file is read whole."""
    docs = documents(random_corpus(5, 200), 5) + ["Ünïcödé wörds " * 9 + "é" * 40, "end ÿ"]
    path = tmp_path / "t.jsonl"
    path.write_bytes(json_lines(docs).rstrip(b"\n"))
    assert prep(path, out=tmp_path / "whole", min_count=1, max_sentence_len=7) == 0
    monkeypatch.setattr(corpus_text, "CHUNK_BYTES", 16)
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 37)
    monkeypatch.setattr(corpus_pieces, "MAX_RANGE_BYTES", 37)
    assert len(corpus_pieces.split_pieces([path], 1)) > 50
    assert prep(path, out=tmp_path / "cut", min_count=1, max_sentence_len=7, workers=2) == 0
    assert files_of(tmp_path / "whole") == files_of(tmp_path / "cut")


def test_a_byte_order_mark_is_not_text(tmp_path: Path) -> None:
    """Windows tools start UTF-8 files with a byte-order mark: it is skipped, and the bytes
    errors name still count it."""
    docs = ["alpha beta gamma", "beta gamma delta"]
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json_lines(docs))
    (tmp_path / "plain.jsonl").write_bytes(json_lines(docs))
    for name in ("bom", "plain"):
        assert prep(tmp_path / f"{name}.jsonl", out=tmp_path / name, min_count=1) == 0
    assert shards_and_vocab(tmp_path / "bom") == shards_and_vocab(tmp_path / "plain")
    (tmp_path / "bad.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"text": "a"}\n[1]\n')
    with pytest.raises(UsageError, match="bad.jsonl: the record at byte 17 is a JSON array"):
        prepare.prepare(PrepareConfig(inputs=[str(tmp_path / "bad.jsonl")],
                                      output=str(tmp_path / "out"), workers=1))


def test_one_compressed_file_is_shared_by_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A compressed file is decompressed in blocks that every worker takes: the same shards as
    the plain file, from one worker or two; a truncated file still stops it, from a worker."""
    text = random_corpus(11, 3000)
    (tmp_path / "plain.txt").write_text(text, encoding="utf-8")
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    docs = documents(text, 11)
    (tmp_path / "t.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(json_lines(docs)))
    assert prep(tmp_path / "plain.txt", out=tmp_path / "plain", min_count=2) == 0
    monkeypatch.setattr(corpus_text, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(corpus_text, "BLOCK_BYTES", 5000)
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 4000)  # blocks end where segments start
    pieces = corpus_pieces.split_pieces([tmp_path / "t.txt.gz"], 2)
    blocks = list(corpus_pieces.expand(pieces, 2))
    assert len(pieces) == 1 and len(blocks) > 5
    assert [b.number for b in blocks] == list(range(len(blocks)))
    assert all(b.data.endswith(b"\n") for b in blocks)
    assert b"".join(b.data for b in blocks) == text.encode("utf-8")
    for name in ("t.txt.gz", "t.jsonl.zst"):
        for workers in (1, 2):
            out = tmp_path / f"{name}-{workers}"
            assert prep(tmp_path / name, out=out, min_count=2, workers=workers) == 0
            assert shards_and_vocab(out) == shards_and_vocab(tmp_path / "plain")

    cut = gzip.compress(text.encode("utf-8"))
    (tmp_path / "cut.txt.gz").write_bytes(cut[: len(cut) // 2])
    assert prep(tmp_path / "cut.txt.gz", out=tmp_path / "cut", workers=2) == 2
    assert "cut.txt.gz: cannot read gzip file" in capsys.readouterr().err


def test_a_compressed_line_longer_than_a_block_is_cut_where_the_plain_files_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line longer than a block (here with a stretch of letters without a space across a
    segment's start) is cut in the same places compressed or not: the same shards."""
    line = " ".join(f"w{i % 50}" for i in range(3000))  # one line of 3,000 words, no newline
    line = line[:4990] + "é" * 300 + line[4990:]
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(line.encode()))
    (tmp_path / "t.txt").write_text(line, encoding="utf-8")
    monkeypatch.setattr(corpus_text, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(corpus_text, "BLOCK_BYTES", 2000)
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 1000)
    monkeypatch.setattr(corpus_text, "LONG_LINE_BYTES", 100)
    monkeypatch.setattr(corpus_pieces, "MAX_RANGE_BYTES", 1000)
    blocks = list(corpus_pieces.expand(corpus_pieces.split_pieces([tmp_path / "t.txt.gz"], 2), 2))
    assert len(blocks) >= 4 and all(1000 < len(b.data) < 3000 for b in blocks[:-1])
    assert all(b.cut_end for b in blocks[:-1]) and not blocks[-1].cut_end
    assert b"".join(b.data for b in blocks) == line.encode()
    for name in ("t.txt.gz", "t.txt"):  # in this process, which sees the patches
        assert prep(tmp_path / name, out=tmp_path / name.replace(".", "-"), min_count=1,
                    workers=1) == 0
    assert shards_and_vocab(tmp_path / "t-txt-gz") == shards_and_vocab(tmp_path / "t-txt")
    got = sentences(tmp_path / "t-txt-gz")
    assert len(got) == -(-len(line.encode()) // 1000)  # a cut at each segment
    assert "".join(w for s in got for w in s) == "".join(line.split())
    assert Manifest.load(tmp_path / "t-txt-gz").stats["lines"] == 1
    # A JSON Lines record is cut only past MAX_BLOCK_BYTES: this one is read whole.
    monkeypatch.setattr(corpus_text, "MAX_BLOCK_BYTES", 4000)
    record = json_lines([" ".join(line.split()[:700])])  # 3,360 bytes
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(record))
    blocks = list(corpus_pieces.expand(corpus_pieces.split_pieces([tmp_path / "t.jsonl.gz"], 2), 2))
    assert [b.data for b in blocks] == [record]


def test_format_and_text_field_flags(tmp_path: Path) -> None:
    """--format overrides the name; --text-field names another field."""
    docs = ["alpha beta gamma", "beta gamma delta\nalpha"]
    named_txt = tmp_path / "records.txt"
    named_txt.write_bytes(json_lines(docs, field="content"))
    assert prep(named_txt, out=tmp_path / "a", min_count=1, format="jsonl",
                text_field="content") == 0
    (tmp_path / "plain.txt").write_text("\n".join(docs) + "\n")
    assert prep(tmp_path / "plain.txt", out=tmp_path / "b", min_count=1) == 0
    assert shards_and_vocab(tmp_path / "a") == shards_and_vocab(tmp_path / "b")

    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(json_lines(docs))
    assert prep(jsonl, out=tmp_path / "c", min_count=1, format="text") == 0
    assert "meta" in (tmp_path / "c" / "vocab.tsv").read_text()  # the JSON read as words

    nested = tmp_path / "nested.jsonl"  # a dotted name is a path through nested objects
    nested.write_text("".join(json.dumps({"id": i, "doc": {"body": d}}) + "\n"
                              for i, d in enumerate(docs)))
    assert prep(nested, out=tmp_path / "d", min_count=1, text_field="doc.body") == 0
    assert shards_and_vocab(tmp_path / "d") == shards_and_vocab(tmp_path / "b")


def write_parquet(path: Path, docs: list[str], column: str = "text", rows_per_group: int = 40,
                  text_type: pa.DataType = pa.string()) -> None:
    """The documents as a table with other columns around the text and null texts between."""
    texts: list[str | None] = []
    for i, doc in enumerate(docs):
        texts += [doc, None] if i % 9 == 0 else [doc]
    table = pa.table({"id": pa.array(range(len(texts))),
                      column: pa.array(texts, text_type),
                      "url": pa.array([f"u{i}" for i in range(len(texts))])})
    pq.write_table(table, path, row_group_size=rows_per_group)


def test_parquet_gives_the_shards_of_the_same_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parquet tables (string, large string and dictionary columns, several row groups, one
    without the .parquet name, one without row groups) read as the same text, whole or in runs
    of row groups shared by two workers."""
    texts = [random_corpus(seed, 300) for seed in range(3)]
    plain = tmp_path / "plain"
    plain.mkdir()
    for i, text in enumerate(texts):
        (plain / f"{i}.txt").write_text(text, encoding="utf-8")
    tables = tmp_path / "tables"
    tables.mkdir()
    types = [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())]
    names = ["0.parquet", "1.parquet", "2.data"]  # Parquet is known by its first bytes
    for text, kind, name in zip(texts, types, names):
        write_parquet(tables / name, documents(text, 1), text_type=kind)
    pq.ParquetWriter(tables / "none.parquet", pa.schema([("text", pa.string())])).close()
    assert pq.ParquetFile(tables / "none.parquet").metadata.num_row_groups == 0
    inputs = [tables / name for name in [*names, "none.parquet"]]

    assert prep(plain, out=tmp_path / "from-text", min_count=2, shard_tokens=3000) == 0
    assert prep(*inputs, out=tmp_path / "whole", min_count=2, shard_tokens=3000) == 0
    expected = shards_and_vocab(tmp_path / "from-text")
    assert len(expected) > 3 and shards_and_vocab(tmp_path / "whole") == expected
    stats = Manifest.load(tmp_path / "whole").stats
    assert stats["formats"] == {"parquet": 4}  # the table without row groups too
    assert stats["files"] == 4 and stats["bytes"] == sum(f.stat().st_size for f in inputs)
    assert stats["lines"] == sum(pq.ParquetFile(f).metadata.num_rows for f in inputs)

    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 1000)
    pieces = corpus_pieces.split_pieces(inputs, 2)
    assert len(pieces) > 6 and {(p.format, p.text_field) for p in pieces} == {("parquet", "text")}
    assert prep(*inputs, out=tmp_path / "runs", min_count=2, shard_tokens=3000, workers=2) == 0
    assert shards_and_vocab(tmp_path / "runs") == expected


def test_parquet_text_in_another_column(tmp_path: Path, capsys) -> None:
    docs = ["alpha beta gamma", "beta gamma delta\nalpha"]
    write_parquet(tmp_path / "t.parquet", docs, column="content")  # and a null row
    assert prep(tmp_path / "t.parquet", out=tmp_path / "a", min_count=1,
                text_field="content") == 0
    assert "3 records (1 Parquet; text in 'content')" in capsys.readouterr().out
    (tmp_path / "plain.txt").write_text("\n".join(docs) + "\n")
    assert prep(tmp_path / "plain.txt", out=tmp_path / "b", min_count=1) == 0
    assert shards_and_vocab(tmp_path / "a") == shards_and_vocab(tmp_path / "b")


def test_parquet_text_in_a_struct_column_is_named_as_a_nested_json_field(tmp_path: Path) -> None:
    """`--text-field doc.body`: field body of the struct column doc, as in JSON Lines; a null
    struct or a null field is a null text. A column whose own name holds a dot is taken
    first."""
    docs = ["alpha beta gamma", "beta gamma delta alpha", "gamma alpha"] * 30
    structs = [None if i % 7 == 3 else {"body": None if i % 11 == 5 else doc, "lang": "en"}
               for i, doc in enumerate(docs)]
    kept = [doc for doc, st in zip(docs, structs) if st is not None and st["body"] is not None]
    pq.write_table(pa.table({"id": range(len(docs)), "doc": structs}), tmp_path / "t.parquet",
                   row_group_size=16)
    assert prep(tmp_path / "t.parquet", out=tmp_path / "a", min_count=1, text_field="doc.body",
                workers=2) == 0
    (tmp_path / "plain.txt").write_text("\n".join(kept) + "\n")
    assert prep(tmp_path / "plain.txt", out=tmp_path / "b", min_count=1) == 0
    assert shards_and_vocab(tmp_path / "a") == shards_and_vocab(tmp_path / "b")
    dotted = {"doc.body": ["delta delta"], "doc": [{"body": "alpha"}]}
    pq.write_table(pa.table(dotted), tmp_path / "dotted.parquet")
    assert prep(tmp_path / "dotted.parquet", out=tmp_path / "c", min_count=1,
                text_field="doc.body") == 0
    assert Vocab.load(tmp_path / "c").words == ["delta"]


def _bad_inputs(tmp: Path) -> None:
    good = json.dumps({"text": "fine words"})
    lines = {
        "broken.jsonl": [good, '{"text": "unclosed'],
        "array.jsonl": [good, good, '["a", "b"]'],
        "field.jsonl": [good, '{"body": "x", "id": 2}'],
        "number.jsonl": [json.dumps({"text": 12})],
        "nested.jsonl": [json.dumps({"doc": "a string, not an object"})],
        "table.json": ['[{"text": "a"},', '{"text": "b"}]'],
    }
    for name, records in lines.items():
        (tmp / name).write_text("\n".join(records) + "\n")
    data = json_lines(["some words here"] * 500)
    (tmp / "cut.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data)[:-40])
    (tmp / "cut.jsonl.xz").write_bytes(lzma.compress(data)[:-40])
    write_parquet(tmp / "column.parquet", ["some words"], column="body")
    pq.write_table(pa.table({"text": [1, 2]}), tmp / "numbers.parquet")
    # Strings Arrow did not check (some writers do not): row 50 is Latin-1, in row group 2.
    raw = pa.array([b"fine words"] * 50 + [b"caf\xe9 noir"] + [b"more words"] * 9, pa.binary())
    unchecked = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    pq.write_table(pa.table({"id": range(60), "text": unchecked}), tmp / "latin.parquet",
                   row_group_size=20)
    write_parquet(tmp / "t.parquet", ["some words here"] * 100)
    (tmp / "cut.parquet").write_bytes((tmp / "t.parquet").read_bytes()[:-100])


BYTE = len(json.dumps({"text": "fine words"})) + 1  # where the second record starts
BAD_INPUTS = {  # file: expected message
    "broken.jsonl": f"broken.jsonl: the record at byte {BYTE} is not JSON (Unterminated string",
    "array.jsonl": f"array.jsonl: the record at byte {2 * BYTE} is a JSON array, not an object",
    "field.jsonl": f"field.jsonl: the record at byte {BYTE} has no 'text' field (its fields: "
                   "body, id); name the text's field with --text-field",
    "number.jsonl": "number.jsonl: the record at byte 0 holds a JSON number in 'text', not text",
    "field.jsonl --text-field meta.text": "field.jsonl: the record at byte 0 has no "
                                          "'meta.text' field (its fields: text)",
    "nested.jsonl --text-field doc.body": "nested.jsonl: the record at byte 0 has no "
                                          "'doc.body' field (in 'doc': a JSON string)",
    "table.json": "table.json: the record at byte 0 is not JSON",
    "cut.jsonl.zst": "cut.jsonl.zst: cannot read zstd file",
    "cut.jsonl.xz": "cut.jsonl.xz: cannot read xz file",
    "column.parquet": "column.parquet: no 'text' column (its columns: id, body, url); name the "
                      "text's column with --text-field",
    "numbers.parquet": "numbers.parquet: the 'text' column holds int64, not text",
    "numbers.parquet --text-field text.body": "numbers.parquet: no 'text.body' column (its "
                                              "columns: text)",
    "cut.parquet": "cut.parquet: cannot read parquet file",
    "latin.parquet": "latin.parquet: row 50: the 'text' column's text is not valid UTF-8",
    "field.jsonl --format parquet": "field.jsonl: cannot read parquet file",
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_records_and_files_are_one_line_and_exit_2(name: str, tmp_path: Path,
                                                       capsys) -> None:
    _bad_inputs(tmp_path)
    out = tmp_path / "out"
    file, *flags = name.split()
    assert cli.main(["prepare", str(tmp_path / file), *flags, "-o", str(out), "--workers",
                     "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("w2vdist: ") and err.count("\n") == 1, err
    assert BAD_INPUTS[name] in err, err
    assert leftovers(out) == []


def test_a_bad_record_is_placed_by_its_byte_in_a_byte_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A record deep in a file read in ranges is named by its byte in the whole file."""
    records = [json.dumps({"text": f"words {i} é"}, ensure_ascii=False) for i in range(400)]
    records[317] = '{"text": 3}'
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(records) + "\n", encoding="utf-8")
    monkeypatch.setattr(corpus_text, "MIN_RANGE_BYTES", 100)
    assert len(corpus_pieces.split_pieces([path], 4)) > 10
    at = len("\n".join(records[:317]).encode("utf-8")) + 1
    assert cli.main(["prepare", str(path), "-o", str(tmp_path / "out"), "--workers", "2"]) == 2
    assert f"t.jsonl: the record at byte {at:,} holds a JSON number" in capsys.readouterr().err


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    write_parquet(tmp_path / "t.parquet", ["some words"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an install without it gives
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert cli.main(["prepare", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "t.parquet: reading Parquet needs pyarrow (pip install 'w2vdist[parquet]')" in err


def test_the_benchmark_scripts_run(tmp_path: Path) -> None:
    """benchmarks/prepare_formats.py (which fails unless every format gives the text's shards),
    benchmarks/prepare_speed.sh, benchmarks/prepare_passes.py and
    benchmarks/prepare_sentences.py (which fails unless every way gives the file's shards) and
    benchmarks/prepare_parts.py (which fails unless the joined parts equal the whole; in files
    and by --part), on a
    small corpus, and benchmarks/prepare_files.py on files of its own."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(random_corpus(7, 3000), encoding="utf-8")
    root = Path(__file__).resolve().parents[1]
    report = tmp_path / "formats.json"
    subprocess.run([sys.executable, root / "benchmarks" / "prepare_formats.py", corpus,
                    "--repeats", "1", "--files", "3", "--json", report], check=True,
                   capture_output=True)
    seconds = json.loads(report.read_text())["seconds"]
    assert set(seconds) == {"text", "jsonl", "jsonl.zst", "parquet"}
    done = subprocess.run(["bash", root / "benchmarks" / "prepare_speed.sh", corpus, "1"],
                          check=True, capture_output=True, text=True)
    assert done.stdout.splitlines()[-1].startswith("prepare_speed: ")
    subprocess.run([sys.executable, root / "benchmarks" / "prepare_passes.py", corpus,
                    "--workers", "2", "--phrases", "1", "--json", report], check=True,
                   capture_output=True)
    [run] = json.loads(report.read_text())
    assert [p["pass"] for p in run["passes"]] == ["phrases 1/1", "counting"]
    assert run["wall_s"] > 0 and run["main_cpu_s"] > 0 and run["workers_cpu_s"] >= 0
    done = subprocess.run([sys.executable, root / "benchmarks" / "prepare_sentences.py", corpus,
                           "--repeats", "1"], check=True, capture_output=True, text=True)
    assert "every way gave the file's shards" in done.stdout and "tokens " in done.stdout
    done = subprocess.run([sys.executable, root / "benchmarks" / "prepare_parts.py", corpus,
                           "--parts", "2", "--workers", "1", "--min-count", "2"], check=True,
                          capture_output=True, text=True)
    assert done.stdout.startswith("prepare_parts: 2 parts in files, workers 1: whole "), \
        done.stdout
    assert done.stdout.rstrip().endswith("the same vocabulary, token ids and sentences")
    done = subprocess.run([sys.executable, root / "benchmarks" / "prepare_parts.py", corpus,
                           "--parts", "1", "--by-part", "--workers", "1", "--min-count", "2"],
                          check=True, capture_output=True, text=True)  # a part: under 2 MB
    assert done.stdout.startswith("prepare_parts: 1 parts by --part, workers 1: "), done.stdout
    done = subprocess.run([sys.executable, root / "benchmarks" / "prepare_files.py", "--files",
                           "300", "--latency-ms", "1"], check=True, capture_output=True, text=True)
    assert done.stdout.startswith("prepare_files: 300 files, 1 ms a call: find "), done.stdout


def test_a_failed_prepare_leaves_no_counts_behind(tmp_path: Path) -> None:
    """With one worker the counts live in this process: a prepare that fails mid-count (in
    the Python API, the process lives on) must not leave them to the next one."""
    (tmp_path / "a.txt").write_text("alpha beta\n" * 50)
    (tmp_path / "b.txt").write_bytes(b"gamma\0delta\n")
    with pytest.raises(UsageError, match="not text"):
        prepare.prepare(PrepareConfig(inputs=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")],
                                      output=str(tmp_path / "bad"), workers=1, min_count=1))
    (tmp_path / "c.txt").write_text("alpha gamma\n" * 3)
    summary = prepare.prepare(PrepareConfig(inputs=[str(tmp_path / "c.txt")],
                                            output=str(tmp_path / "good"), workers=1,
                                            min_count=1))
    assert (tmp_path / "good" / "vocab.tsv").read_text() == "alpha\t3\ngamma\t3\n"
    assert summary.manifest.total_tokens == 6
