"""Tokenizer: what each option makes of a line, and that no word can break word2vec files."""

from __future__ import annotations

import pickle

import pytest

from w2vdist.corpus import tokenize
from w2vdist.corpus.config import PrepareConfig
from w2vdist.corpus.tokenize import WORD_DESCRIPTION, Tokenizer, read_stopwords
from w2vdist.errors import UsageError

TRICKY = (
    "Überraschung! naïve Café_au_lait 42, it's\u00a0non\u2028breaking\u3000ideographic"
    "\x1cfile\x1dsep\x85nel\u2029para\tTab  «quoted» \ufffd end."
)


def test_default_lowercases_and_keeps_unicode_word_characters() -> None:
    words = Tokenizer()("Hello, World! naïve Café_au_lait 42 x-ray")
    assert words == ["hello", "world", "naïve", "café_au_lait", "42", "x", "ray"]


def test_ascii_lines_take_a_faster_path_to_the_same_words() -> None:
    """Every ASCII character, between letters and alone, splits as the Unicode pattern does."""
    line = "".join(f"a{chr(c)}b {chr(c)} " for c in range(128))
    assert line.isascii() and tokenize._words(line) == tokenize.unicode_word().findall(line)
    assert len(tokenize._words(line)) > 128
    assert Tokenizer(lowercase=False)("Hello, it's x_1 9") == ["Hello", "it", "s", "x_1", "9"]


def test_no_lowercase_keeps_case() -> None:
    assert Tokenizer(lowercase=False)("Hello World") == ["Hello", "World"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("whitespace", "costs|$3.50,|e-mail|me...|now!"),
        ("wordpunct", "costs|$|3|.|50|,|e|-|mail|me|...|now|!"),
        ("toktok", "costs|$|3.50|,|e-mail|me|...|now|!"),
    ],
)
def test_other_tokenizers(name: str, expected: str) -> None:
    assert Tokenizer(name)("Costs $3.50, e-mail me... now!") == expected.split("|")


@pytest.mark.parametrize("name", ["default", "whitespace", "wordpunct", "toktok"])
def test_a_byte_order_mark_inside_text_is_no_part_of_a_word(name: str) -> None:
    """Files that each begin with a mark, joined by `cat`: the later marks are inside text."""
    assert Tokenizer(name)("the end\n\ufeffthe start \ufeff\ufeff of\ufeffit") == [
        "the", "end", "the", "start", "of", "it"]


@pytest.mark.parametrize("name", ["default", "whitespace", "wordpunct", "toktok"])
@pytest.mark.parametrize("stem", [None, "english"])
def test_no_word_is_empty_or_holds_whitespace(name: str, stem: str | None) -> None:
    words = Tokenizer(name, stem=stem)(TRICKY)
    assert words
    for word in words:
        assert word and not any(ch.isspace() for ch in word), repr(word)


def test_stemming() -> None:
    assert Tokenizer(stem="english")("Running runs generously") == ["run", "run", "generous"]


def test_stopwords_are_removed_before_stemming(tmp_path) -> None:
    path = tmp_path / "stop.txt"
    path.write_text("The\n\n  and  \nrunning\n", encoding="utf-8")
    assert read_stopwords(str(path), lowercase=True) == {"the", "and", "running"}
    assert read_stopwords(str(path), lowercase=False) == {"The", "and", "running"}
    marked = tmp_path / "marked.txt"  # "UTF-8 with BOM": "The" must still be "the"
    marked.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_stopwords(str(marked), lowercase=True) == {"the", "and", "running"}
    latin = tmp_path / "latin.txt"
    latin.write_bytes("the\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError, match=f"{latin}:2: not valid UTF-8"):
        read_stopwords(str(latin), lowercase=True)
    cfg = PrepareConfig(stopwords=str(path), stem="english")
    words = Tokenizer.from_config(cfg)("The cat and the running runner runs")
    assert words == ["cat", "runner", "run"]


def test_missing_stopword_file_names_it(tmp_path) -> None:
    with pytest.raises(UsageError, match="nope.txt: stopword file not found"):
        Tokenizer.from_config(PrepareConfig(stopwords=str(tmp_path / "nope.txt")))


def test_unknown_stem_language_is_a_config_error() -> None:
    with pytest.raises(UsageError, match="prepare.stem must be one of"):
        PrepareConfig(stem="klingon")


def test_pickles_as_its_settings() -> None:
    tok = Tokenizer("wordpunct", lowercase=False, stem="english", stopwords=frozenset({"a"}))
    clone = pickle.loads(pickle.dumps(tok))
    assert clone(TRICKY) == tok(TRICKY)
    assert clone.settings() == tok.settings()


def test_settings_describe_the_tokenizer() -> None:
    stopwords = frozenset({"b", "a"})
    settings = Tokenizer(stem="english", stopwords=stopwords, stopwords_file="stop.txt").settings()
    assert settings["name"] == "default" and settings["pattern"] == WORD_DESCRIPTION
    assert settings["lowercase"] is True and settings["stem"] == "english"
    assert settings["stopwords_file"] == "stop.txt" and settings["stopwords"] == 2
    assert len(settings["stopwords_sha256"]) == 64
