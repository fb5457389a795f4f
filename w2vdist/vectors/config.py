"""The settings of the commands that read trained vectors: `w2vdist eval`, `export` and
`neighbors` (the `eval` section is also a training run's, for its scores at each checkpoint).

Fields carry their meaning, default and allowed values (`settings.setting`); each dataclass
validates itself on construction, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from w2vdist.settings import check, check_choices, setting

TABLES = ("input", "output", "average")
ANALOGY_METHODS = ("3cosadd", "3cosmul")


@dataclass
class EvalConfig:
    """Word-vector scores: at each checkpoint of a run, and by `w2vdist eval`."""

    analogies: list[str] = setting([], "questions-words files (accuracy), comma-separated",
                                   metavar="FILE,...")
    similarity: list[str] = setting([], "'word word score' pairs files (Spearman), "
                                    "comma-separated", metavar="FILE,...")
    restrict_vocab: int = setting(30_000, "score over the N most frequent words")
    analogy_method: str = setting("3cosadd", "how an analogy is answered: 3cosadd (b - a + c, "
                                  "as word2vec.c and gensim) or 3cosmul (Levy and Goldberg's "
                                  "product of shifted cosines)", choices=ANALOGY_METHODS)
    probe_words: list[str] = setting([], "words whose nearest neighbours W&B shows at each "
                                     "eval (default: ten past the 50 commonest)")

    def __post_init__(self) -> None:
        check(self.restrict_vocab >= 1, "eval.restrict_vocab", "must be >= 1")
        check_choices(self, "eval")
        for kind, files in (("analogies", self.analogies), ("similarity", self.similarity)):
            names = [score_name(f) for f in files]
            twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
            check(twice is None, f"eval.{kind}",
                  f"two files named {twice!r}: their scores would share a name; rename one")


def score_name(path: str) -> str:
    """What a scores file's results are named after in a run's metrics (`evaluate.score_key`):
    its name without the extension, `SimLex-999` for `data/SimLex-999.txt`."""
    return Path(path).stem


@dataclass
class EvalCommand:
    """`w2vdist eval VECTORS`: the same `eval` section as a training run's."""

    vectors: str = setting("", "vectors file (word2vec text or binary, fastText .vec, GloVe; "
                           "compressed or not; or its URL), run directory or checkpoint folder",
                           positional=True)
    eval: EvalConfig = setting(EvalConfig, "")
    table: str = setting("input", "checkpoint table to score", choices=TABLES)
    json: str | None = setting(None, "also write the numbers to this JSON file", metavar="OUT")

    def __post_init__(self) -> None:
        check_choices(self, "")


@dataclass
class ExportCommand:
    """`w2vdist export SOURCE -o OUT`."""

    source: str = setting("", "run directory or checkpoint folder, or a vectors file to "
                          "convert (word2vec text or binary, fastText .vec, GloVe; compressed "
                          "or not; or its URL)", positional=True, metavar="SOURCE")
    output: str = setting("", "vectors file to write (required)", short="-o", metavar="OUT")
    format: str | None = setting(None, "word2vec format (default: by OUT's extension, .bin "
                                 "binary, else text)", choices=("text", "binary"))
    table: str = setting("input", "input (word) vectors, output (context) vectors or their "
                         "average", choices=TABLES)
    counts: str | None = setting(None, "also write 'word count' lines (word2vec -save-vocab)",
                                 metavar="FILE")
    skip_unwritable: bool = setting(False, "leave out words that are empty or contain "
                                    "ASCII whitespace instead of refusing to export")
    limit: int | None = setting(None, "write only the N most frequent words", metavar="N")

    def __post_init__(self) -> None:
        check_choices(self, "export")
        check(bool(self.output), "export.output", "is required (-o OUT: the vectors file to write)")
        check(self.limit is None or self.limit >= 1, "export.limit", "must be >= 1")


@dataclass
class NeighborsCommand:
    """`w2vdist neighbors VECTORS WORD...`."""

    vectors: str = setting("", "vectors file (word2vec text or binary, fastText .vec, GloVe; "
                           "compressed or not; or its URL), run directory or checkpoint folder",
                           positional=True)
    words: list[str] = setting([], "words to look up, or expressions such as 'paris - france "
                               "+ italy'", positional=True, metavar="QUERY")
    k: int = setting(10, "neighbours per query", short="-k")
    method: str = setting("3cosadd", "how an expression is answered (as eval.analogy_method)",
                          choices=ANALOGY_METHODS)
    table: str = setting("input", "checkpoint table to search", choices=TABLES)
    limit: int | None = setting(None, "load only the N most frequent words (gensim's limit): "
                                "quicker on a large file, and no rare words in the answers",
                                metavar="N")

    def __post_init__(self) -> None:
        check_choices(self, "neighbors")
        check(self.k >= 1, "neighbors.k", "must be >= 1")
        check(self.limit is None or self.limit >= 2, "neighbors.limit", "must be >= 2")
