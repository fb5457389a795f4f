"""Throughput of a finished `w2vdist train` run, from the records its loop wrote.

    python -c "import run_figures; print(run_figures.run_figures('RUN'))"   (in benchmarks/)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from w2vdist.errors import UsageError


def run_figures(run_dir: str | Path) -> dict[str, Any]:
    """Throughput of a finished, fresh `w2vdist train` run from its metrics.jsonl.

    Each record covers the steps since the previous one at its `words_per_s`, so the training
    loop's own time (no start-up, no final checkpoint) is the sum of steps x words per step /
    words_per_s; the words per step and world size come from the run's resolved spec
    (config.json).
    """
    run_dir = Path(run_dir)
    run = json.loads((run_dir / "config.json").read_text())["run"]
    words_per_step = run["words_per_step"]
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"{path}: not found; is {run_dir} a `w2vdist train` run directory?")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if "words_per_s" in r]
    if not records:
        raise UsageError(f"{path}: no speed records")
    previous, seconds, pairs, sync_seconds, loader_seconds = 0, 0.0, 0.0, 0.0, 0.0
    handover_seconds: float | None = 0.0  # None for a run from before handover_share
    for r in records:
        if r["step"] <= previous:
            raise UsageError(f"{path}: steps do not increase (a resumed run); measure a fresh run")
        interval = (r["step"] - previous) * words_per_step / r["words_per_s"]
        seconds += interval
        pairs += r["pairs_per_s"] * interval
        sync_seconds += r["sync_time_share"] * interval
        loader_seconds += r["loader_wait_share"] * interval
        if handover_seconds is not None and "handover_share" in r:
            handover_seconds += r["handover_share"] * interval
        else:
            handover_seconds = None
        previous = r["step"]
    last = records[-1]
    return {
        "world_size": run["world_size"],
        "steps": last["step"],
        "words": last["step"] * words_per_step,
        "loop_seconds": seconds,
        "words_per_s": last["step"] * words_per_step / seconds,
        "pairs_per_s": pairs / seconds,
        "sync_time_share": sync_seconds / seconds,
        "sync_bytes_per_step": last["sync_bytes_per_step"],
        "loader_wait_share": loader_seconds / seconds,
        "handover_share": None if handover_seconds is None else handover_seconds / seconds,
        "final_loss": last["loss"],
        "peak_memory_gb": max(r["memory_gb"] for r in records),
    }
