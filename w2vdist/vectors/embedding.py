"""Trained vectors as the first layer of a PyTorch model: `WordVectors.to_embedding`.

The table gets optional `<pad>` and `<unk>` rows in front of the words, and `EmbeddingVocab`
maps text to its rows with the tokenizer `prepare` used, so a model sees the words as the
vectors were trained on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn

from w2vdist.corpus.tokenize import Tokenizer

PAD, UNK = "<pad>", "<unk>"


def embedding(
    words: list[str], vectors: torch.Tensor, tokenizer: dict[str, Any], freeze: bool,
    padding: bool, unknown: bool, unknown_vector: torch.Tensor | None, max_norm: float | None,
) -> tuple[nn.Embedding, "EmbeddingVocab"]:
    """`nn.Embedding.from_pretrained` of `<pad>` (zeros, the `padding_idx`: no gradient) if
    `padding`, `<unk>` (the mean vector, or `unknown_vector`) if `unknown`, then `vectors`."""
    rows, specials = [], []
    if padding:
        rows.append(torch.zeros(1, vectors.shape[1]))
        specials.append(PAD)
    if unknown:
        vector = vectors.mean(0) if unknown_vector is None else unknown_vector
        rows.append(torch.as_tensor(vector, dtype=torch.float32).reshape(1, -1))
        specials.append(UNK)
    weight = torch.cat([*rows, vectors])
    layer = nn.Embedding.from_pretrained(weight, freeze=freeze,
                                         padding_idx=0 if padding else None, max_norm=max_norm)
    return layer, EmbeddingVocab(specials + words, padding, unknown, tokenizer)


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
        ids = [i for i in (index.get(w, unk) for w in words) if i is not None]
        if length is not None:
            if self.pad_index is None and len(ids) < length:
                raise ValueError("padding to a length needs a <pad> row (padding=True)")
            ids = ids[:length] + [self.pad_index] * (length - len(ids))  # type: ignore[list-item]
        return ids
