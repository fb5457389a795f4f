"""Write a run's trained vectors in word2vec text or binary format (gensim, word2vec.c).

The source is a run directory (its newest complete checkpoint) or one checkpoint folder, or a
vectors file in any format `WordVectors.load` reads (GloVe to word2vec binary, text to
binary, compressing: gensim's glove2word2vec and more). The
file starts with the header `V D` and holds the words most frequent first (--limit N: only the
first N); --table picks the input vectors (the usual word vectors), the output (context)
vectors or their average. With --counts, a `word count` file like word2vec.c's -save-vocab is
written too (gensim reads it as `fvocab`).

Words that cannot be written: both formats separate fields by ASCII whitespace, so a word that
is empty or contains a space, tab, line break, carriage return, vertical tab or form feed would
make the file unreadable (other Unicode spaces, as in GloVe's 840B words, are kept, as gensim
writes and reads them). export refuses such a vocabulary with an error naming the first such
word and its row, and writes nothing; with --skip-unwritable it leaves those words out instead
(the header counts only the words written) and says how many it dropped.

The format follows OUT's extension (`.bin` binary; `.txt`, `.vec` text; before a compression
suffix, `.gz`, `.bz2`, `.xz` or `.zst`, which compresses it) unless --format says; a --format
that contradicts the extension is refused. Beside OUT, `OUT.json` records how the
vectors were made: the run's resolved settings, prepare's tokenizer, the vocabulary hash, the
corpus summary, the eval scores logged at the step exported and the w2vdist version.

Files are written beside OUT under a temporary name, fsynced and renamed, so OUT is either
absent, the previous file, or complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from w2vdist import settings
from w2vdist.corpus import remote
from w2vdist.errors import UsageError
from w2vdist.files import write_text
from w2vdist.training import checkpoint
from w2vdist.training.metrics import METRICS_FILE
from w2vdist.vectors import word2vec as vec
from w2vdist.vectors.config import ExportCommand
from w2vdist.vectors.evaluate import SCORE_KINDS
from w2vdist.vectors.keyed import WordVectors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, ExportCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(ExportCommand, args, prefix="export.")
    source, out = Path(cmd.source), Path(cmd.output)
    at_url = remote.is_url(cmd.source)  # a vectors file there, fetched by `WordVectors.load`
    if not source.exists() and not at_url:
        raise UsageError(f"{source}: no such run directory, checkpoint folder or vectors file")
    counts_path = Path(cmd.counts) if cmd.counts else None
    for path in (out, counts_path):
        if path is not None:
            vec.check_writable(path)
    if counts_path is not None and counts_path.resolve() == out.resolve():
        raise UsageError(f"{counts_path}: --counts must differ from the vectors file")
    if source.is_file() and source.resolve() == out.resolve():
        raise UsageError(f"{out}: the vectors file to convert; write to another name")
    binary = vec.binary_format(out, None if cmd.format is None else cmd.format == "binary")
    folder = checkpoint.resolve(source) if source.is_dir() else None  # one step, read once
    wv = WordVectors.load(cmd.source if at_url else folder or source, cmd.table, cmd.limit)
    if counts_path is not None and wv.counts is None:
        raise UsageError(f"{cmd.source}: a vectors file carries no counts for --counts (a run "
                         "does)")
    words, matrix = wv.index_to_key, wv.vectors
    counts = None if wv.counts is None else wv.counts.tolist()
    bad = vec.unwritable_rows(words)
    if bad and cmd.skip_unwritable:
        keep = sorted(set(range(len(words))) - set(bad))
        words, matrix = [words[i] for i in keep], matrix[keep]
        counts = counts and [counts[i] for i in keep]
        first = f"{wv.index_to_key[bad[0]]!r} (row {bad[0]})"
        print(f"w2vdist: left out {len(bad)} unwritable word(s), first {first}", file=sys.stderr)
    vec.write_word2vec(out, words, matrix, binary=binary)
    if counts_path is not None and counts is not None:
        vec.write_counts(counts_path, words, counts)
    converted = cmd.source if at_url else None if source.is_dir() else str(source.absolute())
    write_text(sidecar(out), metadata(wv, cmd.table, _scores(folder), len(words), converted))
    kind = "binary" if binary else "text"
    print(f"wrote {len(words)} x {matrix.shape[1]} {cmd.table} vectors to {out} ({kind}), "
          f"settings in {sidecar(out)}")
    return 0


def _scores(folder: Path | None) -> dict[str, float]:
    """The eval scores logged at the step of the checkpoint exported (`folder`), if any, from
    the metrics.jsonl of the run it belongs to: the last of them, since a run resumed from an
    earlier checkpoint logs a step again; a line a killed run left unfinished is passed over."""
    if folder is None or folder.parent.name != checkpoint.CHECKPOINTS:
        return {}
    path, step = folder.parent.parent / METRICS_FILE, checkpoint.step_of(folder)
    if step is None or not path.is_file():
        return {}
    found: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step") == step:
            found = {k: v for k, v in record.items() if k.startswith(SCORE_KINDS)} or found
    return found


def sidecar(path: Path) -> Path:
    """Where an export's metadata goes: `vectors.bin` -> `vectors.bin.json`."""
    return path.with_name(path.name + ".json")


def metadata(vectors: WordVectors, table: str, scores: dict[str, Any] | None = None,
             words: int | None = None, converted: str | None = None) -> str:
    """The JSON an export writes beside the vectors: how they were made (`words`: how many
    were written, when fewer than the vectors hold; `converted`: the vectors file they came
    from, which says no more)."""
    from w2vdist import __version__

    return json.dumps({
        "w2vdist_version": __version__,
        "words": len(vectors) if words is None else words,
        "dim": vectors.vector_size,
        "table": table,
        "tokenizer": vectors.tokenizer,
        "spec": vectors.spec,
        "scores": scores or {},
        **({"converted_from": converted} if converted else {}),
    }, indent=2) + "\n"
