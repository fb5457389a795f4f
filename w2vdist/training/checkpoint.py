"""The training state and the checkpointer that owns its step folders.

Layout: `RUN_DIR/checkpoints/step-000001234/` holding `tables.pt` (both embedding tables),
`state.pt` (step, every rank's RNG state, data position and stream, W&B run id), `spec.json`
(the resolved run spec, `spec.RunSpec`), `vocab.tsv` (the vocabulary the tables were trained
with) and `COMPLETE` (sizes and SHA-256 of the other files). A folder is self-contained: copied
anywhere it exports and evaluates alone. It is written under a temporary name, fsynced and
renamed (`files.atomic_path`); readers ignore folders without the marker and fall back past a
corrupt one, so a crash at any moment leaves either the previous checkpoint or the new one.
Everything loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import threading
import time
from concurrent.futures import Future
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import torch

from w2vdist.corpus.vocab import VOCAB_FILE, Vocab
from w2vdist.errors import UsageError
from w2vdist.files import atomic_path, remove_stale, sha256_file, temporary_sibling
from w2vdist.training.config import CheckpointConfig
from w2vdist.training.chunks import Stream
from w2vdist.training.data import Position
from w2vdist.training.spec import RunSpec

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
SPEC_FILE = "spec.json"
_FILES = ("tables.pt", "state.pt", SPEC_FILE, VOCAB_FILE)

log = logging.getLogger("w2vdist")


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped.

    `rng`, `data` and `streams` hold one entry per rank of the world that saved it (rank 0
    gathers the first two before saving; every rank knows all streams); the words trained are
    `step` times the spec's words per step.
    """

    input: torch.Tensor
    output: torch.Tensor
    step: int = 0
    rng: list[torch.Tensor] = field(default_factory=list)
    data: list[Position] = field(default_factory=list)
    wandb_run_id: str | None = None
    streams: list[Stream] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What `state.pt` holds (the tables go to `tables.pt`)."""
        return {
            "step": self.step,
            "rng": self.rng,
            "data": [list(astuple(p)) for p in self.data],
            "wandb_run_id": self.wandb_run_id,
            "streams": [s.to_dict() for s in self.streams],
        }

    @property
    def world_size(self) -> int:
        """How many ranks saved it."""
        return len(self.data)

    @classmethod
    def from_dict(cls, tables: dict[str, torch.Tensor], state: dict[str, Any]) -> "TrainState":
        data = [Position(*p) for p in state["data"]]
        streams = [Stream.from_dict(d) for d in state.get("streams", [])]
        return cls(
            tables["input"], tables["output"], state["step"], list(state["rng"]), data,
            state["wandb_run_id"], streams or [Stream(str(rank)) for rank in range(len(data))],
        )


@dataclass
class Checkpoint:
    path: Path
    state: TrainState
    spec: RunSpec
    vocab: Vocab


class Checkpointer:
    """Rank 0's step folders of one run: when to save, writing (here or in the background),
    pruning, finding, loading."""

    def __init__(self, run_dir: str | Path, cfg: CheckpointConfig) -> None:
        self.root = Path(run_dir) / CHECKPOINTS
        self.cfg = cfg
        self.last_save = time.monotonic()
        self.held_seconds = 0.0  # the trainer's time in `save` and waiting in `finished`
        self._pending: tuple[int, Future[Path]] | None = None  # the background save's

    def clock_due(self) -> bool:
        """Whether `every_minutes` have passed on this rank's clock (rank 0's decides)."""
        minutes = self.cfg.every_minutes
        return minutes > 0 and time.monotonic() - self.last_save >= 60 * minutes

    def due(self, step: int, clock_due: bool) -> bool:
        every = self.cfg.every_steps
        return clock_due or bool(every and step % every == 0)

    def steps(self) -> list[Path]:
        """Complete step folders, newest first."""
        return complete_steps(self.root.parent)

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that loads; corrupt ones are reported and skipped."""
        for path in self.steps():
            try:
                return load(path)
            except UsageError as exc:
                log.warning("%s; trying the previous checkpoint", exc)
        return None

    def save(self, state: TrainState, spec: RunSpec, vocab_file: Path,
             background: bool = False) -> Path:
        """Write one complete step folder atomically, then prune to the newest `keep`. With
        `background`, a thread writes it from a copy of the tables in host memory (which a
        GPU's tables need for writing anyway) while training goes on, and `finished` hands it
        over; callers first wait for the one before (`finished(wait=True)`).

        A failed write (a full disk, a quota) leaves the earlier folders as they were and no
        temporary behind, and says what happened in one line (from `finished`, for a write in
        the background).
        """
        assert self._pending is None, "a background save is still being written"
        began = time.perf_counter()
        final = self.root / step_name(state.step)
        tables = {"input": state.input, "output": state.output}
        contents = ({k: v.detach().to("cpu", copy=background).contiguous()
                     for k, v in tables.items()}, state.to_dict(), spec.to_dict())
        needed = 2 * state.input.numel() * state.input.element_size()
        if background:
            written: Future[Path] = Future()
            threading.Thread(target=self._write_into, name="checkpoint", daemon=False,
                             args=(written, final, contents, vocab_file, needed)).start()
            self._pending = (state.step, written)
        else:
            self._write(final, contents, vocab_file, needed)
        self.last_save = time.monotonic()
        self.held_seconds += time.perf_counter() - began
        return final

    def finished(self, wait: bool = False) -> tuple[Path, int] | None:
        """The folder and step of the background save, once written (waited for with `wait`);
        None while it is being written, or with none; its error raised."""
        if self._pending is None or not (wait or self._pending[1].done()):
            return None
        (step, written), self._pending = self._pending, None
        began = time.perf_counter()
        try:
            return written.result(), step
        finally:
            self.held_seconds += time.perf_counter() - began

    def _write_into(self, written: Future[Path], *args: Any) -> None:
        try:
            written.set_result(self._write(*args))
        except BaseException as exc:  # raised in the trainer's thread by `finished`
            written.set_exception(exc)

    def _write(self, final: Path, contents: tuple[dict[str, torch.Tensor], dict[str, Any],
                                                  dict[str, Any]],
               vocab_file: Path, needed: int) -> Path:
        tables, state, spec = contents
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            remove_stale(self.root)  # what a save killed mid-way left
            with atomic_path(final, directory=True) as tmp:
                torch.save(tables, tmp / "tables.pt")
                torch.save(state, tmp / "state.pt")
                (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
                _link_or_copy(vocab_file, tmp / VOCAB_FILE)
                digests = {name: _digest(tmp / name) for name in _FILES}
                (tmp / COMPLETE).write_text(json.dumps(digests, indent=2) + "\n")
        except (OSError, RuntimeError) as exc:
            raise UsageError(f"{final}: {_write_failure(exc, self.root, needed)}; the earlier "
                             "checkpoints are kept, the run can resume from the newest") from None
        self._prune()
        return final

    def _prune(self) -> None:
        """Drop all but the newest `keep` folders. Each is first renamed to a temporary name
        (atomic), then removed: a kill during a removal must not leave a folder that still
        has its COMPLETE marker but lost its tables."""
        for old in self.steps()[self.cfg.keep:]:
            trash = temporary_sibling(old)
            os.rename(old, trash)
            shutil.rmtree(trash, ignore_errors=True)


def step_name(step: int) -> str:
    return f"step-{step:09d}"


def step_of(folder: Path) -> int | None:
    """The step a step folder's name says (`step_name`); None for another name."""
    named = re.fullmatch(r"step-(\d+)", folder.name)
    return int(named[1]) if named else None


def complete_steps(run_dir: str | Path) -> list[Path]:
    """Complete step folders of a run directory, newest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def load(path: str | Path, verify: bool = True) -> Checkpoint:
    """Load one step folder, checking it against its COMPLETE marker."""
    path = Path(path)
    marker = path / COMPLETE
    if not marker.is_file():
        raise UsageError(f"{path}: not a complete checkpoint (no {COMPLETE} marker)")
    try:
        digests = json.loads(marker.read_text())
        missing = sorted(set(_FILES) - set(digests))
        if missing:
            raise ValueError(f"written by another version of w2vdist (no {missing[0]})")
        if verify:
            for name, expected in digests.items():
                if _digest(path / name) != expected:
                    raise ValueError(f"{name} does not match its recorded size/checksum")
        tables = torch.load(path / "tables.pt", map_location="cpu", weights_only=True)
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        spec = RunSpec.from_dict(json.loads((path / SPEC_FILE).read_text()))
        vocab = Vocab.load(path / VOCAB_FILE)
    except (OSError, ValueError, RuntimeError, EOFError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: corrupt checkpoint: {exc}") from None
    if vocab.hash != spec.vocab_hash:
        raise UsageError(f"{path}: corrupt checkpoint: {VOCAB_FILE} does not match {SPEC_FILE}")
    return Checkpoint(path, TrainState.from_dict(tables, state), spec, vocab)


def resolve(path: str | Path) -> Path:
    """A step folder, or a run directory's newest complete step folder."""
    p = Path(path)
    if (p / COMPLETE).is_file():
        return p
    if not p.exists():
        raise UsageError(f"{p}: no such run directory or checkpoint")
    steps = complete_steps(p)
    if not steps:
        raise UsageError(f"{p}: no complete checkpoint found (expected {CHECKPOINTS}/step-*/)")
    return steps[0]


def load_tables(path: str | Path) -> tuple[Vocab, torch.Tensor, torch.Tensor]:
    """(vocabulary, input table, output table) from a run directory or a step folder."""
    ckpt = load(resolve(path))
    return ckpt.vocab, ckpt.state.input, ckpt.state.output


def _write_failure(exc: BaseException, root: Path, needed: int) -> str:
    """What stopped a save of `needed` bytes, in words: torch reports a full disk as
    "unexpected pos"."""
    if getattr(exc, "errno", None) == errno.ENOSPC or shutil.disk_usage(root).free < needed:
        return "no space left on device"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot write: {exc.strerror}"
    return f"cannot write: {str(exc).splitlines()[0]}"


def _link_or_copy(source: Path, target: Path) -> None:
    """The run's vocabulary in the step folder: a hard link where the filesystem allows (no
    space), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _digest(path: Path) -> str:
    return f"{path.stat().st_size}:{sha256_file(path)}"
