"""Print each query's k nearest words by cosine similarity (the query's words left out).

VECTORS is a word2vec file (text or binary) or a run directory / checkpoint folder. A query is
a word, looked up exactly as written, or an expression of words joined by `+` and `-` standing
alone, as word2vec.c's `distance` and `word-analogy` tools answer them: `"paris - france +
italy"` finds the words nearest paris's unit vector minus france's plus italy's (3CosAdd;
`--method 3cosmul` for Levy and Goldberg's 3CosMul), and words side by side add (`"san
francisco"`). A word not
in the vocabulary is reported on stderr (with its case variants, if any) and the other queries
are still answered; the exit status is 0 if at least one query was answered and 2 if none was.
A QUERY of `-` reads the queries from standard input, one a line, each answered as it is read
(word2vec.c's `distance` prompts for them so): the vectors are loaded once for all of them.
"""

from __future__ import annotations

import argparse
import sys

import torch

from w2vdist import settings
from w2vdist.errors import UsageError
from w2vdist.vectors.config import NeighborsCommand
from w2vdist.vectors.keyed import WordVectors
from w2vdist.vectors.word2vec import SEPARATOR


STDIN = "-"  # the one query that says: read queries from standard input, a line each


def nearest(
    words: list[str], unit: torch.Tensor, rows: list[int], k: int
) -> list[list[tuple[str, float]]]:
    """The k most similar words to each of `rows`, given unit-length vectors."""
    scores = unit[rows] @ unit.T
    scores[torch.arange(len(rows)), torch.tensor(rows, dtype=torch.long)] = -torch.inf
    top = scores.topk(min(k, len(words) - 1), dim=1)
    return [
        [(words[j], s) for j, s in zip(idx.tolist(), val.tolist())]
        for idx, val in zip(top.indices, top.values)
    ]


def parse(query: str) -> tuple[list[str], list[str]]:
    """An expression's positive and negative words: `a - b + c` -> ([a, c], [b]). Only a `+`
    or `-` standing alone is an operator (`c++` and `-lrb-` are words); words side by side are
    added, and an operator without a word after it (`a -`, `a + - b`) is refused rather than
    guessed at. Words are split where vectors files split them, so a word holding another
    space (GloVe's `at\\xa0name@domain.com`) is one word here too."""
    positive: list[str] = []
    negative: list[str] = []
    operator: str | None = None  # waiting for its word
    for token in filter(None, SEPARATOR.split(query)):
        if operator and token in ("+", "-"):
            raise UsageError(f"{query!r}: {operator!r} has no word after it")
        if token in ("+", "-"):
            operator = token
        else:
            (negative if operator == "-" else positive).append(token)
            operator = None
    if operator:
        raise UsageError(f"{query!r}: {operator!r} has no word after it")
    if not positive and not negative:
        raise UsageError(f"{query!r}: no words in this query")
    return positive, negative


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, NeighborsCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(NeighborsCommand, args, prefix="neighbors.")
    wv = WordVectors.load(cmd.vectors, cmd.table, cmd.limit)
    if len(wv) < 2:
        raise UsageError(f"{cmd.vectors}: one word has no neighbours")
    unit = wv.get_normed_vectors()  # once, for every single-word query
    if cmd.words == [STDIN]:
        return _from_stdin(wv, unit, cmd)
    if not _answer(wv, unit, cmd, cmd.words):
        raise UsageError(f"{cmd.vectors}: none of the queries' words is in the vocabulary")
    return 0


def _from_stdin(wv: WordVectors, unit: torch.Tensor, cmd: NeighborsCommand) -> int:
    """Queries read a line at a time and each answered as it comes, with the vectors loaded
    once, as word2vec.c's `distance` prompts for them; a bad query is reported and the next
    one read. At a terminal a prompt goes to stderr; blank lines are skipped; EOF ends it."""
    asked = answered = 0
    while True:
        if sys.stdin.isatty():
            print("query (Ctrl-D ends): ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        asked += 1
        try:
            answered += _answer(wv, unit, cmd, [line.strip()])
        except UsageError as exc:
            print(f"w2vdist: {exc}", file=sys.stderr)
        sys.stdout.flush()
    if not asked:
        raise UsageError("stdin: no query read")
    if not answered:
        raise UsageError(f"stdin: none of the {asked} queries could be answered")
    return 0


def _answer(wv: WordVectors, unit: torch.Tensor, cmd: NeighborsCommand, queries: list[str],
            ) -> int:
    """Print the answers to the queries whose words are all known (`unit`: the vectors at
    length 1); how many there were."""
    parsed = {q: parse(q) for q in queries}
    if cmd.method == "3cosmul" and any(not pos for pos, _ in parsed.values()):
        raise UsageError("--method 3cosmul needs a word added in every query (3CosMul divides "
                         "by the subtracted ones)")
    single = [q for q, (pos, neg) in parsed.items() if len(pos) == 1 and not neg
              and _known(wv, cmd.vectors, pos)]
    answers = dict(zip(single, nearest(wv.index_to_key, unit,
                                       [wv.get_index(parsed[q][0][0]) for q in single], cmd.k)))
    search = wv.most_similar if cmd.method == "3cosadd" else wv.most_similar_cosmul
    for query, (positive, negative) in parsed.items():
        if query not in answers and (len(positive) > 1 or negative) \
                and _known(wv, cmd.vectors, positive + negative):
            answers[query] = search(positive, negative, topn=cmd.k)
    for query in (q for q in parsed if q in answers):
        print(query)
        for other, score in answers[query]:
            print(f"  {score:8.4f}  {other}")
    return len(answers)


def _known(wv: WordVectors, source: str, words: list[str]) -> bool:
    """Whether every word is in the vocabulary; each missing one reported on stderr."""
    missing = [w for w in words if w not in wv]
    for w in missing:
        variants = [v for v in wv.index_to_key if v.lower() == w.lower()][:3]
        hint = f" (did you mean {', '.join(map(repr, variants))}?)" if variants else ""
        print(f"w2vdist: {w!r} is not in the vocabulary of {source}{hint}", file=sys.stderr)
    return not missing
