"""w2vdist against gensim on one corpus, same settings, same session, same scorer.

    python benchmarks/compare_gensim.py CORPUS --analogies questions-words.txt \
        --similarity wordsim353.tsv [--epochs 5 --dim 100 --window 5 --negative 5 \
        --sample 1e-4 --min-count 5 --workers 2 --backends cpu-kernel,torch --seed 1 --json OUT]

In order: `w2vdist prepare` (timed), gensim's Word2Vec(corpus_file=CORPUS, sg=1, hs=0) with
`workers` threads (vocabulary scan and training timed apart), then `w2vdist train` once per
backend with `workers` threads, all on CPU. Both read the corpus the same way: prepare splits
on whitespace and keeps case (`--tokenizer whitespace --no-lowercase`), as gensim's
corpus_file does, so vocabularies and raw word counts agree (the script says if they do not).

words/s = raw corpus words (every word read, before min_count and subsampling: gensim's
corpus_total_words, the manifest's stats.raw_tokens) x epochs / seconds. For gensim the
seconds are those of `train()`. For w2vdist they are the training loop's, summed from the
run's metrics.jsonl (`benchmarks/run_figures.py`), and also the whole `w2vdist train` command's
(start-up, kernel load and final checkpoint included). gensim's vectors are saved in word2vec
binary format, w2vdist's exported with `w2vdist export`, and both are scored by
`w2vdist eval --eval.restrict-vocab 30000`. The machine's load average is recorded with each phase:
figures from a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gensim
import torch
from gensim.models import Word2Vec

import sgns_settings  # beside this script
from run_figures import run_figures  # beside this script
from w2vdist.training.bench import environment
from w2vdist.corpus.shards import Manifest

RESTRICT_VOCAB = 30_000


def w2vdist(args: list[str], log: Path) -> float:
    """Run `python -m w2vdist ARGS`, its output to `log`; seconds taken; exit on failure."""
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "w2vdist", *args], stdout=out, stderr=out)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-20:]
        sys.exit(f"w2vdist {args[0]} failed ({done.returncode}); {log}:\n" + "\n".join(tail))
    return seconds


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    shards = work / "shards"
    seconds = w2vdist(
        ["prepare", args.corpus, "-o", str(shards), "--min-count", str(args.min_count),
         "--workers", str(args.workers), "--tokenizer", "whitespace", "--no-lowercase"],
        work / "prepare.log",
    )  # fmt: skip
    manifest = Manifest.load(shards)
    return {
        "shards": str(shards),
        "seconds": seconds,
        "raw_words": manifest.stats["raw_tokens"],
        "kept_words": manifest.total_tokens,
        "vocab_size": manifest.vocab_size,
        "load_average": os.getloadavg()[0],
    }


def train_gensim(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model = Word2Vec(
        sg=1, hs=0, vector_size=args.dim, window=args.window, negative=args.negative,
        sample=args.sample, min_count=args.min_count, alpha=args.alpha,
        min_alpha=args.alpha * args.min_alpha_ratio, workers=args.workers, seed=args.seed,
    )  # fmt: skip
    start = time.perf_counter()
    model.build_vocab(corpus_file=args.corpus)
    vocab_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.train(
        corpus_file=args.corpus, total_words=model.corpus_total_words, epochs=args.epochs
    )
    seconds = time.perf_counter() - start
    vectors = work / "gensim.bin"
    model.wv.save_word2vec_format(str(vectors), binary=True)
    raw = model.corpus_total_words
    return {
        "name": f"gensim {gensim.__version__}",
        "vectors": str(vectors),
        "raw_words": raw,
        "vocab_size": len(model.wv),
        "vocab_seconds": vocab_seconds,
        "train_seconds": seconds,
        "words_per_s": raw * args.epochs / seconds,
        "load_average": os.getloadavg()[0],
    }


def train_w2vdist(
    args: argparse.Namespace, work: Path, backend: str, prepared: dict[str, Any]
) -> dict[str, Any]:
    run = work / f"run-{backend}"
    flags = {
        "data.shards": prepared["shards"], "train.run_dir": str(run),
        "train.epochs": args.epochs, "train.backend": backend, "train.device": "cpu",
        "train.threads": args.workers, "model.dim": args.dim, "model.window": args.window,
        "model.negative": args.negative, "model.sample": args.sample,
        "optim.alpha": args.alpha, "optim.min_alpha_ratio": args.min_alpha_ratio,
        "checkpoint.every_minutes": 0, "wandb.mode": "disabled", "train.seed": args.seed,
    }  # fmt: skip
    command = ["train", "--resume", "never"]
    for key, value in flags.items():
        command += [f"--{key}", str(value)]
    wall = w2vdist(command + shlex.split(args.train_flags), work / f"train-{backend}.log")
    vectors = work / f"w2vdist-{backend}.bin"
    w2vdist(["export", str(run), "-o", str(vectors), "--format", "binary"], work / "export.log")
    loop = run_figures(run)
    words = prepared["raw_words"] * args.epochs
    return {
        "name": f"w2vdist {backend}",
        "vectors": str(vectors),
        "raw_words": prepared["raw_words"],
        "vocab_size": prepared["vocab_size"],
        "train_seconds": loop["loop_seconds"],
        "wall_seconds": wall,
        "words_per_s": words / loop["loop_seconds"],
        "wall_words_per_s": words / wall,
        "final_loss": loop["final_loss"],
        "load_average": os.getloadavg()[0],
    }


def score(args: argparse.Namespace, system: dict[str, Any], work: Path) -> dict[str, Any]:
    """`w2vdist eval` on the system's vectors: analogy accuracies (and how many questions were
    in the vocabulary) and Spearman, or {} without eval files."""
    if not (args.analogies or args.similarity):
        return {}
    out = work / f"eval-{system['name'].replace(' ', '-')}.json"
    command = ["eval", system["vectors"], "--eval.restrict-vocab", str(RESTRICT_VOCAB)]
    command += ["--json", str(out)]
    if args.analogies:
        command += ["--eval.analogies", args.analogies]
    if args.similarity:
        command += ["--eval.similarity", args.similarity]
    w2vdist(command, out.with_suffix(".log"))
    report = json.loads(out.read_text())
    scores = {}
    if "analogies" in report:
        keys = ("total", "semantic", "syntactic", "coverage", "evaluated")
        scores.update({k: report["analogies"][k] for k in keys})
    if "similarity" in report:
        scores["wordsim_spearman"] = report["similarity"]["spearman"]
    return scores


COLUMNS = [  # header, width, format, value of a system's result
    ("words/s", 11, ",.0f", lambda s: s["words_per_s"]),
    ("vs gensim", 10, ".2f", lambda s: s["vs_gensim"]),
    ("wall w/s", 11, ",.0f", lambda s: s.get("wall_words_per_s")),
    ("analogy %", 10, ".2f", lambda s: _percent(s.get("total"))),
    ("semantic %", 11, ".2f", lambda s: _percent(s.get("semantic"))),
    ("syntactic %", 12, ".2f", lambda s: _percent(s.get("syntactic"))),
    ("wordsim rho", 12, ".4f", lambda s: s.get("wordsim_spearman")),
    ("load", 6, ".1f", lambda s: s["load_average"]),
]


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def table(prepared: dict[str, Any], systems: list[dict[str, Any]]) -> str:
    head = f"{'system':<20}" + "".join(f"{name:>{width}}" for name, width, _, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for s in systems:
        cells = []
        for _, width, fmt, value in COLUMNS:
            v = value(s)
            cells.append(f"{'-' if v is None else format(v, fmt):>{width}}")
        lines.append(f"{s['name']:<20}" + "".join(cells))
    lines.append(
        f"prepare: {prepared['seconds']:.1f} s for {prepared['raw_words']:,} raw words. words/s:"
        " raw words x epochs / training seconds (w2vdist: its loop); wall w/s: whole command;"
        " load: 1-minute load average after the run"
    )
    return "\n".join(lines)


def check_same_corpus(prepared: dict[str, Any], gensim_run: dict[str, Any]) -> list[str]:
    """Say so if gensim and prepare read different corpora (the speed ratio would be off)."""
    notes = []
    for key in ("raw_words", "vocab_size"):
        if prepared[key] != gensim_run[key]:
            notes.append(f"{key}: prepare {prepared[key]:,}, gensim {gensim_run[key]:,}")
    return notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sgns_settings.add_arguments(p, epochs=5)
    p.add_argument("--min-alpha-ratio", type=float, default=1e-4, help="final alpha / alpha")
    p.add_argument("--workers", type=int, default=2, help="threads for gensim and w2vdist")
    p.add_argument("--seed", type=int, default=1, help="gensim's seed and w2vdist's train.seed")
    p.add_argument("--backends", default="cpu-kernel,torch", help="w2vdist train.backend list")
    p.add_argument("--train-flags", default="", help="more `w2vdist train` flags, one string")
    p.add_argument("--work", metavar="DIR", help="keep shards, runs and vectors here")
    p.add_argument("--json", metavar="OUT", help="write settings and results here")
    args = p.parse_args()
    for name in (args.corpus, args.analogies, args.similarity):
        if name and not Path(name).is_file():
            sys.exit(f"{name}: file not found")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    torch.set_num_threads(args.workers)

    work = Path(args.work or tempfile.mkdtemp(prefix="compare-gensim-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cpus)")
        prepared = prepare(args, work)
        print(f"prepared in {prepared['seconds']:.1f} s")
        systems = [train_gensim(args, work)]
        print(f"{systems[0]['name']}: {systems[0]['train_seconds']:.1f} s")
        for backend in [b for b in args.backends.split(",") if b]:
            systems.append(train_w2vdist(args, work, backend, prepared))
            print(f"{systems[-1]['name']}: {systems[-1]['train_seconds']:.1f} s")
        for system in systems:
            system["vs_gensim"] = system["words_per_s"] / systems[0]["words_per_s"]
            system.update(score(args, system, work))
        print()
        print(table(prepared, systems))
        notes = check_same_corpus(prepared, systems[0])
        for note in notes:
            print(f"warning: corpora differ: {note}")
        if args.json:
            result = {
                "settings": vars(args),
                "environment": environment(torch.device("cpu")),
                "gensim_version": gensim.__version__,
                "prepare": prepared,
                "systems": systems,
                "corpus_differences": notes,
            }
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
