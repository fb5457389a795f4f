"""`WordTable`: words and a table of their vectors, with the lookups and similarity queries of
gensim's KeyedVectors (`most_similar`, `distances`, `doesnt_match`, ...), answered in torch.

`keyed.WordVectors` builds on it with what a trained run carries (the output table, counts,
tokenizer, spec) and the ways in and out (files, runs, gensim, an `nn.Embedding`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from w2vdist.vectors import word2vec as w2v

Query = str | torch.Tensor | np.ndarray  # a word, or a vector of the vectors' size
Terms = Query | Sequence[Query | tuple[Query, float]]  # most_similar's positive or negative
Top = list[tuple[str, float]]  # the top words, each with its score


@dataclass
class WordTable:
    """Words (most frequent first when the source says so) and their vectors, a row each."""

    index_to_key: list[str]
    vectors: torch.Tensor

    def __post_init__(self) -> None:
        self.vectors = torch.as_tensor(self.vectors, dtype=torch.float32)
        if self.vectors.ndim != 2 or len(self.index_to_key) != self.vectors.shape[0]:
            raise ValueError(f"{len(self.index_to_key)} words but vectors of shape "
                             f"{tuple(self.vectors.shape)}")

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

    def __getitem__(self, keys: str | int | Sequence[str | int]) -> torch.Tensor:
        if isinstance(keys, (str, int, np.integer)):
            return self.vectors[self.get_index(keys)]
        return self.vectors[[self.get_index(k) for k in keys]]

    def get_index(self, key: str | int, default: int | None = None) -> int:
        """The row of `key` (a word, or a row number, as gensim accepts); `default` when it
        is absent, else KeyError."""
        row = self.key_to_index.get(key, -1) if isinstance(key, str) else -1
        if row >= 0:
            return row
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) \
                and 0 <= key < len(self):
            return int(key)
        if default is not None:
            return default
        raise KeyError(f"{key!r} is not in the vocabulary")

    def has_index_for(self, key: str | int) -> bool:
        return self.get_index(key, -1) >= 0

    def get_vector(self, key: str | int, norm: bool = False) -> torch.Tensor:
        """`key`'s vector; scaled to length 1 with `norm`."""
        row = self.get_index(key)
        return self.vectors[row] / self._norms[row] if norm else self.vectors[row]

    def get_normed_vectors(self) -> torch.Tensor:
        """Every vector scaled to length 1 (a new table each call, as gensim makes one;
        zero vectors stay zero)."""
        return self.vectors / self._norms[:, None]

    def get_mean_vector(
        self, keys: Sequence[Query | int], weights: Sequence[float] | np.ndarray | None = None,
        pre_normalize: bool = True, post_normalize: bool = False, ignore_missing: bool = True,
    ) -> torch.Tensor:
        """gensim's weighted mean of keys' vectors (unit vectors with `pre_normalize`; vectors
        given as arrays taken as they are): a sentence's vector, say. Missing words are left
        out unless `ignore_missing` is false."""
        if not len(keys):
            raise ValueError("cannot compute the mean of no keys")
        weights = [1.0] * len(keys) if weights is None else list(map(float, weights))
        if len(weights) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(weights)} weights")
        mean, total = torch.zeros(self.vector_size), 0.0
        for key, weight in zip(keys, weights):
            if isinstance(key, (torch.Tensor, np.ndarray)):
                vector = self._query_vector(key)
            elif self.has_index_for(key):
                vector = self.get_vector(key, norm=pre_normalize)
            elif ignore_missing:
                continue
            else:
                raise KeyError(f"{key!r} is not in the vocabulary")
            mean += weight * vector
            total += abs(weight)
        mean = mean / total if total > 0 else mean
        return w2v.unit_rows(mean.unsqueeze(0))[0] if post_normalize else mean

    def similarity(self, a: str, b: str) -> float:
        unit = w2v.unit_rows(self[[a, b]])
        return float(unit[0] @ unit[1])

    def distance(self, a: str, b: str) -> float:
        """Cosine distance: 1 - similarity."""
        return 1 - self.similarity(a, b)

    @staticmethod
    def cosine_similarities(vector: torch.Tensor | np.ndarray,
                            vectors: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The cosine of `vector` with each row of `vectors`."""
        vectors = torch.as_tensor(vectors, dtype=torch.float32)
        return w2v.cosines(vectors, w2v.row_norms(vectors),
                           torch.as_tensor(vector, dtype=torch.float32))

    def distances(self, word_or_vector: Query, other_words: Sequence[str] = ()) -> torch.Tensor:
        """1 - cosine from a word or vector to each of `other_words` (all words if none)."""
        vector = self._query_vector(word_or_vector)  # a word's at length 1: the same cosines
        others = self.vectors if not other_words else self[list(other_words)]
        return 1 - self.cosine_similarities(vector, others)

    def n_similarity(self, words_a: Sequence[str], words_b: Sequence[str]) -> float:
        """Cosine between the means of two sets of words' vectors."""
        if not (len(words_a) and len(words_b)):
            raise ValueError("n_similarity needs two non-empty lists of words")
        return float(self.cosine_similarities(self[list(words_a)].mean(0),
                                              self[list(words_b)].mean(0).unsqueeze(0))[0])

    def closer_than(self, a: str, b: str) -> list[str]:
        """The words closer to `a` than `b` is, in row order (`a` left out)."""
        distances = self.distances(a)
        row_a, row_b = self.get_index(a), self.get_index(b)
        rows = torch.nonzero(distances < distances[row_b]).flatten().tolist()
        return [self.index_to_key[r] for r in rows if r != row_a]

    def rank(self, a: str, b: str) -> int:
        """`b`'s place among `a`'s neighbours: 1 for the nearest."""
        return len(self.closer_than(a, b)) + 1

    def most_similar_to_given(self, key: str, keys: Sequence[str]) -> str:
        """The word of `keys` most similar to `key`."""
        return keys[int(torch.tensor([self.similarity(key, k) for k in keys]).argmax())]

    @overload
    def most_similar(self, positive: Terms = ..., negative: Terms = ..., topn: int = ...,
                     restrict_vocab: int | None = ...) -> Top: ...
    @overload
    def most_similar(self, positive: Terms, negative: Terms, topn: None,
                     restrict_vocab: int | None = ...) -> torch.Tensor: ...
    @overload
    def most_similar(self, positive: Terms = ..., negative: Terms = ..., *, topn: None,
                     restrict_vocab: int | None = ...) -> torch.Tensor: ...

    def most_similar(self, positive: Terms = (), negative: Terms = (), topn: int | None = 10,
                     restrict_vocab: int | None = None) -> Top | torch.Tensor:
        """gensim's most_similar: the words nearest the sum of the unit vectors of `positive`
        minus those of `negative` (3CosAdd), the query words left out. A query may also be a
        vector (a tensor or array of `vector_size`), added as it is, as gensim adds it, and
        either may come with a weight, `(query, weight)` (one in `negative` is subtracted;
        gensim adds it as signed). `topn=None`: every word's cosine."""
        weights = self._weighted(positive, negative)
        limit = self._limit(restrict_vocab)
        query = torch.stack([s * self._query_vector(q) for q, s in weights]).sum(0)
        scores = w2v.cosines(self.vectors[:limit], self._norms[:limit], query)
        return self._top(scores, weights, topn)

    @overload
    def most_similar_cosmul(self, positive: Terms = ..., negative: Terms = ..., topn: int = ...,
                            restrict_vocab: int | None = ...) -> Top: ...
    @overload
    def most_similar_cosmul(self, positive: Terms, negative: Terms, topn: None,
                            restrict_vocab: int | None = ...) -> torch.Tensor: ...
    @overload
    def most_similar_cosmul(self, positive: Terms = ..., negative: Terms = ..., *, topn: None,
                            restrict_vocab: int | None = ...) -> torch.Tensor: ...

    def most_similar_cosmul(
        self, positive: Terms = (), negative: Terms = (), topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> Top | torch.Tensor:
        """Levy and Goldberg's 3CosMul, as gensim's most_similar_cosmul: the product of the
        cosines with `positive`, divided by that with `negative` (+1e-6), each shifted to
        [0, 1]. Less swayed than 3CosAdd by one large similarity. Query vectors are taken by
        their direction (gensim uses their length too); `restrict_vocab` limits the search
        (gensim ignores it); a `(query, weight)` raises its factor to that power."""
        weights = self._weighted(positive, negative)
        if not any(s > 0 for _, s in weights):
            raise ValueError("most_similar_cosmul needs at least one positive word or vector")
        limit = self._limit(restrict_vocab)
        # In numpy: torch ops on the scores right after numpy's products took 1.6x the time
        factors: dict[bool, np.ndarray] = {}  # positive or not: the product of its factors
        for query, weight in weights:
            shifted = w2v.cosines(self.vectors[:limit], self._norms[:limit],
                                  self._query_vector(query)).cpu().numpy()
            shifted += 1
            shifted /= 2
            if abs(weight) != 1:
                shifted **= abs(weight)
            sign = weight > 0
            factors[sign] = factors[sign] * shifted if sign in factors else shifted
        eps = w2v.COSMUL_EPSILON
        bottom = factors[False] + eps if False in factors else 1 + eps
        return self._top(torch.from_numpy(factors[True] / bottom), weights, topn)

    @overload
    def similar_by_key(self, key: str, topn: int = ...,
                       restrict_vocab: int | None = ...) -> Top: ...
    @overload
    def similar_by_key(self, key: str, topn: None,
                       restrict_vocab: int | None = ...) -> torch.Tensor: ...

    def similar_by_key(self, key: str, topn: int | None = 10,
                       restrict_vocab: int | None = None) -> Top | torch.Tensor:
        """The words nearest `key` (gensim's similar_by_key / similar_by_word)."""
        return self.most_similar(key, topn=topn, restrict_vocab=restrict_vocab)

    similar_by_word = similar_by_key

    @overload
    def similar_by_vector(self, vector: torch.Tensor | np.ndarray, topn: int = ...,
                          restrict_vocab: int | None = ...) -> Top: ...
    @overload
    def similar_by_vector(self, vector: torch.Tensor | np.ndarray, topn: None,
                          restrict_vocab: int | None = ...) -> torch.Tensor: ...

    def similar_by_vector(self, vector: torch.Tensor | np.ndarray, topn: int | None = 10,
                          restrict_vocab: int | None = None) -> Top | torch.Tensor:
        """The words nearest `vector` by cosine (gensim's similar_by_vector)."""
        return self.most_similar([vector], topn=topn, restrict_vocab=restrict_vocab)

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> Top:
        """`a` is to `b` as `c` is to ...: most_similar(positive=[b, c], negative=[a])."""
        return self.most_similar([b, c], [a], topn=topn)

    def doesnt_match(self, words: Sequence[str]) -> str:
        """The word farthest from the mean of the others' unit vectors."""
        unit = w2v.unit_rows(self[list(words)])
        mean = w2v.unit_rows(unit.mean(0, keepdim=True))[0]
        return list(words)[int((unit @ mean).argmin())]

    def evaluate_analogies(self, path: str | Path, restrict_vocab: int = 30_000,
                           method: str = "3cosadd") -> dict[str, Any]:
        """What `w2vdist eval --eval.analogies` reports (3cosadd: equal to gensim's scorer;
        or 3cosmul)."""
        from w2vdist.vectors.evaluate import score_analogies

        return score_analogies(self.index_to_key, self.vectors, path, restrict_vocab, method)

    def evaluate_pairs(self, path: str | Path, restrict_vocab: int = 30_000) -> dict[str, Any]:
        """What `w2vdist eval --eval.similarity` reports (equal to gensim's scorer)."""
        from w2vdist.vectors.evaluate import score_similarity

        return score_similarity(self.index_to_key, self.vectors, path, restrict_vocab)

    def evaluate_word_analogies(
        self, analogies: str | Path, restrict_vocab: int = 300_000, case_insensitive: bool = True,
        dummy4unknown: bool = False, similarity_function: str = "most_similar",
    ) -> tuple[float, list[dict[str, Any]]]:
        """gensim's evaluate_word_analogies, the same answer and shape: (total accuracy, each
        section's correct and incorrect questions, then "Total accuracy"). gensim accepts
        `similarity_function` and ignores it; "most_similar_cosmul" here answers by 3CosMul."""
        from w2vdist.vectors.gensim_scores import gensim_analogies

        methods = {"most_similar": "3cosadd", "most_similar_cosmul": "3cosmul"}
        if similarity_function not in methods:
            raise ValueError(f"similarity_function must be one of {', '.join(methods)} "
                             f"(got {similarity_function!r})")
        return gensim_analogies(self.index_to_key, self.vectors, analogies, restrict_vocab,
                                case_insensitive, dummy4unknown, methods[similarity_function])

    def evaluate_word_pairs(
        self, pairs: str | Path, delimiter: str = "\t", encoding: str = "utf8",
        restrict_vocab: int = 300_000, case_insensitive: bool = True, dummy4unknown: bool = False,
    ) -> tuple[Any, Any, float]:
        """gensim's evaluate_word_pairs, the same answer and shape: scipy's Pearson and Spearman
        results (coefficient, p-value) and the percentage of pairs with unknown words."""
        from w2vdist.vectors.gensim_scores import gensim_pairs

        return gensim_pairs(self.index_to_key, self.vectors, pairs, restrict_vocab, delimiter,
                            encoding, case_insensitive, dummy4unknown)

    # ----------------------------------------------------------------------------------------

    @cached_property
    def _norms(self) -> torch.Tensor:
        """Each vector's length, kept rather than a unit copy of the table (a 3M x 300 table
        is 3.6 GB)."""
        return w2v.row_norms(self.vectors)

    def _query_vector(self, query: Query | int) -> torch.Tensor:
        """A word's unit vector, or a vector given as it is."""
        if not isinstance(query, (torch.Tensor, np.ndarray)):
            return self.get_vector(query, norm=True)
        vector = torch.as_tensor(query, dtype=self.vectors.dtype).flatten()
        if vector.numel() != self.vector_size:
            raise ValueError(f"a query vector has {vector.numel()} values; these vectors have "
                             f"{self.vector_size}")
        return vector

    def _weighted(self, positive: Any, negative: Any) -> list[tuple[Query, float]]:
        """most_similar's arguments as (query, signed weight) pairs."""
        pairs = []
        for queries, sign in ((positive, 1.0), (negative, -1.0)):
            for query in [queries] if _single(queries) else list(queries):
                query, weight = query if isinstance(query, tuple) else (query, 1.0)
                pairs.append((query, sign * float(weight)))
        if not pairs:
            raise ValueError("most_similar needs at least one word or vector")
        return pairs

    def _limit(self, restrict_vocab: int | None) -> int:
        return len(self) if restrict_vocab is None else min(restrict_vocab, len(self))

    def _top(self, scores: torch.Tensor, weights: list[tuple[Query, float]],
             topn: int | None) -> Top | torch.Tensor:
        """The `topn` best-scoring words, the query words left out; all scores for None."""
        if topn is None:
            return scores
        rows = {self.get_index(q) for q, _ in weights
                if not isinstance(q, (torch.Tensor, np.ndarray))}
        left_out = [r for r in rows if r < len(scores)]
        scores[left_out] = -torch.inf
        top = scores.topk(max(0, min(topn, len(scores) - len(left_out))))
        return [(self.index_to_key[i], float(v)) for i, v in zip(top.indices.tolist(),
                                                                   top.values.tolist())]


def _single(query: Any) -> bool:
    """Whether a most_similar argument is one query (a word, row or vector), not a list."""
    if isinstance(query, (torch.Tensor, np.ndarray)):
        return query.ndim == 1
    return isinstance(query, (str, int, np.integer))
