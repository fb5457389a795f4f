"""Rank-0 checkpoints as step folders that count only when complete.

Layout: `RUN_DIR/checkpoints/step-000001234/` holding `tables.pt` (both embedding tables),
`state.pt` (step, words, data positions, every rank's RNG state, W&B run id), `meta.json`
(human-readable summary and compatibility keys) and, last, `COMPLETE` (sizes and SHA-256 of
the other files). A folder is written under a temporary name, fsynced, renamed, then marked
complete; readers ignore folders without the marker and fall back past a corrupt one, so a
crash at any moment leaves either the previous checkpoint or the new one, never a half one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from w2vdist.errors import UsageError
from w2vdist.corpus.vocab import VOCAB_FILE, Vocab

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
_FILES = ("tables.pt", "state.pt", "meta.json")

log = logging.getLogger("w2vdist")


@dataclass
class Checkpoint:
    path: Path
    tables: dict[str, torch.Tensor]
    state: dict[str, Any]
    meta: dict[str, Any]


def step_name(step: int) -> str:
    return f"step-{step:09d}"


def save(
    run_dir: Path,
    step: int,
    tables: dict[str, torch.Tensor],
    state: dict[str, Any],
    meta: dict[str, Any],
    keep: int,
) -> Path:
    """Write one complete step folder atomically and prune to the newest `keep`."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = root / f".tmp-{step_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save({k: v.detach().cpu().contiguous() for k, v in tables.items()}, tmp / "tables.pt")
    torch.save(state, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    digests = {name: _digest(tmp / name) for name in _FILES}
    for name in _FILES:
        _fsync(tmp / name)
    if final.exists():  # an incomplete folder from a crash at this very step
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    marker = final / COMPLETE
    marker.write_text(json.dumps(digests, indent=2) + "\n")
    _fsync(marker)
    _fsync_dir(final)
    _prune(root, keep)
    return final


def complete_steps(run_dir: Path) -> list[Path]:
    """Complete step folders, newest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def load(path: Path, verify: bool = True) -> Checkpoint:
    """Load one step folder, checking it against its COMPLETE marker."""
    path = Path(path)
    marker = path / COMPLETE
    if not marker.is_file():
        raise UsageError(f"{path}: not a complete checkpoint (no {COMPLETE} marker)")
    try:
        digests = json.loads(marker.read_text())
        if verify:
            for name, expected in digests.items():
                got = _digest(path / name)
                if got != expected:
                    raise ValueError(f"{name} does not match its recorded size/checksum")
        tables = torch.load(path / "tables.pt", map_location="cpu", weights_only=True)
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError, RuntimeError, EOFError, KeyError) as exc:
        raise UsageError(f"{path}: corrupt checkpoint: {exc}") from None
    return Checkpoint(path, tables, state, meta)


def load_latest(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint that loads; corrupt ones are reported and skipped."""
    for path in complete_steps(run_dir):
        try:
            return load(path)
        except UsageError as exc:
            log.warning("%s; trying the previous checkpoint", exc)
    return None


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
    ckpt = load(resolve(path), verify=False)
    vocab = Vocab.load(ckpt.path.parent.parent / VOCAB_FILE)
    if vocab.hash != ckpt.meta.get("vocab_hash"):
        raise UsageError(f"{ckpt.path}: vocabulary in {vocab_path(ckpt.path)} does not match")
    return vocab, ckpt.tables["input"], ckpt.tables["output"]


def vocab_path(step_dir: Path) -> Path:
    return Path(step_dir).parent.parent / VOCAB_FILE


def _prune(root: Path, keep: int) -> None:
    steps = sorted((p for p in root.glob("step-*") if (p / COMPLETE).is_file()), reverse=True)
    for old in steps[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):
        if stale.name.endswith(f"-{os.getpid()}"):
            continue
        shutil.rmtree(stale, ignore_errors=True)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return f"{path.stat().st_size}:{h.hexdigest()}"


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
