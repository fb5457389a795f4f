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
from w2vdist import settings
from w2vdist.config import ExportCommand
from w2vdist.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, ExportCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(ExportCommand, args)
    source, out = Path(cmd.source), Path(cmd.output)
    if not source.is_dir():
        raise UsageError(f"{source}: not a run directory or checkpoint folder")
    counts_path = Path(cmd.counts) if cmd.counts else None
    for path in (out, counts_path):
        if path is not None:
            vec.check_writable(path)
    if counts_path is not None and counts_path.resolve() == out.resolve():
        raise UsageError(f"{counts_path}: --counts must differ from the vectors file")
    vocab, matrix = vec.load_table(source, cmd.table)
    words, counts = vocab.words, vocab.counts.tolist()
    bad = vec.unwritable_rows(words)
    if bad and cmd.skip_unwritable:
        keep = sorted(set(range(len(words))) - set(bad))
        words, counts, matrix = [words[i] for i in keep], [counts[i] for i in keep], matrix[keep]
        first = f"{vocab.words[bad[0]]!r} (row {bad[0]})"
        print(f"w2vdist: left out {len(bad)} unwritable word(s), first {first}", file=sys.stderr)
    vec.write_word2vec(out, words, matrix, binary=cmd.format == "binary")
    if counts_path is not None:
        vec.write_counts(counts_path, words, counts)
    print(f"wrote {len(words)} x {matrix.shape[1]} {cmd.table} vectors to {out} ({cmd.format})")
    return 0
