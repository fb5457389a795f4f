"""Print the scores of word vectors on analogy and word-similarity files (`w2vdist eval`).

VECTORS is a word2vec file (text or binary, e.g. written by gensim or word2vec.c) or a run
directory / checkpoint folder, so every model is scored by the same code (`evaluate`): per
analogy section, semantic, syntactic and total accuracy with coverage; Spearman and Pearson
with the OOV rate, for each file given; `--json OUT` writes the same numbers (an undefined
correlation as null; several files of a kind as a list of their reports).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from w2vdist import settings
from w2vdist.errors import UsageError
from w2vdist.files import write_text
from w2vdist.vectors import word2vec as vec
from w2vdist.vectors.config import EvalCommand
from w2vdist.vectors.evaluate import (AnalogyScores, SimilarityScores, analogy_scores,
                                      similarity_scores)
from w2vdist.vectors.keyed import WordVectors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, EvalCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(EvalCommand, args)
    cfg = cmd.eval
    if not cfg.analogies and not cfg.similarity:
        raise UsageError("eval: give --eval.analogies FILE and/or --eval.similarity FILE")
    for name in (*cfg.analogies, *cfg.similarity):
        if not Path(name).is_file():
            raise UsageError(f"{name}: file not found")
    if cmd.json:
        vec.check_writable(Path(cmd.json))
    # Both scorers read only the first restrict_vocab words: the rest is not loaded
    wv = WordVectors.load(cmd.vectors, cmd.table, limit=cfg.restrict_vocab)
    words, matrix = wv.index_to_key, wv.vectors
    limit = len(words)
    report: dict[str, Any] = {"vectors": cmd.vectors, "table": cmd.table, "restrict_vocab": limit}
    print(f"{cmd.vectors}: {matrix.shape[1]} dims, using the {limit} most frequent words")
    found: dict[str, list[dict[str, Any]]] = {"analogies": [], "similarity": []}
    for path in cfg.analogies:
        analogies = analogy_scores(words, matrix, path, cfg.restrict_vocab,
                                   method=cfg.analogy_method)
        _print_analogies(f"{path} ({cfg.analogy_method})", analogies)
        found["analogies"].append({
            "file": path,
            "method": cfg.analogy_method,
            **analogies.metrics(),
            "sections": [{**asdict(s), "accuracy": s.accuracy} for s in analogies.sections],
        })
    for path in cfg.similarity:
        similarity = similarity_scores(words, matrix, path, cfg.restrict_vocab)
        _print_similarity(path, similarity)
        found["similarity"].append({"file": path, **similarity.metrics()})
    # One file's report as it is; several files' as a list of them, in the order given.
    report.update({kind: files[0] if len(files) == 1 else files
                   for kind, files in found.items() if files})
    if cmd.json:
        write_text(cmd.json, json.dumps(_finite_or_null(report), indent=2) + "\n")
    return 0


def _print_analogies(path: str, scores: AnalogyScores) -> None:
    print(f"\nanalogies: {path}")
    print(f"  {'section':<32} {'correct':>8} {'scored':>8} {'questions':>9} {'accuracy':>9}")
    semantic = [s for s in scores.sections if not s.syntactic]
    syntactic = [s for s in scores.sections if s.syntactic]
    summaries = [
        scores.summary(n, p) for n, p in [("semantic", semantic), ("syntactic", syntactic)]
    ]
    for s in [*scores.sections, None, *summaries, scores.summary("total", scores.sections)]:
        if s is None:
            print("  " + "-" * 70)
            continue
        counts = f"{s.correct:>8} {s.evaluated:>8} {s.questions:>9}"
        print(f"  {s.name:<32} {counts} {100 * s.accuracy:>8.2f}%")
    m = scores.metrics()
    print(f"  coverage {100 * m['coverage']:.2f}% ({m['oov']} of {m['questions']} questions OOV)")
    _print_skipped(path, scores.skipped_lines)


def _print_similarity(path: str, scores: SimilarityScores) -> None:
    m = scores.metrics()
    print(f"\nsimilarity: {path}")
    print(
        f"  spearman {scores.spearman:.4f}  pearson {scores.pearson:.4f}  "
        f"pairs {scores.pairs}  OOV {scores.oov} ({100 * m['oov_rate']:.2f}%)"
    )
    _print_skipped(path, scores.skipped_lines)


def _print_skipped(path: str, lines: list[int]) -> None:
    if lines:
        print(f"  skipped {len(lines)} malformed line(s), first {path}:{lines[0]}")


def _finite_or_null(value: Any) -> Any:
    """JSON has no NaN: an undefined correlation is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return value
