"""A corpus prepared in parts, as on several machines, against one `prepare` of the whole.

    python benchmarks/prepare_parts.py CORPUS [--parts 4 --workers 2 --min-count 5] [--by-part]

CORPUS (one text file) is cut by lines into PARTS files, or with `--by-part` read by each
part's commands as `CORPUS --part K/PARTS`, as on machines sharing one big file (which `--part`
cuts at whole megabytes, a Parquet table between row groups: CORPUS must hold a megabyte or a
row group a part). Each step runs as its own command, one after the other on this machine,
and is timed: the whole prepared at once; each part's words counted (`prepare --counts-only`);
each part prepared with the summed counts (`--vocab`); the parts joined (`w2vdist join`). With a machine a part, the steps' wall time
would be the slowest part's count, then the slowest part's prepare, then the join; the
script prints that and its ratio to the whole, and fails unless the joined corpus holds the
whole's vocabulary, token ids and sentence lengths.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from w2vdist.corpus.shards import Manifest, ShardReader


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "w2vdist", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def tokens_and_lengths(corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every token id and sentence length of a prepared corpus, in order (the tests compare
    corpora by them too)."""
    manifest, tokens, lengths = Manifest.load(corpus), [], []
    for path, shard in zip(manifest.shard_paths(corpus), manifest.shards):
        reader = ShardReader(path, shard.samples)
        for sample in range(shard.samples):
            read = reader.read(sample)
            tokens.append(read[0])
            lengths.append(read[1])
    return np.concatenate(tokens), np.concatenate(lengths)


def content(corpus: Path) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The vocabulary's bytes, every token id and every sentence length, in order."""
    return ((corpus / "vocab.tsv").read_bytes(), *tokens_and_lengths(corpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--by-part", action="store_true", help="prepare --part K/N of CORPUS")
    args = parser.parse_args()
    common = ["--workers", str(args.workers), "--min-count", str(args.min_count)]
    with tempfile.TemporaryDirectory(prefix="prepare-parts-") as tmp:
        root = Path(tmp)
        if args.by_part:
            parts = [[str(args.corpus), "--part", f"{k}/{args.parts}"] for k in range(args.parts)]
        else:
            lines = args.corpus.read_bytes().splitlines(keepends=True)
            size = -(-len(lines) // args.parts)
            parts = []
            for k in range(args.parts):
                parts.append([str(root / f"part-{k}.txt")])
                Path(parts[-1][0]).write_bytes(b"".join(lines[k * size : (k + 1) * size]))
            del lines
        whole = timed("prepare", str(args.corpus), "-o", str(root / "whole"), *common)
        counts = [timed("prepare", *part, "-o", str(root / f"counts-{k}"), "--counts-only",
                        "--workers", str(args.workers)) for k, part in enumerate(parts)]
        summed = ",".join(str(root / f"counts-{k}") for k in range(args.parts))
        prepared = [timed("prepare", *part, "-o", str(root / f"shards-{k}"), "--vocab", summed,
                          *common) for k, part in enumerate(parts)]
        join = timed("join", *(str(root / f"shards-{k}") for k in range(args.parts)), "-o",
                     str(root / "joined"))
        ours, theirs = content(root / "joined"), content(root / "whole")
        if ours[0] != theirs[0] or not all(np.array_equal(a, b) for a, b in zip(ours[1:],
                                                                                 theirs[1:])):
            sys.exit("prepare_parts: the joined parts differ from the whole prepared at once")
    machines = max(counts) + max(prepared) + join
    how = "by --part" if args.by_part else "in files"
    print(f"prepare_parts: {args.parts} parts {how}, workers {args.workers}: whole {whole:.2f} s; "
          f"counts {', '.join(f'{s:.2f}' for s in counts)} s; prepared "
          f"{', '.join(f'{s:.2f}' for s in prepared)} s; join {join:.2f} s; a machine a part: "
          f"{machines:.2f} s, {whole / machines:.2f}x the whole's speed; the same vocabulary, "
          "token ids and sentences")


if __name__ == "__main__":
    main()
