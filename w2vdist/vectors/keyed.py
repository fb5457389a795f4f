"""`WordVectors`: trained vectors as one Python object, the way gensim's KeyedVectors holds them.

    from w2vdist import WordVectors
    wv = WordVectors.load("runs/en")                  # run directory, checkpoint folder,
    wv.most_similar("king", topn=5)                   # word2vec text/binary, GloVe, fastText .vec
    embedding, vocab = wv.to_embedding(freeze=False)  # an nn.Embedding for a PyTorch model
    ids = vocab.encode("The king spoke.")             # prepare's tokenizer, carried along

Loaded from a run, it also holds the output (context) table, the words' corpus counts, the
tokenizer settings `prepare` used and the run's resolved spec. Every command that reads vectors
(`eval`, `export`, `neighbors`) reads them through this class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from w2vdist.corpus.tokenize import Tokenizer
from w2vdist.errors import UsageError
from w2vdist.vectors import word2vec as w2v
from w2vdist.vectors.config import TABLES

PAD, UNK = "<pad>", "<unk>"
Query = str | torch.Tensor | np.ndarray  # a word, or a vector of the vectors' size


@dataclass
class WordVectors:
    """Words (most frequent first when the source says so) and their vectors.

    `vectors` is the table asked for (the input table by default); `output`, `counts`,
    `tokenizer` (prepare's settings) and `spec` (the run's resolved spec) are there when the
    source has them.
    """

    index_to_key: list[str]
    vectors: torch.Tensor
    output: torch.Tensor | None = None
    counts: np.ndarray | None = None
    tokenizer: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = torch.as_tensor(self.vectors, dtype=torch.float32)
        if self.vectors.ndim != 2 or len(self.index_to_key) != self.vectors.shape[0]:
            raise ValueError(f"{len(self.index_to_key)} words but vectors of shape "
                             f"{tuple(self.vectors.shape)}")

    # --- loading and saving ------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, table: str = "input") -> "WordVectors":
        """From a run directory or checkpoint folder (`table`: input, output or average), or a
        word2vec text/binary, fastText `.vec` or GloVe-style (no header) file."""
        path = Path(path)
        if path.is_dir():
            return cls._from_checkpoint(path, table)
        if table != "input":
            raise UsageError(f"{path}: a vectors file holds one table; table {table!r} needs a "
                             "run directory or checkpoint folder")
        if not path.is_file():
            raise UsageError(f"{path}: no such vectors file, run directory or checkpoint")
        words, matrix = w2v.read_vectors(path)
        return cls(words, matrix)

    @classmethod
    def _from_checkpoint(cls, path: Path, table: str) -> "WordVectors":
        from w2vdist.training import checkpoint

        if table not in TABLES:
            raise UsageError(f"table must be one of {', '.join(TABLES)} (got {table!r})")
        found = checkpoint.load(checkpoint.resolve(path))
        inp, out = found.state.input.float(), found.state.output.float()
        chosen = {"input": inp, "output": out, "average": (inp + out) / 2}[table]
        return cls(found.vocab.words, chosen, out, found.vocab.counts,
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
        w2v.write_word2vec(path, self.index_to_key, self.vectors, binary=binary_format(path, binary))

    # --- the KeyedVectors surface ------------------------------------------------------------

    @cached_property
    def key_to_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.index_to_key)}

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, word: object) -> bool:
        return word in self.key_to_index

    def __getitem__(self, words: str | Sequence[str]) -> torch.Tensor:
        if isinstance(words, str):
            return self.vectors[self._index(words)]
        return self.vectors[[self._index(w) for w in words]]

    def similarity(self, a: str, b: str) -> float:
        unit = w2v.unit_rows(self[[a, b]])
        return float(unit[0] @ unit[1])

    def most_similar(
        self, positive: Query | Sequence[Query] = (), negative: Query | Sequence[Query] = (),
        topn: int = 10, restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]]:
        """gensim's most_similar: the words nearest the sum of the unit vectors of `positive`
        minus those of `negative` (3CosAdd), the query words left out. A query may also be a
        vector (a tensor or array of `vector_size`), added as it is, as gensim adds it."""
        positive = [positive] if _single(positive) else list(positive)
        negative = [negative] if _single(negative) else list(negative)
        if not positive and not negative:
            raise ValueError("most_similar needs at least one word or vector")
        limit = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        unit = self._unit[:limit]
        weights = [(q, 1.0) for q in positive] + [(q, -1.0) for q in negative]
        query = sum(s * self._query_vector(q) for q, s in weights)
        scores = unit @ w2v.unit_rows(query.unsqueeze(0))[0]
        for word in (q for q, _ in weights if isinstance(q, str)):
            if self.key_to_index[word] < limit:
                scores[self.key_to_index[word]] = -torch.inf
        top = scores.topk(min(topn, int(torch.isfinite(scores).sum())))
        return [(self.index_to_key[i], float(s)) for i, s in zip(top.indices.tolist(),
                                                                   top.values.tolist())]

    def similar_by_vector(self, vector: torch.Tensor | np.ndarray, topn: int = 10,
                          restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The words nearest `vector` by cosine (gensim's similar_by_vector)."""
        return self.most_similar([vector], topn=topn, restrict_vocab=restrict_vocab)

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """`a` is to `b` as `c` is to ...: most_similar(positive=[b, c], negative=[a])."""
        return self.most_similar(positive=[b, c], negative=[a], topn=topn)

    def doesnt_match(self, words: Sequence[str]) -> str:
        """The word farthest from the mean of the others' unit vectors."""
        unit = self._unit[[self._index(w) for w in words]]
        mean = w2v.unit_rows(unit.mean(0, keepdim=True))[0]
        return list(words)[int((unit @ mean).argmin())]

    def evaluate_analogies(self, path: str | Path, restrict_vocab: int = 30_000) -> dict[str, Any]:
        """What `w2vdist eval --eval.analogies` reports (equal to gensim's scorer)."""
        from w2vdist.vectors.evaluate import score_analogies

        return score_analogies(self.index_to_key, self.vectors, path, restrict_vocab)

    def evaluate_pairs(self, path: str | Path, restrict_vocab: int = 30_000) -> dict[str, Any]:
        """What `w2vdist eval --eval.similarity` reports (equal to gensim's scorer)."""
        from w2vdist.vectors.evaluate import score_similarity

        return score_similarity(self.index_to_key, self.vectors, path, restrict_vocab)

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
    ) -> tuple[nn.Embedding, "EmbeddingVocab"]:
        """An `nn.Embedding.from_pretrained` of these vectors and the vocabulary that indexes it.

        Rows: `<pad>` first (all zeros, the `padding_idx`: no gradient) if `padding`, then
        `<unk>` (the mean vector, or `unknown_vector`) if `unknown`, then the words in order.
        """
        rows, specials = [], []
        if padding:
            rows.append(torch.zeros(1, self.vector_size))
            specials.append(PAD)
        if unknown:
            vector = self.vectors.mean(0) if unknown_vector is None else unknown_vector
            rows.append(torch.as_tensor(vector, dtype=torch.float32).reshape(1, -1))
            specials.append(UNK)
        weight = torch.cat([*rows, self.vectors])
        embedding = nn.Embedding.from_pretrained(
            weight, freeze=freeze, padding_idx=0 if padding else None, max_norm=max_norm
        )
        return embedding, EmbeddingVocab(specials + self.index_to_key, padding, unknown,
                                         self.tokenizer)

    # ----------------------------------------------------------------------------------------

    @cached_property
    def _tokenizer(self) -> Tokenizer:
        """Built once: it may read a stopword file and load nltk or a stemmer."""
        return Tokenizer.from_settings(self.tokenizer)

    @cached_property
    def _unit(self) -> torch.Tensor:
        return w2v.unit_rows(self.vectors)

    def _query_vector(self, query: Query) -> torch.Tensor:
        if isinstance(query, str):
            return self._unit[self._index(query)]
        vector = torch.as_tensor(query, dtype=self.vectors.dtype).flatten()
        if vector.numel() != self.vector_size:
            raise ValueError(f"a query vector has {vector.numel()} values; these vectors have "
                             f"{self.vector_size}")
        return vector

    def _index(self, word: str) -> int:
        try:
            return self.key_to_index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary") from None


@dataclass
class EmbeddingVocab:
    """The rows of `WordVectors.to_embedding`'s table: word <-> index, and `encode`."""

    index_to_key: list[str]
    padding: bool
    unknown: bool
    tokenizer: dict[str, Any]

    @cached_property
    def key_to_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.index_to_key)}

    @property
    def pad_index(self) -> int | None:
        return 0 if self.padding else None

    @property
    def unk_index(self) -> int | None:
        return int(self.padding) if self.unknown else None

    def __len__(self) -> int:
        return len(self.index_to_key)

    @cached_property
    def _tokenizer(self) -> Tokenizer:
        return Tokenizer.from_settings(self.tokenizer)

    def encode(self, text: str, length: int | None = None) -> list[int]:
        """Indices of `text`'s words (prepare's tokenizer): unknown words are `<unk>` (or left
        out without one); padded with `<pad>` or cut to `length` if given."""
        words = self._tokenizer(text) if self.tokenizer else text.split()
        index, unk = self.key_to_index, self.unk_index
        ids = [index.get(w, unk) for w in words]
        ids = [i for i in ids if i is not None]
        if length is not None:
            if self.pad_index is None and len(ids) < length:
                raise ValueError("padding to a length needs a <pad> row (padding=True)")
            ids = ids[:length] + [self.pad_index] * (length - len(ids))  # type: ignore[list-item]
        return ids


def _single(query: Any) -> bool:
    """Whether a most_similar argument is one query (a word or one vector), not a list."""
    return isinstance(query, str) or (isinstance(query, (torch.Tensor, np.ndarray))
                                      and query.ndim == 1)


def binary_format(path: Path, binary: bool | None) -> bool:
    """`.bin` means binary, `.txt`/`.vec` text; an explicit choice that contradicts refused."""
    by_name = {".bin": True, ".txt": False, ".vec": False}.get(path.suffix.lower())
    if binary is not None and by_name is not None and binary != by_name:
        kind = "binary" if binary else "text"
        raise UsageError(f"{path}: a {path.suffix} file cannot hold the {kind} format; name it "
                         f"{'.bin' if binary else '.txt or .vec'} or choose the other format")
    return by_name if binary is None and by_name is not None else bool(binary)


def sidecar(path: Path) -> Path:
    """Where an export's metadata goes: `vectors.bin` -> `vectors.bin.json`."""
    return path.with_name(path.name + ".json")


def metadata(vectors: WordVectors, table: str, scores: dict[str, Any] | None = None) -> str:
    """The JSON an export writes beside the vectors: how they were made."""
    from w2vdist import __version__

    return json.dumps({
        "w2vdist_version": __version__,
        "words": len(vectors),
        "dim": vectors.vector_size,
        "table": table,
        "tokenizer": vectors.tokenizer,
        "spec": vectors.spec,
        "scores": scores or {},
    }, indent=2) + "\n"
