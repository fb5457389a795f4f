"""The one metrics and progress logger of a training run (after torchtitan's MetricsLogger).

Rank 0 gets a `Metrics` that draws a tqdm bar over words, appends every `log()` call to
``run_dir/metrics.jsonl`` and sends it to Weights & Biases; every other rank gets a
`NullMetrics` whose methods do nothing, so the trainer never branches on rank to log.

W&B settings, highest precedence first:

- mode: ``--wandb`` / ``wandb.mode`` online, offline or disabled; for ``auto`` (the default)
  ``WANDB_MODE`` if set, else online when wandb finds an API key (``WANDB_API_KEY``, a netrc
  entry for the W&B host, or wandb's settings file), else offline. A run that cannot start
  online (no network, bad key) falls back to offline with a warning: W&B never stops training.
  Without network wandb first waits for its ``init_timeout`` (90 s, ``WANDB_INIT_TIMEOUT``),
  so on compute nodes cut off from the internet choose offline. Offline runs are uploaded
  later with ``wandb sync RUN_DIR/wandb/offline-run-*``.
- project: ``wandb.project`` when set to something other than the default ``w2vdist``, else
  ``WANDB_PROJECT``, else ``w2vdist``. entity, tags: the config, else ``WANDB_ENTITY`` /
  ``WANDB_TAGS``. name: the config, else ``WANDB_NAME``, else the run directory's name.
- Files go under ``$WANDB_DIR/wandb/`` if set, else ``RUN_DIR/wandb/``. The W&B run id is kept in checkpoints: a resumed run passes
  it back and continues the same W&B run, logging at its global step. Steps that W&B already
  holds (logged after the last checkpoint of a killed job) are written to metrics.jsonl again
  but not re-sent, because W&B steps must increase.
- Besides scalars: at each eval a table of the probe words' nearest neighbours
  (``eval.probe_words``, else ten words past the 50 commonest); at the end of a run the
  exported vectors (``RUN_DIR/vectors.bin`` and its ``.json`` metadata) as a ``word-vectors``
  artifact, and the 1,000 commonest words' vectors as a table for W&B's embedding projector.

wandb is imported only where a run is started or a key looked up: the import takes about a
second, and ranks other than 0 (or runs with W&B disabled) never need it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from w2vdist.settings import to_dict
from w2vdist.training.config import Config, WandbConfig

if TYPE_CHECKING:
    from w2vdist.training.data import OnDevice
    from w2vdist.training.spec import Plan
    from w2vdist.training.sync import Sync

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TTY_REFRESH_SECONDS = 0.5
FILE_REFRESH_SECONDS = 30.0  # one progress line per 30 s keeps SLURM output files readable


class Metrics:
    """Rank 0's logger: progress bar, metrics.jsonl and (unless disabled) a W&B run."""

    def __init__(self, run_dir: Path, total_words: int, start_words: int,
                 run: Any | None, run_id: str | None, stream: IO[str]) -> None:
        self.run_id = run_id
        self._run = run
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / METRICS_FILE
        unfinished = _ends_inside_a_line(path)
        self._jsonl = open(path, "a", encoding="utf-8")
        if unfinished:  # a line a killed run cut short ends alone, not inside the next record
            self._jsonl.write("\n")
        self._bar = _progress_bar(total_words, start_words, stream)

    def progress(self, words_done: int, loss: float | None, words_per_s: float,
                 extra: dict[str, float] | None = None) -> None:
        """Move the bar to `words_done`; it redraws at most every refresh interval."""
        postfix = {} if loss is None else {"loss": loss}
        postfix.update(extra or {})
        self._bar.rate = words_per_s
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(words_done - self._bar.n)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record `metrics` at global `step`; calls with the same step merge into one W&B row."""
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._run is not None and step >= self._run.starting_step:
            self._run.log(dict(metrics), step=step)

    @property
    def wandb_on(self) -> bool:
        return self._run is not None

    def neighbours(self, step: int, words: list[str], table: torch.Tensor,
                   probes: list[str], k: int = 8) -> None:
        """A W&B table of each probe word's k nearest words at `step` (what the space has
        learnt, readable at a glance); `probes` empty: ten words past the 50 commonest."""
        if self._run is None:
            return
        import wandb

        from w2vdist.vectors.neighbors import nearest
        from w2vdist.vectors.word2vec import unit_rows

        index = {w: i for i, w in enumerate(words)}
        rows = [index[w] for w in probes if w in index] or list(range(50, min(60, len(words)))) \
            or list(range(min(10, len(words))))
        found = nearest(words, unit_rows(table.float().cpu()), rows, k)
        data = [[step, words[r], ", ".join(f"{w} {s:.2f}" for w, s in near)]
                for r, near in zip(rows, found)]
        self._run.log({"eval/neighbours": wandb.Table(columns=["step", "word", "nearest"],
                                                      data=data)}, step=step)

    def publish(self, vectors_file: Path, metadata_file: Path, words: list[str],
                table: torch.Tensor, step: int, top: int = 1000) -> None:
        """The exported vectors as a versioned W&B artifact (with their metadata), and the
        `top` most frequent words' vectors as a table W&B's embedding projector draws."""
        if self._run is None:
            return
        import wandb

        meta = json.loads(metadata_file.read_text())
        artifact = wandb.Artifact(f"{_safe(self._run.name or 'run')}-vectors",
                                  type="word-vectors", metadata=meta)
        artifact.add_file(str(vectors_file))
        artifact.add_file(str(metadata_file))
        self._run.log_artifact(artifact)
        rows = [[w, v] for w, v in zip(words[:top], table[:top].float().cpu().tolist())]
        self._run.log({"embeddings": wandb.Table(columns=["word", "vector"], data=rows)},
                      step=step)

    def __enter__(self) -> "Metrics":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Draw the final bar, close metrics.jsonl and finish the W&B run (flushes its files)."""
        self._bar.close()
        self._jsonl.close()
        if self._run is not None:
            import wandb

            self._run.finish()
            self._run = None
            wandb.teardown()  # finish() leaves the run's files to be flushed by wandb's service


class NullMetrics(Metrics):
    """What ranks other than 0 get: the same calls, doing nothing."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id

    def progress(self, words_done: int, loss: float | None, words_per_s: float,
                 extra: dict[str, float] | None = None) -> None:
        pass

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    wandb_on = False

    def neighbours(self, *args: Any, **kwargs: Any) -> None:
        pass

    def publish(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def build_metrics(cfg: Config, run_dir: Path, rank: int, run_id: str | None,
                  total_words: int, start_words: int) -> Metrics:
    """The run's logger: a real one on rank 0, `NullMetrics` elsewhere.

    `run_id` is the W&B run id saved in the checkpoint being resumed (None for a new run);
    read the id to save in checkpoints back from `Metrics.run_id`.
    """
    if rank != 0:
        return NullMetrics(run_id)
    run_dir = Path(run_dir)
    mode = resolve_mode(cfg.wandb.mode)
    run = None if mode == "disabled" else _start_wandb(cfg, run_dir, mode, run_id)
    if run is not None:
        run_id = run.id
    return Metrics(run_dir, total_words, start_words, run, run_id, sys.stderr)


def resolve_mode(mode: str) -> str:
    """online, offline or disabled for a configured mode (see the module docstring for auto)."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "")
    env = {"dryrun": "offline", "run": "online"}.get(env, env)
    if env in ("online", "offline", "disabled"):
        return env
    import wandb

    try:
        has_key = wandb.login(prompt=False, verify=False)
    except Exception as exc:  # a malformed key: say so, keep training
        log.warning("W&B: cannot use the configured API key (%s); logging offline", exc)
        return "offline"
    return "online" if has_key else "offline"


def _start_wandb(cfg: Config, run_dir: Path, mode: str, run_id: str | None) -> Any:
    import wandb

    w = cfg.wandb
    project_is_default = w.project == WandbConfig.project
    kwargs: dict[str, Any] = dict(
        mode=mode,
        dir=os.environ.get("WANDB_DIR") or run_dir,
        project=None if project_is_default and os.environ.get("WANDB_PROJECT") else w.project,
        entity=w.entity,
        name=w.name or (None if os.environ.get("WANDB_NAME") else run_dir.resolve().name),
        tags=w.tags or None,
        config=to_dict(cfg),
        id=run_id,
        resume="allow" if run_id else None,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return wandb.init(**kwargs)
    except Exception as exc:
        if mode != "online":
            raise
        log.warning("W&B: could not start an online run (%s); logging offline to %s",
                    exc, run_dir / "wandb")
        return wandb.init(**(kwargs | {"mode": "offline"}))


def _ends_inside_a_line(path: Path) -> bool:
    """Whether a file's last line lacks its newline (the file absent or empty: no)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def _safe(name: str) -> str:
    """An artifact name W&B accepts: letters, digits, '-', '_', '.'."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


class _WordBar(tqdm):
    """A tqdm bar showing the trainer's words/s (and the ETA that follows from it)."""

    rate: float | None = None

    @property
    def format_dict(self) -> dict[str, Any]:
        d = super().format_dict
        if self.rate:
            d["rate"] = self.rate
        return d


def _progress_bar(total_words: int, start_words: int, stream: IO[str]) -> _WordBar:
    """Redrawn in place on a terminal; elsewhere (SLURM files) one plain line per 30 s."""
    tty = stream.isatty()
    interval = TTY_REFRESH_SECONDS if tty else FILE_REFRESH_SECONDS
    return _WordBar(
        total=total_words,
        initial=start_words,
        desc="train",
        unit="word",
        unit_scale=True,
        dynamic_ncols=tty,
        ascii=not tty,
        mininterval=interval,
        miniters=1,
        file=stream if tty else _WholeLines(stream),
    )


class _WholeLines:
    """A file for tqdm that turns its carriage-return redraws into one line per redraw."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()


def _plain(value: Any) -> Any:
    """A JSON-safe number: tensors and numpy scalars become floats, NaN/inf become null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Interval:
    """Loss and speed over one reporting interval, summed in float64 and then reset."""

    def __init__(self, step: int, plan: Plan) -> None:
        self.plan = plan
        self.start_step = self.step = step
        self.run_start = self.start = time.perf_counter()
        self.loss = 0.0
        self.pairs = 0.0
        self.sync_seconds = 0.0
        self.handover_seconds = 0.0
        self.wait_seconds = 0.0
        self.checkpoint_seconds = 0.0

    def add(self, loss: float, pairs: float) -> None:
        self.loss += loss
        self.pairs += pairs

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def mean_loss(self) -> float:
        return self.loss / max(self.pairs, 1.0)

    def words_per_s(self, step: int) -> float:
        return (step - self.step) * self.plan.words_per_step / max(self.elapsed(), 1e-9)

    def flush(self, step: int, sync: Sync, batches: OnDevice, lr: float,
              device: torch.device, checkpoint_seconds: float) -> dict[str, float]:
        """The interval's figures, then a new interval from `step`. Of the trainer's time
        handing batches over (`data.OnDevice`), the share waiting for the loader's workers says
        whether they keep up (torchtitan logs data loading the same way), and the rest, its own
        cutting and copying, whether the trainer's host does; the share held up by checkpoints
        (`Checkpointer.held_seconds`, rank 0's) whether to write them in the background or less
        often."""
        seconds = max(self.elapsed(), 1e-9)
        handover = batches.seconds - self.handover_seconds
        wait = batches.wait_seconds - self.wait_seconds
        stats = {
            "loss": self.mean_loss(),
            "lr": lr,
            "words_per_s": self.words_per_s(step),
            "pairs_per_s": self.pairs / seconds,
            "epoch": step / self.plan.steps_per_epoch,
            "progress": step / self.plan.total_steps,
            "sync_time_share": (sync.seconds - self.sync_seconds) / seconds,
            "loader_wait_share": wait / seconds,
            "handover_share": max(0.0, handover - wait) / seconds,
            "checkpoint_time_share": (checkpoint_seconds - self.checkpoint_seconds) / seconds,
            "sync_bytes_per_step": sync.bytes_sent / max(step - self.start_step, 1),
            "memory_gb": _peak_memory_gb(device),
            "ranks": len(self.plan.rank_words),  # a run may go on over another number
        }
        self.step, self.start, self.loss, self.pairs = step, time.perf_counter(), 0.0, 0.0
        self.sync_seconds = sync.seconds
        self.handover_seconds, self.wait_seconds = batches.seconds, batches.wait_seconds
        self.checkpoint_seconds = checkpoint_seconds
        return stats

    def total_words_per_s(self) -> float:
        seconds = max(time.perf_counter() - self.run_start, 1e-9)
        return (self.step - self.start_step) * self.plan.words_per_step / seconds


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
