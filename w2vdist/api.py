"""The Python API: prepare, train and load vectors from a script or a notebook.

    import w2vdist
    w2vdist.prepare(["corpus.txt"], "shards", min_count=5)   # or sentences=[["a", "b"], ...]
    result = w2vdist.train(data={"shards": "shards"}, train={"run_dir": "runs/a", "epochs": 5})
    result.vectors.most_similar("king")

Settings are the command line's, as keyword sections (`model={"dim": 300}`) or a `Config`;
both calls are safe at a script's top level, without an `if __name__ == "__main__"` guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from w2vdist.corpus.config import PrepareConfig
from w2vdist.errors import UsageError
from w2vdist.settings import from_dict, merge, to_dict
from w2vdist.training.config import Config

if TYPE_CHECKING:
    from w2vdist.corpus.prepare import Summary
    from w2vdist.training.callbacks import Callback
    from w2vdist.training.spec import RunSpec
    from w2vdist.vectors.keyed import WordVectors


def prepare(inputs: str | Path | Sequence[str | Path] = (), output: str | Path = "", *,
            sentences: Iterable[str | Sequence[str]] | None = None,
            **settings: Any) -> "Summary":
    """`w2vdist prepare`: `settings` are PrepareConfig's fields (min_count=5, ...). The corpus
    is files (`inputs`) or `sentences` (gensim's: read once, so a generator will do), each
    a string of text, tokenized as a file's lines are, or a list of tokens, taken as they
    are (the tokenizer then splits on whitespace, without lowercasing or normalizing, unless
    `settings` say otherwise)."""
    from w2vdist.corpus.prepare import prepare as run_prepare
    from w2vdist.corpus.sentences import TOKENS_AS_GIVEN, Sentences

    given = None
    if sentences is not None:
        for name in ("encoding", "format", "text_field"):
            if name in settings:
                raise UsageError(f"prepare: {name} applies to files, not to sentences")
        given = Sentences(sentences)
        if given.tokenized:
            settings = {**TOKENS_AS_GIVEN, **settings}
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not all(isinstance(p, (str, Path)) for p in paths):
        raise UsageError("prepare: inputs are paths of files; give a corpus in Python as "
                         "sentences=...")
    cfg = from_dict(PrepareConfig, {**settings, "inputs": [str(p) for p in paths],
                                    "output": str(output)}, "prepare.")
    return run_prepare(cfg, given)


@dataclass
class TrainResult:
    """What a `train` call produced."""

    run_dir: Path
    spec: "RunSpec"
    checkpoint: Path | None
    scores: dict[str, float] = field(default_factory=dict)
    exit_code: int = 0

    @property
    def vectors(self) -> "WordVectors":
        """The trained vectors (loaded from the newest checkpoint on first use)."""
        from w2vdist.vectors.keyed import WordVectors

        if self.checkpoint is None:
            raise UsageError(f"{self.run_dir}: the run wrote no checkpoint")
        return WordVectors.load(self.checkpoint)


def train(config: Config | None = None, *, callbacks: Sequence["Callback"] = (),
          resume: str = "auto", **sections: dict[str, Any]) -> TrainResult:
    """`w2vdist train` in this process: `config`, overridden by `sections` (data={...},
    model={...}, ...). A stop signal ends it with `exit_code` 75 and a checkpoint."""
    from w2vdist.training.loop import run

    tree = merge(to_dict(config) if config else {}, sections)
    cfg = from_dict(Config, tree)
    outcome = run(cfg, resume=resume, callbacks=callbacks)
    return TrainResult(Path(cfg.train.run_dir), outcome.spec, outcome.checkpoint,
                       outcome.scores, outcome.exit_code)
