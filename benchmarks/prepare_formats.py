"""`w2vdist prepare` on one corpus written in each input format, same session, same shards.

    python benchmarks/prepare_formats.py CORPUS [--workers 2 --files 4 --repeats 2 \
        --formats text,jsonl,jsonl.zst,parquet --json OUT]

The text corpus (one sentence or paragraph a line) is grouped into documents of five lines, as
a dataset's records hold them, and written in `--files` files per format: plain text, JSON Lines
(plain and zstd) and Parquet (row groups of 20,000 documents). Each format is prepared
`--repeats` times, the formats taking turns, with `--workers` workers and min_count 5; every
output must hold the same vocabulary and shards as the text's (the script fails otherwise).
Printed: the best wall-clock seconds of the whole command per format, raw words/s, and the
ratio to text.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

FORMATS = ("text", "jsonl", "jsonl.zst", "parquet")
DOC_LINES = 5
ROWS_PER_GROUP = 20_000


def write_formats(corpus: Path, out: Path, files: int, formats: list[str]) -> dict[str, list[Path]]:
    """The corpus in each format, cut into `files` files of whole documents."""
    lines = corpus.read_text(encoding="utf-8").rstrip("\n").split("\n")
    docs = ["\n".join(lines[i : i + DOC_LINES]) for i in range(0, len(lines), DOC_LINES)]
    per = -(-len(docs) // files)
    parts = [docs[i : i + per] for i in range(0, len(docs), per)]
    written: dict[str, list[Path]] = {f: [] for f in formats}
    for n, part in enumerate(parts):
        records = "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(part))
        payloads = {
            "text": "".join(d + "\n" for d in part).encode("utf-8"),
            "jsonl": records.encode("utf-8"),
            "jsonl.zst": zstandard.ZstdCompressor().compress(records.encode("utf-8")),
        }
        for name in formats:
            path = out / f"part-{n}.{'txt' if name == 'text' else name}"
            if name == "parquet":
                pq.write_table(pa.table({"id": range(len(part)), "text": part}), path,
                               row_group_size=ROWS_PER_GROUP)
            else:
                path.write_bytes(payloads[name])
            written[name].append(path)
    return written


def prepare(files: list[Path], out: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "w2vdist", "prepare", *map(str, files), "-o",
                    str(out), "--min-count", "5", "--workers", str(workers), "--overwrite"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    formats = args.formats.split(",")
    if formats[0] != "text" or not set(formats) <= set(FORMATS):
        parser.error(f"--formats: text first, then any of {', '.join(FORMATS[1:])}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        inputs = write_formats(args.corpus, root / "in", args.files, formats)
        seconds: dict[str, list[float]] = {f: [] for f in formats}
        for _ in range(args.repeats):
            for name in formats:
                seconds[name].append(prepare(inputs[name], root / name, args.workers))
        expected = contents(root / "text")
        for name in formats[1:]:
            if contents(root / name) != expected:
                sys.exit(f"prepare_formats: {name} gave other shards or vocabulary than text")
        manifest = json.loads((root / "text" / "manifest.json").read_text())
        words = manifest["stats"]["raw_tokens"]
        sizes = {f: sum(p.stat().st_size for p in inputs[f]) for f in formats}

    best = {f: min(s) for f, s in seconds.items()}
    print(f"{words:,} raw words in {args.files} files, {args.workers} workers, best of "
          f"{args.repeats}; every format gave the text's shards and vocabulary")
    print(f"{'format':<10} {'MB':>7} {'seconds':>8} {'words/s':>11} {'vs text':>8}")
    for name in formats:
        print(f"{name:<10} {sizes[name] / 1e6:>7.1f} {best[name]:>8.2f} "
              f"{words / best[name]:>11,.0f} {best['text'] / best[name]:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"words": words, "workers": args.workers,
                                         "files": args.files, "seconds": seconds,
                                         "bytes": sizes}, indent=2) + "\n")


if __name__ == "__main__":
    main()
