"""Distributed word2vec: skip-gram with negative sampling on many GPUs or CPUs.

`WordVectors` holds trained vectors; `prepare` and `train` run the pipeline from Python
(`w2vdist.api`). They are imported on first use, so `w2vdist --version` stays fast; type
checkers see them imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from w2vdist.api import TrainResult, prepare, train
    from w2vdist.training.callbacks import Callback
    from w2vdist.vectors.keyed import WordVectors

__version__ = "0.1.0"
__all__ = ["Callback", "TrainResult", "WordVectors", "prepare", "train"]


def __getattr__(name: str) -> Any:
    if name == "WordVectors":
        from w2vdist.vectors.keyed import WordVectors

        return WordVectors
    if name == "Callback":
        from w2vdist.training.callbacks import Callback

        return Callback
    if name in ("prepare", "train", "TrainResult"):
        from w2vdist import api

        return getattr(api, name)
    raise AttributeError(f"module 'w2vdist' has no attribute {name!r}")
