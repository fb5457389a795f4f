"""Print each WORD's k nearest words by cosine similarity (the word itself left out).

VECTORS is a word2vec file (text or binary) or a run directory / checkpoint folder. Words are
looked up exactly as written. A word not in the vocabulary is reported on stderr (with its
case variants, if any) and the others are still answered; the exit status is 0 if at least
one word was found and 2 if none was.
"""

from __future__ import annotations

import argparse
import sys

import torch

from w2vdist import settings
from w2vdist.errors import UsageError
from w2vdist.vectors import word2vec as vec
from w2vdist.vectors.config import NeighborsCommand
from w2vdist.vectors.keyed import WordVectors


def nearest(
    words: list[str], unit: torch.Tensor, rows: list[int], k: int
) -> list[list[tuple[str, float]]]:
    """The k most similar words to each of `rows`, given unit-length vectors."""
    scores = unit[rows] @ unit.T
    scores[torch.arange(len(rows)), torch.tensor(rows)] = -torch.inf
    top = scores.topk(min(k, len(words) - 1), dim=1)
    return [
        [(words[j], s) for j, s in zip(idx.tolist(), val.tolist())]
        for idx, val in zip(top.indices, top.values)
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, NeighborsCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(NeighborsCommand, args)
    wv = WordVectors.load(cmd.vectors, cmd.table)
    words, matrix = wv.index_to_key, wv.vectors
    index = {w: i for i, w in enumerate(words)}
    found = [w for w in cmd.words if w in index]
    for w in cmd.words:
        if w not in index:
            variants = [v for v in words if v.lower() == w.lower()][:3]
            hint = f" (did you mean {', '.join(map(repr, variants))}?)" if variants else ""
            print(
                f"w2vdist: {w!r} is not in the vocabulary of {cmd.vectors}{hint}", file=sys.stderr
            )
    if not found:
        raise UsageError(f"{cmd.vectors}: none of the words is in the vocabulary")
    if len(words) < 2:
        raise UsageError(f"{cmd.vectors}: one word has no neighbours")
    unit = vec.unit_rows(matrix.float())
    for w, neighbours in zip(found, nearest(words, unit, [index[w] for w in found], cmd.k)):
        print(w)
        for other, cosine in neighbours:
            print(f"  {cosine:8.4f}  {other}")
    return 0
