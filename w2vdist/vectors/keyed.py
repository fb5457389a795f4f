"""`WordVectors`: trained vectors as one Python object, the way gensim's KeyedVectors holds them.

    from w2vdist import WordVectors
    wv = WordVectors.load("runs/en")                  # run directory, checkpoint folder,
    wv.most_similar("king", topn=5)                   # word2vec text/binary, GloVe, fastText .vec
    embedding, vocab = wv.to_embedding(freeze=False)  # an nn.Embedding for a PyTorch model
    ids = vocab.encode("The king spoke.")             # prepare's tokenizer, carried along

Loaded from a run, it also holds the output (context) table, the words' corpus counts, the
tokenizer settings `prepare` used and the run's resolved spec; its lookups and similarity
queries are `queries.WordTable`'s. Every command that reads vectors (`eval`, `export`,
`neighbors`) reads them through this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from w2vdist.corpus import remote
from w2vdist.corpus.tokenize import Tokenizer
from w2vdist.corpus.vocab import Vocab
from w2vdist.errors import UsageError
from w2vdist.vectors import word2vec as w2v
from w2vdist.vectors.config import TABLES
from w2vdist.vectors.embedding import EmbeddingVocab, embedding
from w2vdist.vectors.queries import WordTable


@dataclass
class WordVectors(WordTable):
    """Words (most frequent first when the source says so) and their vectors.

    `vectors` is the table asked for (the input table by default); `output`, `counts`,
    `tokenizer` (prepare's settings) and `spec` (the run's resolved spec) are there when the
    source has them.
    """

    output: torch.Tensor | None = None
    counts: np.ndarray | None = None
    tokenizer: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    # --- loading and saving ------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, table: str = "input",
             limit: int | None = None) -> "WordVectors":
        """From a run directory or checkpoint folder (`table`: input, output or average), or a
        word2vec text/binary, fastText `.vec` or GloVe-style (no header) file, compressed or
        not, here or at a URL (`remote.cached_file`); only the first (most frequent) `limit`
        words if given, as gensim's `limit`."""
        path = _local(path)
        if limit is not None and limit < 1:
            raise UsageError(f"{path}: limit must be >= 1 (got {limit})")
        if path.is_dir():
            return cls._from_checkpoint(path, table, limit)
        if table != "input":
            raise UsageError(f"{path}: a vectors file holds one table; table {table!r} needs a "
                             "run directory or checkpoint folder")
        if not path.is_file():
            raise UsageError(f"{path}: no such vectors file, run directory or checkpoint")
        words, matrix = w2v.read_vectors(path, limit)
        return cls(words, matrix)

    @classmethod
    def _from_checkpoint(cls, path: Path, table: str, limit: int | None) -> "WordVectors":
        from w2vdist.training import checkpoint

        if table not in TABLES:
            raise UsageError(f"table must be one of {', '.join(TABLES)} (got {table!r})")
        found = checkpoint.load(checkpoint.resolve(path))
        # A limit's rows copied out, so that the whole tables are not kept alive by a view
        inp, out = (t.float() if limit is None else t[:limit].float().clone()
                    for t in (found.state.input, found.state.output))
        chosen = {"input": inp, "output": out, "average": (inp + out) / 2}[table]
        return cls(found.vocab.words[:limit], chosen, out, found.vocab.counts[:limit],
                   found.spec.tokenizer, found.spec.to_dict())

    @classmethod
    def from_gensim(cls, kv: Any) -> "WordVectors":
        """From gensim's KeyedVectors (counts too, when it holds them)."""
        counts = None
        if len(kv) and "count" in kv.expandos:
            counts = np.asarray(kv.expandos["count"], dtype=np.int64)
        return cls(list(kv.index_to_key), torch.from_numpy(np.array(kv.vectors)), counts=counts)

    def to_gensim(self) -> Any:
        """gensim's KeyedVectors with the same words, vectors and counts."""
        from gensim.models import KeyedVectors

        kv = KeyedVectors(self.vector_size)
        kv.add_vectors(self.index_to_key, self.vectors.numpy())
        if self.counts is not None:
            for word, count in zip(self.index_to_key, self.counts.tolist()):
                kv.set_vecattr(word, "count", int(count))
        return kv

    def save(self, path: str | Path, binary: bool | None = None) -> None:
        """word2vec format, binary for `.bin` and text otherwise unless `binary` says."""
        path = Path(path)
        w2v.write_word2vec(path, self.index_to_key, self.vectors,
                           binary=w2v.binary_format(path, binary))

    @classmethod
    def load_word2vec_format(
        cls, fname: str | Path, fvocab: str | Path | None = None, binary: bool = False,
        encoding: str = "utf8", unicode_errors: str = "strict", limit: int | None = None,
        datatype: Any = np.float32, no_header: bool = False,
    ) -> "WordVectors":
        """gensim's `KeyedVectors.load_word2vec_format`, so that code written for it runs
        unchanged: the format is read from the file (`binary` is not needed), `fvocab` (`word
        count` lines, as `save_word2vec_format` or word2vec.c's -save-vocab writes them) gives
        the counts; vectors stay float32."""
        if np.dtype(datatype) != np.float32:
            raise UsageError(f"{fname}: vectors are kept as float32 (datatype "
                             f"{np.dtype(datatype)} asked for); convert `vectors` after loading")
        words, matrix = w2v.read_vectors(_local(fname), limit, no_header,
                                         (encoding, unicode_errors))
        counts = None if fvocab is None else _counts_of(words, Path(fvocab))
        return cls(words, matrix, counts=counts)

    def save_word2vec_format(self, fname: str | Path, fvocab: str | Path | None = None,
                             binary: bool = False, write_header: bool = True) -> None:
        """gensim's `save_word2vec_format`: text unless `binary` (compressed by the name's
        suffix), without the `V D` header if not `write_header` (GloVe's layout), and the
        counts as `word count` lines into `fvocab`."""
        if fvocab is not None and self.counts is None:
            raise UsageError(f"{fvocab}: these vectors hold no counts to write (counts come "
                             "with a run, or with load_word2vec_format's fvocab)")
        w2v.write_word2vec(fname, self.index_to_key, self.vectors, binary, write_header)
        if fvocab is not None and self.counts is not None:
            w2v.write_counts(fvocab, self.index_to_key, self.counts.tolist())

    def get_vecattr(self, key: str | int, attr: str) -> int:
        """gensim's per-word attributes; vectors from a run (or gensim) hold `count`."""
        return int(self._attribute(attr)[self.get_index(key)])

    def set_vecattr(self, key: str | int, attr: str, value: int) -> None:
        """gensim's: set a word's `count` (the one attribute held)."""
        self._attribute(attr)[self.get_index(key)] = value

    def _attribute(self, attr: str) -> np.ndarray:
        """The array that holds `attr` for every word: only `count`, when the source had it."""
        if attr != "count" or self.counts is None:
            raise KeyError(f"these vectors hold no {attr!r} attribute (counts come with a run)")
        return self.counts

    # --- changing the table, as gensim's KeyedVectors does ------------------------------------

    def add_vectors(self, keys: str | Sequence[str], weights: Any,
                    extras: dict[str, Any] | None = None, replace: bool = False) -> None:
        """Append the `keys` not yet present with their `weights` (rows); keys present keep
        their vectors unless `replace`. `extras={"count": [...]}` gives their counts (new
        words count 0 without it). A run's output table gets zero rows for new words, as
        word2vec starts output vectors at zero."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        rows = torch.as_tensor(np.asarray(weights), dtype=torch.float32).reshape(len(keys), -1)
        if rows.shape[1] != self.vector_size or len(set(keys)) != len(keys):
            raise ValueError(f"{len(keys)} distinct keys of {self.vector_size} values each "
                             f"expected, got {len(set(keys))} keys and weights of shape "
                             f"{tuple(rows.shape)}")
        extras = dict(extras or {})
        given = extras.pop("count", None)
        counts = None if given is None else np.asarray(given, dtype=np.int64).reshape(-1)
        if extras or counts is not None and (self.counts is None or len(counts) != len(keys)):
            raise ValueError("extras: only 'count' is held, one for each key, by vectors that "
                             "hold counts")
        present = [self.key_to_index.get(k) for k in keys]
        new = [i for i, row in enumerate(present) if row is None]
        old = [(i, row) for i, row in enumerate(present) if row is not None and replace]
        if old:
            self.vectors[[row for _, row in old]] = rows[[i for i, _ in old]]
            if counts is not None and self.counts is not None:
                self.counts[[row for _, row in old]] = counts[[i for i, _ in old]]
        self.index_to_key = self.index_to_key + [keys[i] for i in new]
        self.vectors = torch.cat([self.vectors, rows[new]])
        if self.output is not None:
            self.output = torch.cat([self.output, self.output.new_zeros(len(new),
                                                                         self.vector_size)])
        if self.counts is not None:
            added = np.zeros(len(new), np.int64) if counts is None else counts[new]
            self.counts = np.concatenate([self.counts, added])
        self._changed()

    def add_vector(self, key: str, vector: Any) -> int:
        """gensim's: `add_vectors([key], [vector])`, and the key's row."""
        self.add_vectors([key], [vector])
        return self.get_index(key)

    def __setitem__(self, keys: str | Sequence[str], weights: Any) -> None:
        """`wv["word"] = vector`: add the words, or replace their vectors."""
        self.add_vectors(keys, weights, replace=True)

    def fill_norms(self, force: bool = False) -> None:
        """gensim's: compute the vectors' lengths now (again with `force`, after changing
        `vectors` in place); queries otherwise compute them when first asked."""
        if force:
            self._changed()
        _ = self._norms  # computed now and kept

    def unit_normalize_all(self) -> None:
        """Scale every vector to length 1, in place, as gensim does (zero vectors stay
        zero): the lengths the training gave are lost."""
        self.vectors /= w2v.row_norms(self.vectors)[:, None]
        self._changed()

    def sort_by_descending_frequency(self) -> None:
        """Order the words by descending count, ties in their present order (gensim puts
        the later first)."""
        if self.counts is None:
            raise KeyError("these vectors hold no counts to sort by (counts come with a run)")
        order = np.argsort(-self.counts, kind="stable")
        self.index_to_key = [self.index_to_key[i] for i in order]
        index = torch.from_numpy(order)
        self.vectors = self.vectors[index]
        self.output = None if self.output is None else self.output[index]
        self.counts = self.counts[order]
        self._changed()

    def _changed(self) -> None:
        """Forget what was computed from the words and vectors."""
        for cached in ("key_to_index", "_norms"):
            self.__dict__.pop(cached, None)

    # --- into a PyTorch model ----------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """`text` split into words exactly as `prepare` split the corpus."""
        if not self.tokenizer:
            raise UsageError("these vectors carry no tokenizer settings (they were not loaded "
                             "from a w2vdist run): split the text yourself")
        return self._tokenizer(text)

    def encode(self, text: str) -> list[int]:
        """Row indices of `text`'s words; words outside the vocabulary are dropped, as
        `prepare` drops them from the corpus."""
        index = self.key_to_index
        return [index[w] for w in self.tokenize(text) if w in index]

    def to_embedding(
        self, freeze: bool = True, padding: bool = True, unknown: bool = True,
        unknown_vector: torch.Tensor | None = None, max_norm: float | None = None,
    ) -> tuple[nn.Embedding, EmbeddingVocab]:
        """An `nn.Embedding.from_pretrained` of these vectors and the vocabulary that indexes it.

        Rows: `<pad>` first (all zeros, the `padding_idx`: no gradient) if `padding`, then
        `<unk>` (the mean vector, or `unknown_vector`) if `unknown`, then the words in order.
        """
        return embedding(self.index_to_key, self.vectors, self.tokenizer, freeze, padding,
                         unknown, unknown_vector, max_norm)

    # ----------------------------------------------------------------------------------------

    @cached_property
    def _tokenizer(self) -> Tokenizer:
        """Built once: it may read a stopword file and load nltk or a stemmer."""
        return Tokenizer.from_settings(self.tokenizer)


def _local(path: str | Path) -> Path:
    """`path`, or the cached copy of the file at a URL (gensim opens URLs too)."""
    return remote.cached_file(path) if isinstance(path, str) and remote.is_url(path) \
        else Path(path)


def _counts_of(words: list[str], path: Path) -> np.ndarray:
    """Each word's count from a `word count` file, which must hold every word."""
    given = Vocab.load(path)
    counts = dict(zip(given.words, given.counts.tolist()))
    missing = [w for w in words if w not in counts]
    if missing:
        raise UsageError(f"{path}: no count for {len(missing):,} of the {len(words):,} words, "
                         f"the first {missing[0]!r}")
    return np.array([counts[w] for w in words], dtype=np.int64)
