"""Write a run's trained vectors in word2vec text or binary format (gensim, word2vec.c).

The source is a run directory (its newest complete checkpoint) or one checkpoint folder. The
file starts with the header `V D` and holds the words most frequent first; --table picks the
input vectors (the usual word vectors), the output (context) vectors or their average. With
--counts, a `word count` file like word2vec.c's -save-vocab is written too (gensim reads it
as `fvocab`).

Words that cannot be written: both formats separate fields by whitespace, so a word that is
empty or contains any whitespace character would make the file unreadable. export refuses
such a vocabulary with an error naming the first such word and its row, and writes nothing;
with --skip-unwritable it leaves those words out instead (the header counts only the words
written) and says how many it dropped.

Files are written beside OUT under a temporary name, fsynced and renamed, so OUT is either
absent, the previous file, or complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from w2vdist.vectors import word2vec as vec
from w2vdist.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="RUN_DIR_OR_CHECKPOINT", help="run directory or checkpoint folder"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="vectors file to write"
    )
    parser.add_argument(
        "--format",
        choices=("text", "binary"),
        default="text",
        help="word2vec format (default text)",
    )
    parser.add_argument(
        "--table",
        choices=vec.TABLES,
        default="input",
        help="input (word) vectors, output (context) vectors or their average (default input)",
    )
    parser.add_argument(
        "--counts", metavar="FILE", help="also write 'word count' lines (word2vec -save-vocab)"
    )
    parser.add_argument(
        "--skip-unwritable",
        action="store_true",
        help="leave out words that are empty or contain whitespace instead of refusing to export",
    )


def command(args: argparse.Namespace) -> int:
    source, out = Path(args.source), Path(args.output)
    if not source.is_dir():
        raise UsageError(f"{source}: not a run directory or checkpoint folder")
    counts_path = Path(args.counts) if args.counts else None
    for path in (out, counts_path):
        if path is not None:
            vec.check_writable(path)
    if counts_path is not None and counts_path.resolve() == out.resolve():
        raise UsageError(f"{counts_path}: --counts must differ from the vectors file")
    vocab, matrix = vec.load_table(source, args.table)
    words, counts = vocab.words, vocab.counts.tolist()
    bad = vec.unwritable_rows(words)
    if bad and args.skip_unwritable:
        keep = sorted(set(range(len(words))) - set(bad))
        words, counts, matrix = [words[i] for i in keep], [counts[i] for i in keep], matrix[keep]
        first = f"{vocab.words[bad[0]]!r} (row {bad[0]})"
        print(f"w2vdist: left out {len(bad)} unwritable word(s), first {first}", file=sys.stderr)
    vec.write_word2vec(out, words, matrix, binary=args.format == "binary")
    if counts_path is not None:
        vec.write_counts(counts_path, words, counts)
    print(f"wrote {len(words)} x {matrix.shape[1]} {args.table} vectors to {out} ({args.format})")
    return 0
