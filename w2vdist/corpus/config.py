"""The settings of the corpus commands: `w2vdist prepare`, `join`, `verify` and `synth`.

Like every command's settings they are dataclasses whose fields carry their meaning, default
and allowed values (`settings.setting`), from which `settings.py` generates the flags and reads
config files; each validates itself on construction, so a bad value fails before any work,
naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from w2vdist.corpus.phrases import MAX_PASSES
from w2vdist.errors import UsageError
from w2vdist.settings import check, check_choices, setting


@dataclass
class PrepareConfig:
    """`w2vdist prepare`: corpus text to vocabulary and WebDataset shards."""

    inputs: list[str] = setting([], "text or JSON Lines files (.txt, .jsonl, .ndjson, .json; "
                                "plain or gzip, bzip2, xz, zstd), zip or tar archives of them, "
                                "Parquet files, directories or globs; - reads standard "
                                "input (copied first, as it is read twice)",
                                positional=True, metavar="INPUT")
    output: str = setting("", "output directory", short="-o", metavar="OUT")
    format: str = setting("auto", "how files hold their text: text (one sentence or paragraph "
                          "a line), jsonl (one JSON object a line, its text in --text-field), "
                          "parquet (a table, its text in the --text-field column), or auto: "
                          "parquet by the file's first bytes, jsonl for names ending .jsonl, "
                          ".ndjson or .json (before any compression suffix), else text",
                          choices=("auto", "text", "jsonl", "parquet"))
    text_field: str = setting("text", "the JSON Lines field or Parquet column that holds the "
                              "text (a.b: field b of object or struct column a)")
    tokenizer: str = setting("default", "how lines become words: default (Unicode words), "
                             "nltk's wordpunct or toktok, or whitespace",
                             choices=("default", "wordpunct", "toktok", "whitespace"))
    lowercase: bool = setting(True, "lowercase the text")
    normalize: str = setting("nfc", "Unicode normalization before tokenizing (NFC: é typed "
                             "as e + accent and as one character are the same word)",
                             choices=("nfc", "nfkc", "none"))
    encoding: str = setting("utf-8", "the text's encoding (any ASCII-compatible codec, e.g. "
                            "latin-1, cp1252)")
    stem: str | None = setting(None, "Snowball stemming in this language, e.g. english",
                               metavar="LANG")
    stopwords: str | None = setting(None, "remove the words in FILE (one per line)",
                                    metavar="FILE")
    phrases: int = setting(0, "join word pairs that occur together far more often than "
                           "chance into one token (new_york), as word2vec.c's word2phrase: N "
                           "passes, each of which can join a phrase with a further word, for "
                           "phrases of up to 2^N words (0: none); the pairs go to phrases.tsv")
    phrase_threshold: float = setting(100.0, "word2phrase's threshold for joining a pair "
                                      "(higher: fewer phrases)")
    phrases_file: str | None = setting(None, "join the phrases in FILE (the phrases.tsv of an "
                                       "earlier prepare) instead of finding them: with that "
                                       "run's vocab.tsv as --vocab, new text gets the same "
                                       "tokens and ids", metavar="FILE")
    vocab: list[str] = setting([], "take the vocabulary from FILE (a vocab.tsv, or 'word "
                               "count' lines as word2vec -save-vocab writes; a folder: its "
                               "vocab.tsv) instead of counting one, several files' counts "
                               "summed (the parts of a corpus counted apart, --counts-only); "
                               "min_count and max_vocab still apply, and only phrases in it "
                               "are joined", metavar="FILE,...")
    counts_only: bool = setting(False, "count the words and stop: OUT holds every word counted "
                                "in vocab.tsv (no min_count) and no shards, for --vocab of "
                                "each part of a corpus prepared on several machines")
    part: str = setting("", "K/N: read only part K (0 to N-1) of the input, its files found "
                        "and ordered as always, then cut into N runs of about equal bytes (a "
                        "plain file at whole megabytes, a table between row groups; a compressed "
                        "file or an archive whole): machine K of N's share", metavar="K/N")
    min_count: int = setting(5, "drop words seen fewer times")
    max_vocab: int = setting(0, "keep only the N most frequent words (0: no limit)")
    shard_tokens: int = setting(10_000_000, "tokens per shard")
    block_tokens: int = setting(65_536, "tokens per sample")
    max_sentence_len: int = setting(10_000, "cut longer lines into sentences of N tokens")
    workers: int = setting(0, "worker processes (0: all cores)")
    overwrite: bool = setting(False, "replace an existing OUT (once the new one is complete)")

    def __post_init__(self) -> None:
        check_choices(self, "prepare")
        try:
            ascii_safe = "a\n".encode(self.encoding) == b"a\n"
        except LookupError:
            raise UsageError(f"config: prepare.encoding: unknown encoding {self.encoding!r}") from None
        check(ascii_safe, "prepare.encoding", f"{self.encoding!r} is not ASCII-compatible")
        if self.stem is not None:
            from nltk.stem.snowball import SnowballStemmer  # slow import: only when asked for

            check(self.stem in SnowballStemmer.languages, "prepare.stem",
                   f"must be one of {', '.join(SnowballStemmer.languages)} (got {self.stem!r})")
        check(bool(self.text_field), "prepare.text_field", "must name a field")
        check(0 <= self.phrases <= MAX_PASSES, "prepare.phrases",
              f"must be 0-{MAX_PASSES} (passes)")
        check(not (self.phrases and self.phrases_file), "prepare.phrases_file",
              "give either phrases to find (--phrases N) or a file of them, not both")
        check(not (self.counts_only and self.phrases), "prepare.counts_only",
              "cannot find phrases (each part would find others): find them once, on one part "
              "or a sample, and give every part their file (--phrases-file)")
        check(not (self.counts_only and self.vocab), "prepare.counts_only",
              "counts words, which --vocab gives: give one or the other")
        if self.part:
            k, _, n = self.part.partition("/")
            check(k.isdigit() and n.isdigit() and int(k) < int(n), "prepare.part",
                  f"must be K/N with 0 <= K < N (got {self.part!r})")
        check(self.phrase_threshold > 0, "prepare.phrase_threshold", "must be > 0")
        check(self.min_count >= 1, "prepare.min_count", "must be >= 1")
        check(self.max_vocab >= 0, "prepare.max_vocab", "must be >= 0 (0: no limit)")
        check(self.shard_tokens >= 1, "prepare.shard_tokens", "must be >= 1")
        check(self.block_tokens >= 1, "prepare.block_tokens", "must be >= 1")
        check(self.max_sentence_len >= 2, "prepare.max_sentence_len", "must be >= 2")
        check(self.workers >= 0, "prepare.workers", "must be >= 0 (0: all cores)")

    @property
    def share(self) -> tuple[int, int] | None:
        """(K, N) of `part`, or None for the whole input."""
        k, _, n = self.part.partition("/")
        return (int(k), int(n)) if self.part else None


@dataclass
class JoinCommand:
    """`w2vdist join PART... -o OUT`."""

    parts: list[str] = setting([], "`w2vdist prepare` outputs made with the same vocabulary "
                               "(--vocab) and tokenizer", positional=True, metavar="PART")
    output: str = setting("", "output directory", short="-o", metavar="OUT")
    overwrite: bool = setting(False, "replace an existing OUT (once the new one is complete)")

    def __post_init__(self) -> None:
        check(bool(self.output), "join.output", "is needed (-o OUT)")


@dataclass
class VerifyCommand:
    """`w2vdist verify CORPUS`."""

    corpus: str = setting("", "a `w2vdist prepare` output directory", positional=True)
    workers: int = setting(0, "shards checked at once (0: a core each)")

    def __post_init__(self) -> None:
        check(self.workers >= 0, "verify.workers", "must be >= 0 (0: a core each)")


@dataclass(frozen=True)
class SynthConfig:
    """`w2vdist synth`: generator settings, saved in `synth.json` so that a corpus can be
    regenerated exactly."""

    seed: int = setting(0, "random seed; the same seed gives the same bytes")
    sentences: int = setting(160_000, "number of sentences, about 10.5 tokens each")
    groups: int = setting(4, "topic groups, 5 topics each")
    topic_words: int = setting(20, "words per topic")
    pairs: int = setting(30, "pairs per relation (each gives pairs * (pairs - 1) analogy "
                         "questions)")
    filler_words: int = setting(3000, "size of the Zipfian filler vocabulary")
    zipf_exponent: float = setting(1.0, "filler word frequency ~ rank ** -exponent")

    def __post_init__(self) -> None:
        check(self.seed >= 0, "synth.seed", "must be >= 0")
        check(self.sentences >= 100, "synth.sentences", "must be >= 100")
        check(self.groups >= 2, "synth.groups", "must be >= 2")
        check(self.topic_words >= 2, "synth.topic_words", "must be >= 2")
        check(self.pairs >= 3, "synth.pairs", "must be >= 3")
        check(self.filler_words >= 10, "synth.filler_words", "must be >= 10")
        check(self.zipf_exponent > 0, "synth.zipf_exponent", "must be > 0")


@dataclass
class SynthCommand:
    """`w2vdist synth OUT_DIR`."""

    out_dir: str = setting("", "directory to write the files into", positional=True)
    overwrite: bool = setting(False, "replace existing output files")
    synth: SynthConfig = setting(SynthConfig, "", inline=True)
