"""`w2vdist prepare` on a corpus file, on standard input and on sentences from Python.

    python benchmarks/prepare_sentences.py CORPUS [--workers 2 --repeats 2]

Five ways to the same shards, taking turns `--repeats` times, with `--workers` workers and
min_count 5. As commands (each a subprocess, its start timed too): the file named (`w2vdist
prepare CORPUS`) and the file piped in (`cat CORPUS | w2vdist prepare -`). In this process:
the file named (`w2vdist.prepare(CORPUS)`), its lines as strings
(`w2vdist.prepare(sentences=lines)`) and as token lists (prepare's tokenizer applied
beforehand, untimed, then `sentences=tokens`, copied and split on whitespace). Every output
must hold the file's vocabulary and shards (the script fails otherwise). Printed: the best
seconds of each way and its ratio to the file named the same way (command or call).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import w2vdist
from w2vdist.corpus.config import PrepareConfig
from w2vdist.corpus.shards import Manifest
from w2vdist.corpus.tokenize import Tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    flags = ["--min-count", "5", "--workers", str(args.workers), "--overwrite"]
    lines = args.corpus.read_text(encoding="utf-8").splitlines()
    tokenize = Tokenizer.from_config(PrepareConfig())  # prepare's defaults
    tokens = [tokenize(line) for line in lines]

    def cli(out: Path, stdin: bool) -> None:
        with open(args.corpus, "rb") as f:
            subprocess.run([sys.executable, "-m", "w2vdist", "prepare",
                            "-" if stdin else str(args.corpus), "-o", str(out), *flags],
                           stdin=f if stdin else None, check=True, stdout=subprocess.DEVNULL)

    def python(out: Path, sentences: list | None) -> None:
        w2vdist.prepare(args.corpus if sentences is None else (), out, sentences=sentences,
                        min_count=5, workers=args.workers, overwrite=True)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ways: dict[str, Callable[[Path], None]] = {
            "file": lambda out: cli(out, False),
            "stdin": lambda out: cli(out, True),
            "file-py": lambda out: python(out, None),
            "strings": lambda out: python(out, lines),
            "tokens": lambda out: python(out, tokens),
        }
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, way in ways.items():
                start = time.perf_counter()
                way(root / name)
                seconds[name].append(time.perf_counter() - start)
        expected = _contents(root / "file")
        for name in ways:
            if _contents(root / name) != expected:
                sys.exit(f"prepare_sentences: {name} gave other shards or vocabulary")
        words = Manifest.load(root / "file").stats["raw_tokens"]

    best = {name: min(s) for name, s in seconds.items()}
    print(f"{words:,} raw words, {len(lines):,} lines, {args.workers} workers, best of "
          f"{args.repeats}; every way gave the file's shards and vocabulary")
    print(f"{'way':<8} {'seconds':>8} {'words/s':>11} {'vs file':>8}")
    for name in ways:
        base = best["file" if name in ("file", "stdin") else "file-py"]
        print(f"{name:<8} {best[name]:>8.2f} {words / best[name]:>11,.0f} "
              f"{base / best[name]:>7.2f}x")


def _contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.json"}


if __name__ == "__main__":
    main()
