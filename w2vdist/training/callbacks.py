"""Hooks into a training run, as gensim's `CallbackAny2Vec` gives into `Word2Vec.train`.

Subclass `Callback` and override what you need; pass instances to `w2vdist.train(...,
callbacks=[...])`. Epoch ends are seen on every rank (after the epoch's merge, so the tables
agree); checkpoints and scores on rank 0, where they are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from w2vdist.training.session import Session


class Callback:
    def on_epoch_end(self, epoch: int, step: int, session: "Session") -> None:
        """`epoch` (from 1) ended at global `step`; `session.tables` holds the vectors."""

    def on_checkpoint(self, path: Path, step: int) -> None:
        """A complete step folder was written at `path` (one written in the background,
        `checkpoint.background`, is handed over once complete, some steps after `step`)."""

    def on_eval(self, step: int, scores: dict[str, float]) -> None:
        """The `eval` section's files were scored at `step`."""
