"""Generate a corpus with planted structure, plus the analogy and similarity files that score it.

`w2vdist synth OUT_DIR` writes `corpus.txt`, `analogies.txt`, `similarity.tsv` and
`synth.json`, all determined by `--seed`. It exists so that a trainer can be checked end to
end without downloading anything: a correct SGNS trainer recovers the planted structure in
seconds, a broken one (random, untrained or misaligned vectors) scores near zero.

What is planted (all content words are generated, pronounceable and lowercase):

* Topics: groups of three sibling topics. A topic sentence holds four topic words (mostly from
  its own topic, some from a sibling) among Zipfian filler words. `similarity.tsv` scores pairs
  9 (same topic), 5 (sibling topics) or 1 (different groups).
* Relations: every pair of a relation shares private context words (its "attributes"), while
  each member co-occurs with the fixed marker words of its role ("capital", "city" for the
  city; "country", "nation" for the country). The two members' contexts then differ only by
  the role markers, so the offset b - a is the same for every pair and 3CosAdd recovers it.
  Countries have a capital (`capital-of`) and a currency (`currency`); nouns, which also
  belong to a topic, have a plural made with "s" (`gram-plural`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
from pathlib import Path

import numpy as np

from w2vdist import settings
from w2vdist.corpus.config import SynthCommand, SynthConfig
from w2vdist.errors import UsageError
from w2vdist.files import write_text

CORPUS_FILE = "corpus.txt"
ANALOGIES_FILE = "analogies.txt"
SIMILARITY_FILE = "similarity.tsv"
SETTINGS_FILE = "synth.json"
OUTPUT_FILES = (CORPUS_FILE, ANALOGIES_FILE, SIMILARITY_FILE, SETTINGS_FILE)

TOPICS_PER_GROUP = 3
ATTRIBUTES_PER_PAIR = 3
SIMILARITY_PAIRS_PER_LEVEL = 100
SIMILARITY_SCORES = {"same-topic": 9.0, "sibling-topic": 5.0, "other-group": 1.0}

# Role marker words: a relation member co-occurs with two of its role's markers per sentence.
ROLE_MARKERS = {
    "country": ("country", "nation", "border", "government"),
    "city": ("capital", "city", "downtown", "mayor"),
    "currency": ("currency", "money", "coins", "exchange"),
    "singular": ("one", "this", "single", "each"),
    "plural": ("many", "these", "several", "two"),
}
# (analogy section, first role, second role); countries carry two relations.
RELATIONS = (
    ("capital-of", "country", "city"),
    ("currency", "country", "currency"),
    ("gram-plural", "singular", "plural"),
)
# Share of sentences by kind; the rest are topic sentences.
COUNTRY_SHARE = 0.3
NOUN_SHARE = 0.2
TOPIC_WORDS_PER_SENTENCE = 4
TOPIC_SIBLING_SHARE = 0.25

_CONSONANTS = np.array(list("bdfgklmnprtvz"))
_VOWELS = np.array(list("aeiou"))


@dataclasses.dataclass
class Lexicon:
    """Every word of the corpus, as ids into `words`, grouped by the role it plays."""

    words: list[str]
    filler: np.ndarray  # [F], most frequent first
    topics: np.ndarray  # [groups * 3, topic_words]; topic t is in group t // 3
    markers: dict[str, np.ndarray]  # role -> [4]
    members: dict[str, np.ndarray]  # role -> [pairs]: the word playing that role for pair i
    country_attributes: np.ndarray  # [pairs, 3]
    noun_attributes: np.ndarray  # [pairs, 3]
    noun_topics: np.ndarray  # [pairs]: the topic each noun belongs to


def _pronounceable(rng: np.random.Generator, syllables: int, n: int) -> list[str]:
    """`n` random consonant-vowel words; may repeat, callers deduplicate."""
    cons = _CONSONANTS[rng.integers(len(_CONSONANTS), size=(n, syllables))]
    vows = _VOWELS[rng.integers(len(_VOWELS), size=(n, syllables))]
    parts = np.char.add(cons, vows)
    out = parts[:, 0]
    for s in range(1, syllables):
        out = np.char.add(out, parts[:, s])
    return out.tolist()


def _new_words(rng: np.random.Generator, n: int, taken: set[str], min_syllables: int) -> list[str]:
    """`n` fresh words, shortest first; none ends in "s", so word + "s" is a new word too."""
    out: list[str] = []
    syllables = min_syllables
    while len(out) < n:
        for word in _pronounceable(rng, syllables, 4 * (n - len(out)) + 16):
            if word not in taken and word + "s" not in taken:
                taken.update((word, word + "s"))
                out.append(word)
                if len(out) == n:
                    break
        syllables += 1
    return out


def build_lexicon(spec: SynthConfig, rng: np.random.Generator) -> Lexicon:
    """Draw all words: short filler words (frequent, like function words), longer content words."""
    words: list[str] = []

    def add(new: list[str]) -> np.ndarray:
        start = len(words)
        words.extend(new)
        return np.arange(start, len(words))

    taken = {w for role in ROLE_MARKERS.values() for w in role}
    taken |= {w[:-1] for w in taken if w.endswith("s")}
    markers = {role: add(list(ws)) for role, ws in ROLE_MARKERS.items()}
    filler = add(_new_words(rng, spec.filler_words, taken, min_syllables=1))
    n_topics = spec.groups * TOPICS_PER_GROUP
    topics = add(_new_words(rng, n_topics * spec.topic_words, taken, 3)).reshape(n_topics, -1)
    p = spec.pairs
    members = {
        "country": add(_new_words(rng, p, taken, 3)),
        "city": add(_new_words(rng, p, taken, 3)),
        "currency": add(_new_words(rng, p, taken, 3)),
    }
    singular = _new_words(rng, p, taken, 3)
    members["singular"] = add(singular)
    members["plural"] = add([w + "s" for w in singular])
    country_attributes = add(_new_words(rng, p * ATTRIBUTES_PER_PAIR, taken, 3)).reshape(p, -1)
    noun_attributes = add(_new_words(rng, p * ATTRIBUTES_PER_PAIR, taken, 3)).reshape(p, -1)
    return Lexicon(
        words=words,
        filler=filler,
        topics=topics,
        markers=markers,
        members=members,
        country_attributes=country_attributes,
        noun_attributes=noun_attributes,
        noun_topics=rng.permutation(np.arange(p) % n_topics),
    )


def _pick_distinct(
    rng: np.random.Generator, table: np.ndarray, rows: np.ndarray, k: int
) -> np.ndarray:
    """For each i, k distinct entries of table[rows[i]] ([n, k])."""
    cols = np.argsort(rng.random((len(rows), table.shape[1])), axis=1)[:, :k]
    return table[rows[:, None], cols]


def _place(
    rng: np.random.Generator,
    content: np.ndarray,
    lengths: np.ndarray,
    filler: np.ndarray,
    zipf: np.ndarray,
) -> np.ndarray:
    """Sentences ([n, max(lengths)], -1 past each length): content words at random positions,
    Zipfian filler words everywhere else."""
    n, k = content.shape
    width = int(lengths.max())
    rows = filler[rng.choice(len(filler), size=(n, width), p=zipf)]
    keys = rng.random((n, width))
    keys[np.arange(width)[None, :] >= lengths[:, None]] = np.inf
    positions = np.argsort(keys, axis=1)[:, :k]
    rows[np.arange(n)[:, None], positions] = content
    rows[np.arange(width)[None, :] >= lengths[:, None]] = -1
    return rows


def _topic_content(rng: np.random.Generator, lex: Lexicon, n: int) -> np.ndarray:
    """Topic words for n sentences of random topics; each word comes from a sibling topic of the
    sentence's topic with probability TOPIC_SIBLING_SHARE, which makes sibling topics related."""
    n_topics, per_topic = lex.topics.shape
    shape = (n, TOPIC_WORDS_PER_SENTENCE)
    topic = np.broadcast_to(rng.integers(n_topics, size=(n, 1)), shape)
    sibling = rng.random(shape) < TOPIC_SIBLING_SHARE
    shift = np.where(sibling, rng.integers(1, TOPICS_PER_GROUP, shape), 0)
    chosen = topic - topic % TOPICS_PER_GROUP + (topic + shift) % TOPICS_PER_GROUP
    return lex.topics[chosen, rng.integers(per_topic, size=shape)]


def _member_content(
    rng: np.random.Generator,
    lex: Lexicon,
    n: int,
    roles: tuple[str, ...],
    attributes: np.ndarray,
    extra_topic: bool,
) -> np.ndarray:
    """One relation member, two of its role's markers and two of its pair's attributes
    (plus one word of the noun's topic for nouns): both members of a pair see the same mix."""
    pair = rng.integers(attributes.shape[0], size=n)
    role = rng.integers(len(roles), size=n)
    member_table = np.stack([lex.members[r] for r in roles])  # [roles, pairs]
    marker_table = np.stack([lex.markers[r] for r in roles])  # [roles, 4]
    parts = [
        member_table[role, pair][:, None],
        _pick_distinct(rng, marker_table, role, 2),
        _pick_distinct(rng, attributes, pair, 2),
    ]
    if extra_topic:
        topic_words = lex.topics[lex.noun_topics[pair]]
        parts.append(topic_words[np.arange(n), rng.integers(topic_words.shape[1], size=n)][:, None])
    return np.concatenate(parts, axis=1)


def generate_corpus(spec: SynthConfig, lex: Lexicon, rng: np.random.Generator) -> str:
    """The corpus text: one sentence per line, sentence kinds interleaved at random."""
    n_country = int(spec.sentences * COUNTRY_SHARE)
    n_noun = int(spec.sentences * NOUN_SHARE)
    n_topic = spec.sentences - n_country - n_noun
    ranks = np.arange(1, len(lex.filler) + 1, dtype=np.float64)
    zipf = ranks**-spec.zipf_exponent
    zipf /= zipf.sum()
    batches = [
        (_topic_content(rng, lex, n_topic), rng.integers(8, 15, size=n_topic)),
        (
            _member_content(
                rng, lex, n_country, ("country", "city", "currency"), lex.country_attributes, False
            ),
            rng.integers(7, 13, size=n_country),
        ),
        (
            _member_content(rng, lex, n_noun, ("singular", "plural"), lex.noun_attributes, True),
            rng.integers(8, 14, size=n_noun),
        ),
    ]
    width = max(int(np.max(lengths)) for _, lengths in batches)
    sentences = np.full((spec.sentences, width), -1, dtype=np.int64)
    start = 0
    for content, lengths in batches:
        block = _place(rng, content, lengths, lex.filler, zipf)
        sentences[start : start + len(block), : block.shape[1]] = block
        start += len(block)
    sentences = sentences[rng.permutation(spec.sentences)]
    return _render(sentences, lex.words)


def _render(sentences: np.ndarray, words: list[str]) -> str:
    """Join token ids ([n, width], -1 = padding) into lines, without a Python loop per token."""
    valid = sentences >= 0
    last = valid & ~np.concatenate([valid[:, 1:], np.zeros((len(valid), 1), bool)], axis=1)
    ids = sentences[valid]
    with_space = np.array([w + " " for w in words], dtype=object)
    with_newline = np.array([w + "\n" for w in words], dtype=object)
    tokens = np.where(last[valid], with_newline[ids], with_space[ids])
    return "".join(tokens.tolist())


def analogies_text(lex: Lexicon) -> str:
    """Questions-words format: every ordered pair of distinct pairs, one section per relation."""
    lines = []
    for section, first, second in RELATIONS:
        members = zip(lex.members[first], lex.members[second])
        pairs = [(lex.words[a], lex.words[b]) for a, b in members]
        lines.append(f": {section}")
        for (a, b), (c, d) in itertools.permutations(pairs, 2):
            lines.append(f"{a} {b} {c} {d}")
    return "\n".join(lines) + "\n"


def similarity_text(spec: SynthConfig, lex: Lexicon, rng: np.random.Generator) -> str:
    """Topic-word pairs at three levels of relatedness, an equal number drawn from each."""
    topic_of = np.repeat(np.arange(lex.topics.shape[0]), lex.topics.shape[1])
    group_of = topic_of // TOPICS_PER_GROUP
    first, second = np.triu_indices(len(topic_of), k=1)
    level_of = np.where(
        topic_of[first] == topic_of[second], 0, np.where(group_of[first] == group_of[second], 1, 2)
    )
    words = lex.topics.ravel()
    lines = [
        f"# w2vdist synth seed={spec.seed}: word1<TAB>word2<TAB>score; "
        + ", ".join(f"{score:g} = {level}" for level, score in SIMILARITY_SCORES.items())
    ]
    for level, score in enumerate(SIMILARITY_SCORES.values()):
        candidates = np.flatnonzero(level_of == level)
        size = min(SIMILARITY_PAIRS_PER_LEVEL, len(candidates))
        for k in rng.choice(candidates, size=size, replace=False):
            w1, w2 = lex.words[words[first[k]]], lex.words[words[second[k]]]
            lines.append(f"{w1}\t{w2}\t{score:g}")
    return "\n".join(lines) + "\n"


def synthesize(spec: SynthConfig) -> dict[str, str]:
    """All output files' contents, keyed by file name; the same spec gives the same bytes."""
    rng = np.random.default_rng(spec.seed)
    lex = build_lexicon(spec, rng)
    corpus = generate_corpus(spec, lex, rng)
    similarity = similarity_text(spec, lex, rng)
    written = {
        "generator": "w2vdist synth",
        "spec": dataclasses.asdict(spec),
        "tokens": corpus.count(" ") + corpus.count("\n"),
        "vocab_size": len(lex.words),
        "topics": {
            f"group{t // TOPICS_PER_GROUP}-topic{t % TOPICS_PER_GROUP}": " ".join(
                lex.words[i] for i in row
            )
            for t, row in enumerate(lex.topics)
        },
        "analogy_sections": [section for section, _, _ in RELATIONS],
        "role_markers": {role: " ".join(ws) for role, ws in ROLE_MARKERS.items()},
        "similarity_scores": SIMILARITY_SCORES,
    }
    return {
        CORPUS_FILE: corpus,
        ANALOGIES_FILE: analogies_text(lex),
        SIMILARITY_FILE: similarity,
        SETTINGS_FILE: json.dumps(written, indent=2) + "\n",
    }


def write(out_dir: str | os.PathLike, spec: SynthConfig, overwrite: bool = False) -> dict[str, Path]:
    """Write the files; each appears under its final name only once complete, synth.json last.
    A write that fails (a full disk) takes back the files this call wrote, and the folder if
    it made it, so that running it again needs no --overwrite."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise UsageError(f"{out / existing[0]}: already exists (pass --overwrite to replace)")
    contents = synthesize(spec)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        (out / SETTINGS_FILE).unlink(missing_ok=True)
    paths: dict[str, Path] = {}
    try:
        for name in OUTPUT_FILES:
            write_text(out / name, contents[name])
            paths[name] = out / name
    except BaseException:
        for path in paths.values():
            path.unlink(missing_ok=True)
        if made and not any(out.iterdir()):
            out.rmdir()
        raise
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, SynthCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(SynthCommand, args, prefix="synth.")
    paths = write(cmd.out_dir, cmd.synth, overwrite=cmd.overwrite)
    written = json.loads(paths[SETTINGS_FILE].read_text(encoding="utf-8"))
    print(f"w2vdist synth: {written['tokens']:,} tokens, {written['vocab_size']:,} words")
    for path in paths.values():
        print(f"  wrote {path}")
    return 0
