"""Score word vectors on analogy questions and word-similarity pairs, as gensim does: for
`w2vdist eval` (`vectors/report.py`), a training run's checkpoints and `WordVectors`.

Analogies (questions-words format: `: section` lines, then `a b c d` lines): 3CosAdd over unit
vectors (or, with --eval.analogy-method 3cosmul, Levy and Goldberg's 3CosMul as gensim's
most_similar_cosmul computes it: cos(d, b) x cos(d, c) / (cos(d, a) + 1e-6), each cosine shifted to
[0, 1]), searching the --restrict-vocab most frequent words, case-insensitively (a word's
most frequent case variant stands for it). A question with a word outside those is skipped and
counted as OOV; the three question words are never the answer. Accuracy is over the questions
scored, exactly gensim's evaluate_word_analogies(restrict_vocab=N, case_insensitive=True,
dummy4unknown=False); coverage is the share of questions scored. Sections whose name starts
with "gram" are syntactic, the others semantic.

Similarity (`w1 w2 score` lines, tab or whitespace separated, `#` comments): Spearman and
Pearson correlation between cosine and the human score over the pairs whose words are both in
the restricted vocabulary, as gensim's evaluate_word_pairs.

Malformed lines are skipped and reported, as gensim does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from w2vdist.errors import UsageError
from w2vdist.files import numbered_lines
from w2vdist.vectors import word2vec as vec
from w2vdist.vectors.config import ANALOGY_METHODS, EvalConfig, score_name

DEFAULT_RESTRICT_VOCAB = 30_000
MAX_SCORES = 1 << 24  # question x word scores per matrix product: 64 MiB of float32


@dataclass
class Section:
    name: str
    questions: int = 0  # well-formed question lines, OOV included
    evaluated: int = 0  # questions whose four words are all in the restricted vocabulary
    correct: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.evaluated if self.evaluated else 0.0

    @property
    def syntactic(self) -> bool:
        return self.name.startswith("gram")


@dataclass
class AnalogyScores:
    sections: list[Section]
    skipped_lines: list[int] = field(default_factory=list)

    def summary(self, name: str, parts: Sequence[Section]) -> Section:
        return Section(
            name,
            sum(s.questions for s in parts),
            sum(s.evaluated for s in parts),
            sum(s.correct for s in parts),
        )

    def metrics(self) -> dict[str, float | int]:
        """Plain numbers, ready to log as `analogy/<key>`."""
        total = self.summary("total", self.sections)
        out: dict[str, float | int] = {
            "total": total.accuracy,
            "semantic": self.summary(
                "semantic", [s for s in self.sections if not s.syntactic]
            ).accuracy,
            "syntactic": self.summary(
                "syntactic", [s for s in self.sections if s.syntactic]
            ).accuracy,
            "coverage": total.evaluated / total.questions if total.questions else 0.0,
            "questions": total.questions,
            "evaluated": total.evaluated,
            "correct": total.correct,
            "oov": total.questions - total.evaluated,
            "skipped_lines": len(self.skipped_lines),
        }
        out.update({f"section/{s.name}": s.accuracy for s in self.sections})
        return out


@dataclass
class SimilarityScores:
    spearman: float  # NaN when fewer than two pairs could be scored
    pearson: float
    pairs: int  # pairs scored
    oov: int  # pairs skipped for a word outside the restricted vocabulary
    skipped_lines: list[int] = field(default_factory=list)

    def metrics(self) -> dict[str, float | int]:
        """Plain numbers, ready to log as `similarity/<key>`."""
        total = self.pairs + self.oov
        return {
            "spearman": self.spearman,
            "pearson": self.pearson,
            "pairs": self.pairs,
            "oov": self.oov,
            "oov_rate": self.oov / total if total else 0.0,
            "skipped_lines": len(self.skipped_lines),
        }


def score_analogies(
    words: Sequence[str],
    vectors: torch.Tensor,
    path: str | Path,
    restrict_vocab: int = DEFAULT_RESTRICT_VOCAB,
    method: str = "3cosadd",
) -> dict[str, float | int]:
    """Analogy accuracies (total, semantic, syntactic, per section) and coverage."""
    return analogy_scores(words, vectors, path, restrict_vocab, method=method).metrics()


def score_similarity(
    words: Sequence[str],
    vectors: torch.Tensor,
    path: str | Path,
    restrict_vocab: int | None = None,
) -> dict[str, float | int]:
    """Spearman / Pearson correlation with human scores and the OOV rate."""
    return similarity_scores(words, vectors, path, restrict_vocab).metrics()


ANALOGY, SIMILARITY = SCORE_KINDS = ("analogy", "similarity")  # every score key's start


def scores(cfg: EvalConfig, words: Sequence[str], vectors: torch.Tensor) -> dict[str, float]:
    """The scores a training run logs at each checkpoint, restricted as `w2vdist eval`
    restricts them: the first analogy and similarity files' as `analogy/...` and
    `similarity/...`, any other's as `analogy:NAME/...` (`score_key`); none: empty."""
    out: dict[str, float] = {}
    if not cfg.analogies and not cfg.similarity:
        return out
    # Only the rows scored leave the device (a 2M x 300 table is 2.4 GB).
    rows = restricted(words, vectors, cfg.restrict_vocab)
    words, vectors = words[:rows], vectors[:rows].float().cpu()
    for i, path in enumerate(cfg.analogies):
        found = score_analogies(words, vectors, path, cfg.restrict_vocab, cfg.analogy_method)
        out.update({f"{score_key(ANALOGY, path, i)}/{k}": float(v) for k, v in found.items()})
    for i, path in enumerate(cfg.similarity):
        found = score_similarity(words, vectors, path, cfg.restrict_vocab)
        out.update({f"{score_key(SIMILARITY, path, i)}/{k}": float(v)
                    for k, v in found.items()})
    return out


def score_key(kind: str, path: str, index: int) -> str:
    """The prefix of a file's scores: the first file of its kind keeps the plain `kind` (the
    keys of runs that scored one file), each other adds its name (`similarity:SimLex-999`)."""
    return kind if index == 0 else f"{kind}:{score_name(path)}"


def analogy_scores(
    words: Sequence[str],
    vectors: torch.Tensor,
    path: str | Path,
    restrict_vocab: int = DEFAULT_RESTRICT_VOCAB,
    max_scores: int = MAX_SCORES,
    method: str = "3cosadd",
) -> AnalogyScores:
    """3CosAdd (or 3CosMul) answers for every in-vocabulary question, `max_scores` scores at
    a time."""
    if method not in ANALOGY_METHODS:
        raise UsageError(f"analogy method must be one of {', '.join(ANALOGY_METHODS)} "
                         f"(got {method!r})")
    path = Path(path)
    limit = restricted(words, vectors, restrict_vocab)
    lookup, canonical = case_index(words, limit)
    result, questions, owners = _read_analogies(path, lookup)
    if not questions:
        return result
    hits = answered_right(unit_table(vectors, limit), canonical, questions, method, max_scores)
    correct = torch.bincount(torch.tensor(owners)[hits], minlength=len(result.sections))
    for section, n in zip(result.sections, correct.tolist()):
        section.correct = n
    return result


def answered_right(unit: torch.Tensor, canonical: torch.Tensor, questions: list[list[int]],
                   method: str, max_scores: int) -> torch.Tensor:
    """Whether each question (rows a, b, c and the expected answer) is answered right: the best
    of all words but the question's (and their case variants: `canonical`)."""
    ids = torch.tensor(questions, dtype=torch.long, device=unit.device).reshape(-1, 4)
    canonical = canonical.to(unit.device)
    rows = canonical.unsqueeze(0)
    hits = torch.zeros(len(questions), dtype=torch.bool)
    batch = max(1, max_scores // len(unit) // (1 if method == "3cosadd" else 3))
    for start in range(0, len(ids), batch):
        a, b, c, expected = ids[start : start + batch].T
        if method == "3cosadd":
            scores = (unit[b] + unit[c] - unit[a]) @ unit.T
        else:
            shifted = [(1 + unit[x] @ unit.T) / 2 for x in (a, b, c)]
            scores = shifted[1] * shifted[2] / (shifted[0] + vec.COSMUL_EPSILON)
        question_word = (rows == a[:, None]) | (rows == b[:, None]) | (rows == c[:, None])
        best, answer = scores.masked_fill_(question_word, -math.inf).max(dim=1)
        # Excluding every case variant of a question word is what gensim does, except when
        # five or more variants outrank the answer: gensim then looks no further.
        hit = (canonical[answer] == expected) & (best > -math.inf)
        hits[start : start + batch] = hit.cpu()
    return hits


def similarity_scores(
    words: Sequence[str],
    vectors: torch.Tensor,
    path: str | Path,
    restrict_vocab: int | None = None,
) -> SimilarityScores:
    """Cosine of each in-vocabulary pair, correlated with the file's scores."""
    path = Path(path)
    limit = restricted(words, vectors, len(words) if restrict_vocab is None else restrict_vocab)
    lookup, _ = case_index(words, limit)
    pairs: list[tuple[int, int]] = []
    gold: list[float] = []
    oov = 0
    skipped: list[int] = []
    for lineno, line in numbered_lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = [p.strip() for p in text.split("\t")] if "\t" in text else text.split()
        try:
            w1, w2, score = parts
            value = float(score)
        except ValueError:
            skipped.append(lineno)
            continue
        i, j = lookup.get(w1.upper()), lookup.get(w2.upper())
        if i is None or j is None:
            oov += 1
            continue
        pairs.append((i, j))
        gold.append(value)
    if not pairs and not oov:
        raise UsageError(f"{path}: no 'word word score' lines found")
    table = torch.as_tensor(vectors)[:limit].double()
    index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    cosine = (vec.unit_rows(table[index[:, 0]]) * vec.unit_rows(table[index[:, 1]])).sum(1)
    model, human = cosine.cpu().numpy(), np.asarray(gold, dtype=np.float64)
    return SimilarityScores(
        _pearson(_average_ranks(human), _average_ranks(model)),
        _pearson(human, model),
        len(pairs),
        oov,
        skipped,
    )


def restricted(words: Sequence[str], vectors: torch.Tensor, restrict_vocab: int) -> int:
    if len(words) != len(vectors):
        raise UsageError(f"{len(words)} words but {len(vectors)} vectors")
    if restrict_vocab < 1:
        raise UsageError(f"restrict_vocab must be >= 1 (got {restrict_vocab})")
    return min(restrict_vocab, len(words))


def unit_table(vectors: torch.Tensor, limit: int) -> torch.Tensor:
    """The first `limit` rows as float32 unit vectors, on the table's own device: what an
    analogy or pair is scored over."""
    return vec.unit_rows(torch.as_tensor(vectors)[:limit].float())


def case_index(words: Sequence[str], limit: int,
                fold: bool = True) -> tuple[dict[str, int], torch.Tensor]:
    """Word (upper-cased if `fold`) -> its most frequent row, and each row's such row."""
    keys = [w.upper() for w in words[:limit]] if fold else list(words[:limit])
    lookup: dict[str, int] = {}
    for row, key in enumerate(keys):
        lookup.setdefault(key, row)
    return lookup, torch.tensor([lookup[key] for key in keys], dtype=torch.long)


def _read_analogies(
    path: Path, lookup: dict[str, int]
) -> tuple[AnalogyScores, list[list[int]], list[int]]:
    """Sections (same name = same section), the in-vocabulary questions and their sections."""
    result = AnalogyScores([])
    by_name: dict[str, int] = {}
    questions: list[list[int]] = []
    owners: list[int] = []
    current: int | None = None
    for lineno, line in numbered_lines(path):
        if line.startswith(": "):
            name = line.lstrip(": ").strip()
            if name not in by_name:
                by_name[name] = len(result.sections)
                result.sections.append(Section(name))
            current = by_name[name]
            continue
        parts = line.split()
        if not parts:
            continue
        if current is None:
            raise UsageError(f"{path}:{lineno}: question before the first ': section' line")
        if len(parts) != 4:
            result.skipped_lines.append(lineno)
            continue
        section = result.sections[current]
        section.questions += 1
        ids = [lookup.get(p.upper()) for p in parts]
        if None in ids:
            continue
        section.evaluated += 1
        questions.append(ids)  # type: ignore[arg-type]
        owners.append(current)
    if not any(s.questions for s in result.sections):
        raise UsageError(
            f"{path}: no analogy questions found (expected ': section' and 'a b c d' lines)"
        )
    return result, questions, owners


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (as Spearman's coefficient needs)."""
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(x))
    ordered = x[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts)[inverse]
    bounds = np.r_[np.flatnonzero(starts), len(x)]
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator else math.nan
