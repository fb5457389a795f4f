"""Vector quality as training is spread out: real torchrun groups per rank count and strategy,
and one process per global step size, against one process at the defaults, same session.

    python benchmarks/scale_quality.py SHARDS --analogies questions-words.txt \
        --similarity wordsim353.tsv [--ranks 1,4,8] [--strategies local,exact] \
        [--batch-words 4096,65536] [--resize 8:4] [--seeds 1,2] [--work DIR] [--json OUT] \
        [-- TRAIN FLAGS]

Each run is `python -m torch.distributed.run --standalone --nproc-per-node N -m w2vdist train`
with one thread and one loader worker per rank (ranks time-slice a small machine, which changes
their speed but not what they compute), then `w2vdist eval --eval.restrict-vocab 30000`.
- `local` ranks train with the compiled CPU kernel, `exact` ranks with the torch backend, at
  their defaults for the rank count (`optim.batch_words 0`);
- `--batch-words` adds one-process torch runs at those global step sizes: the batch-synchronous
  path `exact` takes on N ranks at N times its per-rank step.
- `--resize A:B` adds runs of each strategy begun on A ranks, stopped at half their planned
  steps and resumed on B (a job requeued on fewer nodes, an elastic restart).
Flags after `--` go to every `w2vdist train` (another setting: `--model.dim 300` ...).
The table gives each run's scores, the sync time share (`local`'s merges, `exact`'s
exchanges), then the mean over seeds and its difference from one process with the same
backend's defaults (ranks 1). Several seeds: differences under a point are noise otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from run_figures import run_figures  # beside this script
from w2vdist.training.bench import environment

RESTRICT_VOCAB = 30_000


def main() -> None:
    args = parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="scale-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    setups = [(s, [n], 0) for s in args.strategies for n in args.ranks]
    setups += [(s, pair, 0) for s in args.strategies for pair in args.resize]
    setups += [("batch", [1], b) for b in args.batch_words]
    runs = []
    for strategy, ranks, batch in setups:
        for seed in args.seeds:
            runs.append(train_and_score(args, work, strategy, ranks, batch, seed))
            print(row(runs[-1]), flush=True)
    print()
    print(summary(runs))
    if args.json:
        report = {"environment": environment(torch.device("cpu")), "train_flags": args.train,
                  "runs": runs}  # fmt: skip
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", help="a `w2vdist prepare` output with >= max(ranks) shards")
    parser.add_argument("--analogies", required=True, metavar="FILE")
    parser.add_argument("--similarity", required=True, metavar="FILE")
    parser.add_argument("--ranks", type=_ints, default=[1, 4, 8], help="default 1,4,8")
    parser.add_argument("--strategies", type=lambda s: s.split(","), default=["local"])
    parser.add_argument("--batch-words", type=_ints, default=[], help="one-process torch runs")
    parser.add_argument("--resize", type=_pairs, default=[], metavar="A:B,...",
                        help="runs begun on A ranks and finished on B")
    parser.add_argument("--seeds", type=_ints, default=[1, 2])
    parser.add_argument("--work", help="keep runs and logs here (default: a temporary dir)")
    parser.add_argument("--json", help="write every figure and the environment here")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.train = argv[cut + 1 :]  # flags for every `w2vdist train`
    unknown = set(args.strategies) - {"local", "exact"}
    if unknown:
        parser.error(f"--strategies: unknown {', '.join(sorted(unknown))} (local, exact)")
    return args


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _pairs(text: str) -> list[list[int]]:
    return [[int(n) for n in pair.split(":")] for pair in text.split(",") if pair]


def train_and_score(
    args: argparse.Namespace, work: Path, strategy: str, ranks: list[int], batch: int, seed: int
) -> dict[str, Any]:
    """One run over `ranks` (one count, or the count it begins on and the one it ends on)."""
    name = f"{strategy}-{'-then-'.join(map(str, ranks))}-{batch or 'default'}-seed{seed}"
    run, log = work / name, work / f"{name}.log"
    flags = ["--data.shards", args.shards, "--train.run_dir", str(run),
             "--train.threads", "1", "--data.loader_workers", "1", "--train.seed", str(seed),
             "--checkpoint.every_minutes", "0", "--wandb", "disabled"]  # fmt: skip
    if strategy == "batch":
        flags += ["--train.backend", "torch", "--optim.batch_words", str(batch)]
    else:
        flags += ["--sync.strategy", strategy]
        flags += ["--train.backend", "torch"] if strategy == "exact" else []
    flags += args.train
    segments = [["--resume", "never"]]
    if len(ranks) == 2:
        half = planned_steps(ranks[0], flags) // 2
        segments = [["--resume", "never", "--train.max_steps", str(half)], ["--resume", "auto"]]
    start = time.perf_counter()
    with open(log, "w") as out:
        for n, segment in zip(ranks, segments):
            done = subprocess.run(
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={n}", "-m", "w2vdist", "train", *flags, *segment],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            if done.returncode:
                break
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"strategy": strategy, "ranks": ranks, "seed": seed,
                              "seconds": seconds, "exit_code": done.returncode}  # fmt: skip
    if done.returncode != 0:
        result["error"] = log.read_text().strip().splitlines()[-1:]
        return result
    config = json.loads((run / "config.json").read_text())
    result["global_batch_words"] = config["run"]["words_per_step"]
    result.update(sync_time_share=run_figures(run)["sync_time_share"], scores=score(args, run))
    return result


def planned_steps(ranks: int, flags: list[str]) -> int:
    """The steps a run of these flags plans on `ranks` ranks (`train --dry-run`)."""
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={ranks}", "-m", "w2vdist", "train", *flags, "--dry-run"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(done.stdout.split("planned: ")[1].split()[0])


def score(args: argparse.Namespace, run: Path) -> dict[str, float]:
    out = run / "scores.json"
    subprocess.run(
        [sys.executable, "-m", "w2vdist", "eval", str(run), "--eval.analogies", args.analogies,
         "--eval.similarity", args.similarity, "--eval.restrict-vocab", str(RESTRICT_VOCAB),
         "--json", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    scores = json.loads(out.read_text())
    return {"analogy": 100 * scores["analogies"]["total"],
            "wordsim": scores["similarity"]["spearman"]}  # fmt: skip


def _label(r: dict[str, Any]) -> str:
    if r["strategy"] == "batch":
        return f"one process, torch, {r.get('global_batch_words', 0):,}-word steps"
    return f"{r['strategy']} x {' then '.join(map(str, r['ranks']))}"


def row(r: dict[str, Any]) -> str:
    if r["exit_code"]:
        return f"{_label(r):<40} seed {r['seed']}: FAILED ({r['exit_code']}) {r.get('error')}"
    s = r["scores"]
    return (f"{_label(r):<40} seed {r['seed']}: analogy {s['analogy']:6.2f}%  WordSim353 "
            f"{s['wordsim']:.3f}  sync {100 * r['sync_time_share']:5.1f}%  "
            f"{r['seconds']:6.0f} s")  # fmt: skip


def summary(runs: list[dict[str, Any]]) -> str:
    """Mean over seeds per setup, and its difference from one process of the same strategy
    (for one-process step sizes: from the smallest step)."""
    groups: dict[tuple[str, tuple[int, ...], int], list[dict[str, Any]]] = {}
    for r in runs:
        if r["exit_code"] == 0:
            key = (r["strategy"], tuple(r["ranks"]), r["global_batch_words"])
            groups.setdefault(key, []).append(r["scores"])
    means = {
        k: (statistics.mean(s["analogy"] for s in v), statistics.mean(s["wordsim"] for s in v),
            len(v))
        for k, v in groups.items()
    }  # fmt: skip
    lines = [f"{'setup':<40}{'seeds':>6}{'analogy':>9}{'WS353':>7}{'vs one process':>20}"]
    for (strategy, ranks, batch), (analogy, wordsim, n) in means.items():
        same = sorted(k for k in means if k[0] == strategy and k[1] == (1,))
        base = means[same[0]] if same and same[0] != (strategy, ranks, batch) else None
        label = _label({"strategy": strategy, "ranks": ranks, "global_batch_words": batch})
        versus = f"{analogy - base[0]:+7.2f} {wordsim - base[1]:+7.3f}" if base else ""
        lines.append(f"{label:<40}{n:>6}{analogy:>8.2f}%{wordsim:>7.3f}{versus:>20}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
