"""How long a checkpoint holds training up: rank 0's save of two V x D tables written in turn,
against a save in the background, which holds training up only for the tables' copy into
host memory, and when its step folder is complete.

    python benchmarks/checkpoint_save.py [--vocab 1000000 --dim 300 --device cpu --dir DIR]

Writes under `--dir` (a temporary folder by default: the disk checkpoints go to is the one
to measure). Prints one line of seconds; `gpu_check.sh` prints it as its CKPT line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from w2vdist.corpus.vocab import VOCAB_FILE, Vocab
from w2vdist.training.checkpoint import Checkpointer, TrainState
from w2vdist.training.config import CheckpointConfig, Config
from w2vdist.training.data import Position
from w2vdist.training.spec import Plan, RunSpec


def measure(vocab: int, dim: int, device: torch.device, directory: Path) -> str:
    """The figures as one line: seconds held up in turn and in the background, and until the
    background save's folder is complete."""
    words = Vocab([f"w{i}" for i in range(vocab)], np.arange(vocab, 0, -1, dtype=np.int64))
    words.save(directory / VOCAB_FILE)
    spec = RunSpec(Config(), 1, words.hash, Plan(1, 1, (1,)))
    generator = torch.Generator(device).manual_seed(0)
    tables = [torch.randn(vocab, dim, device=device, generator=generator) for _ in range(2)]
    state = TrainState(*tables, step=1, rng=[torch.Generator().get_state()], data=[Position()])
    seconds = {}
    for background in (False, True):
        saver = Checkpointer(directory / f"background-{background}", CheckpointConfig())
        _synchronize(device)
        began = time.perf_counter()
        saver.save(state, spec, directory / VOCAB_FILE, background)
        seconds[background] = time.perf_counter() - began
        saver.finished(wait=True)
        seconds[None] = time.perf_counter() - began
    return (f"vocab={vocab} dim={dim} device={device.type} gb={2 * tables[0].nbytes / 1e9:.2f} "
            f"in_turn_s={seconds[False]:.2f} background_held_s={seconds[True]:.2f} "
            f"background_written_s={seconds[None]:.2f} "
            f"held_ratio={seconds[False] / seconds[True]:.1f}")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        print(measure(args.vocab, args.dim, torch.device(args.device), Path(directory)),
              flush=True)


if __name__ == "__main__":
    main()
