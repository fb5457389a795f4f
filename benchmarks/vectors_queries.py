"""WordVectors against gensim's KeyedVectors on one large vectors file, in one process.

    python benchmarks/vectors_queries.py [--words 1000000 --dim 300 --queries 20 --file F]
                                         [--name vectors.bin.gz]

Writes random vectors in word2vec binary format (compressed as `--name`'s suffix says: .gz,
.bz2, .xz) or reads `--file` (e.g. GoogleNews' .bin.gz), loads them with both, and times the
load and each kind of query (the best of two rounds of `--queries` for each library). Prints
milliseconds per query and gensim's time over ours.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gensim.models import KeyedVectors

from w2vdist import WordVectors
from w2vdist.vectors import word2vec as w2v


def timed(fn: Callable[[int], object], queries: int) -> float:
    """Milliseconds a call, after one call to warm up."""
    fn(0)
    started = time.perf_counter()
    for i in range(1, queries + 1):
        fn(i)
    return (time.perf_counter() - started) / queries * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=300)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--file", type=Path, help="a word2vec binary file to use instead")
    p.add_argument("--name", default="vectors.bin", help="the written file's name")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.file
        if path is None:
            path = Path(scratch) / args.name
            rng = np.random.default_rng(0)
            matrix = rng.standard_normal((args.words, args.dim), dtype=np.float32)
            w2v.write_word2vec(path, [f"w{i}" for i in range(args.words)], matrix, binary=True)
        started = time.perf_counter()
        wv = WordVectors.load(path)
        ours_load = time.perf_counter() - started
        started = time.perf_counter()
        kv = KeyedVectors.load_word2vec_format(str(path), binary=True)
        theirs_load = time.perf_counter() - started
        size = path.stat().st_size
    print(f"{len(wv):,} x {wv.vector_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"load {path.name} ({size / 1e9:.2f} GB): w2vdist {ours_load:.1f} s, "
          f"gensim {theirs_load:.1f} s")
    words = wv.index_to_key

    def word(i: int, k: int = 0) -> str:
        return words[(i * 7919 + k) % min(len(words), 30_000)]

    kinds = {
        "most_similar(word)": lambda lib: lambda i: lib.most_similar(word(i), topn=10),
        "most_similar(b, c, -a)": lambda lib: lambda i: lib.most_similar(
            [word(i, 1), word(i, 2)], [word(i)], topn=10),
        "most_similar_cosmul(b, c, -a)": lambda lib: lambda i: lib.most_similar_cosmul(
            [word(i, 1), word(i, 2)], [word(i)], topn=10),
    }
    print(f"{'query':<32}{'w2vdist ms':>12}{'gensim ms':>12}{'ratio':>8}")
    for name, make in kinds.items():
        ours = min(timed(make(wv), args.queries), timed(make(wv), args.queries))
        theirs = min(timed(make(kv), args.queries), timed(make(kv), args.queries))
        print(f"{name:<32}{ours:>12.1f}{theirs:>12.1f}{theirs / ours:>8.2f}")


if __name__ == "__main__":
    main()
