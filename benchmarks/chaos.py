"""Kill and corrupt a 2-rank training run at random points; count what survives.

    python benchmarks/chaos.py --trials 10 [--seed 0] [--work DIR] [--json OUT] [--background]

Builds a small planted corpus (`w2vdist synth`, `w2vdist prepare`), trains it once without
interruption on 2 torchrun ranks (gloo, torch backend, `exact` sync: deterministic), then, for
each trial, trains the same run again while hitting it at a random moment with one of:

- `sigkill`: SIGKILL to torchrun and every rank (a node lost, an OOM kill);
- `sigterm`: SIGTERM to the group (preemption: checkpoint and exit 75);
- `corrupt`: SIGKILL, then one byte of the newest checkpoint's tables flipped (a torn disk);
- `stale`: SIGKILL, then a half-written temporary checkpoint folder left behind.

After each hit the same command is launched again until it exits 0 (at most `--attempts`).
Reported per trial and in total: whether the run finished, how many launches it took, how
many complete checkpoints the hit made unusable (beyond the one corrupted on purpose), and
whether the final
tables equal the uninterrupted run's (max absolute difference). `--background` writes the
periodic checkpoints in the background (`checkpoint.background`, as on GPUs), so that hits
also land while a checkpoint is being written beside training.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from w2vdist.training import checkpoint

TRAIN = ["--model.dim", "32", "--optim.batch_words", "500", "--train.backend", "torch",
         "--sync.strategy", "exact", "--train.threads", "1", "--data.loader_workers", "1",
         "--train.epochs", "3", "--checkpoint.every_steps", "20", "--checkpoint.every_minutes",
         "0", "--checkpoint.keep", "3", "--wandb.mode", "disabled"]
ACTIONS = ("sigkill", "sigterm", "corrupt", "stale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attempts", type=int, default=5, help="launches per trial at most")
    parser.add_argument("--work", type=Path, default=Path("chaos-work"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--background", action="store_true",
                        help="write the periodic checkpoints in the background")
    args = parser.parse_args()
    if args.background:
        TRAIN.append("--checkpoint.background")
    rng = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    shards = corpus(args.work)
    reference = args.work / "reference"
    start = time.monotonic()
    assert launch(shards, reference).wait() == 0, "the uninterrupted run failed"
    seconds = time.monotonic() - start
    expected = checkpoint.load_tables(reference)[1:]
    trials = [trial(shards, args.work / f"trial-{i}", rng.choice(ACTIONS),
                    rng.uniform(0.2, 0.9) * seconds, expected, args.attempts)
              for i in range(args.trials)]
    report = {"uninterrupted_seconds": seconds, "trials": trials, "summary": summary(trials)}
    print(json.dumps(report["summary"], indent=2))
    for t in trials:
        print(f"{t['action']:>8} at {t['hit_after_s']:5.1f} s: finished {t['finished']}, "
              f"{t['launches']} launches, {t['checkpoints_lost']} checkpoints lost, "
              f"max |difference| {t['max_abs_difference']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def corpus(work: Path) -> Path:
    shards = work / "shards"
    if not shards.exists():
        w2vdist("synth", str(work / "synth"), "--sentences", "20000", "--overwrite")
        w2vdist("prepare", str(work / "synth" / "corpus.txt"), "-o", str(shards),
                "--shard-tokens", "40000", "--overwrite")
    return shards


def w2vdist(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "w2vdist", *args], check=True, capture_output=True)


def launch(shards: Path, run: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "--signals-to-handle=SIGTERM,SIGINT,SIGUSR1", "-m", "w2vdist", "train",
           "--data.shards", str(shards), "--train.run_dir", str(run), *TRAIN]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def trial(shards: Path, run: Path, action: str, after: float,
          expected: tuple[torch.Tensor, ...], attempts: int) -> dict:
    proc = launch(shards, run)
    time.sleep(after)
    if action == "sigterm":
        os.killpg(proc.pid, signal.SIGTERM)  # torchrun forwards it to the ranks
    else:
        kill_everything(run)
    proc.wait()
    complete = checkpoint.complete_steps(run)
    if action == "corrupt" and complete:
        tables = complete[0] / "tables.pt"
        data = bytearray(tables.read_bytes())
        data[len(data) // 2] ^= 0xFF
        tables.write_bytes(bytes(data))
    if action == "stale" and complete:
        stale = complete[0].parent / f".step-999999999.tmp-{2**22 - 1}-dead"
        stale.mkdir()
        (stale / "tables.pt").write_bytes(b"half")
    # Complete checkpoints the hit made unusable, beyond the one corrupted on purpose.
    injected = int(action == "corrupt" and bool(complete))
    lost = sum(1 for p in complete if not _loads(p)) - injected
    launches, code = 1, None
    while launches < attempts and code != 0:
        code = launch(shards, run).wait()
        launches += 1
    result = {"action": action, "hit_after_s": round(after, 1), "finished": code == 0,
              "launches": launches, "checkpoints_lost": lost, "max_abs_difference": None}
    if code == 0:
        got = checkpoint.load_tables(run)[1:]
        result["max_abs_difference"] = max(float((a - b).abs().max()) for a, b in zip(got, expected))
    return result


def kill_everything(run: Path) -> None:
    """SIGKILL torchrun and every rank and loader worker of the run, and wait until none is
    left: torchrun starts its ranks in sessions of their own, so killing its process group
    alone would leave them training (a lost node takes them all)."""
    for _ in range(100):
        found = subprocess.run(["pkill", "-KILL", "-f", "--", f"--train.run_dir {run} "],
                               capture_output=True)
        if found.returncode != 0:  # nothing left to kill
            return
        time.sleep(0.1)
    raise RuntimeError(f"processes of {run} survive SIGKILL")


def _loads(path: Path) -> bool:
    try:
        checkpoint.load(path)
    except Exception:  # noqa: BLE001 - any failure counts as a lost checkpoint
        return False
    return True


def summary(trials: list[dict]) -> dict:
    diffs = [t["max_abs_difference"] for t in trials if t["max_abs_difference"] is not None]
    return {
        "trials": len(trials),
        "finished": sum(t["finished"] for t in trials),
        "checkpoints_lost": sum(t["checkpoints_lost"] for t in trials),
        "equal_to_uninterrupted_within_1e-5": sum(d <= 1e-5 for d in diffs),
        "max_abs_difference": max(diffs, default=None),
    }


if __name__ == "__main__":
    main()
