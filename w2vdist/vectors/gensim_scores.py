"""gensim's `evaluate_word_analogies` and `evaluate_word_pairs`, answered in gensim's shapes by
the scorers of `evaluate` (the same answers, tested against gensim): code written for gensim's
KeyedVectors runs unchanged on `WordVectors`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from w2vdist.errors import UsageError
from w2vdist.files import numbered_lines
from w2vdist.vectors.evaluate import (MAX_SCORES, answered_right, case_index, restricted,
                                      unit_table)


def gensim_analogies(
    words: Sequence[str], vectors: torch.Tensor, path: str | Path, restrict_vocab: int,
    case_insensitive: bool = True, dummy4unknown: bool = False, method: str = "3cosadd",
) -> tuple[float, list[dict[str, Any]]]:
    """The answer of gensim's evaluate_word_analogies, in its shape: the total accuracy, and
    each section as the file heads it (then "Total accuracy") with its correct and incorrect
    questions, upper-cased if `case_insensitive`; OOV questions counted incorrect with
    `dummy4unknown`, else left out."""
    path = Path(path)
    limit = restricted(words, vectors, restrict_vocab)
    lookup, canonical = case_index(words, limit, case_insensitive)
    sections: list[dict[str, Any]] = []
    entries: list[tuple[int, tuple[str, ...], int | None]] = []  # section, words, question
    questions: list[list[int]] = []
    for lineno, line in numbered_lines(path):
        if line.startswith(": "):
            sections.append({"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []})
            continue
        quad = tuple(w.upper() if case_insensitive else w for w in line.split())
        if quad and not sections:
            raise UsageError(f"{path}:{lineno}: question before the first ': section' line")
        ids = [lookup.get(w) for w in quad]
        if len(quad) != 4 or (None in ids and not dummy4unknown):
            continue
        entries.append((len(sections) - 1, quad, None if None in ids else len(questions)))
        if None not in ids:
            questions.append(ids)  # type: ignore[arg-type]
    hits = answered_right(unit_table(vectors, limit), canonical, questions, method,
                          MAX_SCORES).tolist()
    for section, quad, question in entries:
        right = question is not None and hits[question]
        sections[section]["correct" if right else "incorrect"].append(quad)
    total = {"section": "Total accuracy", **{k: [q for s in sections for q in s[k]]
                                              for k in ("correct", "incorrect")}}
    answered = len(total["correct"]) + len(total["incorrect"])
    return (len(total["correct"]) / answered if answered else 0.0), [*sections, total]


def gensim_pairs(
    words: Sequence[str], vectors: torch.Tensor, path: str | Path, restrict_vocab: int,
    delimiter: str = "\t", encoding: str = "utf8", case_insensitive: bool = True,
    dummy4unknown: bool = False,
) -> tuple[Any, Any, float]:
    """The answer of gensim's evaluate_word_pairs, in its shape: scipy's Pearson and Spearman
    results (coefficient and p-value) and the percentage of pairs with an unknown word (with
    `dummy4unknown`, scored 0 and counted against the pairs scored)."""
    try:
        from scipy import stats
    except ImportError:
        raise ImportError("evaluate_word_pairs gives scipy's results, as gensim does: "
                          "pip install scipy") from None
    limit = restricted(words, vectors, restrict_vocab)
    lookup, _ = case_index(words, limit, case_insensitive)
    unit = unit_table(vectors, limit)
    gold: list[float] = []
    model: list[float] = []
    oov = 0
    with open(path, encoding=encoding) as f:
        for line in f:
            if line.startswith("#"):
                continue
            try:
                a, b, score = (w.upper() if case_insensitive else w for w in line.split(delimiter))
                value = float(score)
            except ValueError:
                continue
            if a not in lookup or b not in lookup:
                oov += 1
                if dummy4unknown:
                    gold.append(value)
                    model.append(0.0)
                continue
            gold.append(value)
            model.append(float(unit[lookup[a]] @ unit[lookup[b]]))
    if not gold:
        raise ValueError(f"{path}: no pair scored (no 'word{delimiter}word{delimiter}score' "
                         "line, or none with both words in the vocabulary)")
    oov_ratio = oov / (len(gold) if dummy4unknown else len(gold) + oov) * 100
    return stats.pearsonr(gold, model), stats.spearmanr(gold, model), oov_ratio
