"""Python logging for every rank: one line format, INFO from rank 0, warnings from all.

Every line reads ``TIME [rank R/W HOST] LEVEL [step S] message`` so the interleaved output
of many ranks in one SLURM file can be told apart; ``set_step`` adds the trainer's step.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

from tqdm import tqdm

LOGGER_NAME = "w2vdist"


class _StepFilter(logging.Filter):
    """Stamps each record with the trainer's current step (blank before training starts)."""

    step: int | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        record.step = "" if self.step is None else f" [step {self.step}]"
        return True


class _StderrHandler(logging.StreamHandler):
    """On a terminal, writes around rank 0's live tqdm bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        if not self.stream.isatty():
            super().emit(record)
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


_step_filter = _StepFilter()


def set_step(step: int | None) -> None:
    """Prefix later messages (from any logger under ``w2vdist``) with this step."""
    _step_filter.step = step


def setup_logging(run_dir: Path | None, rank: int, world_size: int) -> logging.Logger:
    """Configure the ``w2vdist`` logger; calling it again replaces the previous setup.

    Rank 0 logs INFO and above to stderr and to ``run_dir/train.log`` (appended, so a resumed
    run keeps one log); other ranks log WARNING and above to stderr only, so every rank's
    errors reach the job's output files without ``world_size`` copies of the progress.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    set_step(None)

    host = socket.gethostname().split(".")[0]
    formatter = logging.Formatter(
        f"%(asctime)s [rank {rank}/{world_size} {host}] %(levelname)s%(step)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    handlers: list[logging.Handler] = [_StderrHandler(sys.stderr)]
    if rank == 0 and run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(run_dir) / "train.log", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_step_filter)
        logger.addHandler(handler)
    return logger


def close_logging() -> None:
    """Undo `setup_logging` when a run ends: a script that goes on after `w2vdist.train`
    must not append to the finished run's train.log, and w2vdist's later records (a vectors
    file's warnings, say) reach the script's own logging again."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    set_step(None)
