"""Measure training (or loader) throughput and peak memory with the trainer's own parts.

    w2vdist bench --data.shards DIR [--model.dim 300 --train.backend torch ...] [--seconds 20]
    w2vdist bench --synthetic-vocab 100000 [--synthetic-tokens 4000000] [--steps 500]
    w2vdist bench --data.shards DIR --loader-only

Each step is one call of the trainer's step (`steps.build_step`) on `optim.batch_words` raw
corpus words: words read before subsampling, as word2vec.c and gensim count them, so words/s
here compares with theirs. Batches come from the trainer's loader (`data.TokenBatches`, moved
with `.to(device, non_blocking=True)`) on prepared shards, or from a Zipfian stream drawn up
front in memory (no files), which measures the step alone. `--loader-only` drives the loader
and the copy to the device without training, to show how far the loader is ahead of the step.

Warm-up steps (kernel build, loader workers starting, CUDA allocations) are not timed; then
`--steps` steps or `--seconds` seconds are. The learning rate stays at `optim.alpha`: speed
does not depend on it. Peak host memory is this process's ru_maxrss (loader workers are
separate processes); peak device memory is torch.cuda.max_memory_allocated on CUDA.

One process only: ranks are measured with torchrun and `w2vdist train`, whose metrics.jsonl
`run_figures` summarises (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vdist import config
from w2vdist.train import checkpoint
from w2vdist.train import distributed
from w2vdist.config import Config
from w2vdist.train.data import TokenBatches
from w2vdist.errors import UsageError
from w2vdist.train.sgns import Embeddings
from w2vdist.corpus.shards import Manifest
from w2vdist.train.backends import build_step, choose_backend, with_batch_words
from w2vdist.train.sync import build_sync
from w2vdist.vectors.word2vec import atomic_output, check_writable
from w2vdist.corpus.vocab import VOCAB_FILE, Vocab

Batch = tuple[torch.Tensor, torch.Tensor]
DEFAULT_SECONDS = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML, TOML or JSON file of config sections")
    parser.add_argument("--steps", type=int, metavar="N", help="time N steps")
    parser.add_argument(
        "--seconds", type=float, metavar="S", help=f"time S seconds (default {DEFAULT_SECONDS:g})"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, metavar="N", help="untimed steps first (default 5)"
    )
    parser.add_argument(
        "--loader-only", action="store_true", help="measure only shards -> device batches"
    )
    parser.add_argument(
        "--synthetic-vocab", type=int, metavar="V",
        help="train on a Zipfian stream over V words instead of --data.shards",
    )
    parser.add_argument(
        "--synthetic-tokens", type=int, default=4_000_000, metavar="N",
        help="tokens drawn up front and cycled (default 4,000,000; at least one batch)",
    )
    parser.add_argument(
        "--synthetic-sentence", type=float, default=20.0, metavar="L",
        help="mean sentence length, geometric (default 20)",
    )
    parser.add_argument(
        "--synthetic-zipf", type=float, default=1.0, metavar="S",
        help="Zipf exponent: word of rank r drawn with probability ~ r^-S (default 1.0)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write settings and figures here")
    config.add_arguments(parser)


def command(args: argparse.Namespace) -> int:
    cfg = config.load(args.config, config.overrides_from_args(args))
    options = _options(args, cfg)
    if args.json:
        check_writable(Path(args.json))
    report = bench(cfg, options)
    print(format_report(report))
    if args.json:
        with atomic_output(Path(args.json)) as f:
            f.write((json.dumps(report, indent=2) + "\n").encode())
    return 0


@dataclass(frozen=True)
class Synthetic:
    """A Zipfian token stream: `tokens` ids over `vocab` words, sentences of mean `sentence`."""

    vocab: int
    tokens: int
    sentence: float
    zipf: float

    def probabilities(self) -> np.ndarray:
        p = np.arange(1, self.vocab + 1, dtype=np.float64) ** -self.zipf
        return p / p.sum()

    def counts(self) -> np.ndarray:
        """Expected counts in a billion words: what subsampling and negatives are built from."""
        return np.maximum(1, np.rint(self.probabilities() * 1e9)).astype(np.int64)

    def batches(self, batch_words: int, seed: int, pin_memory: bool) -> list[Batch]:
        """Whole batches in `TokenBatches`' form: int32 tokens, int32 sentence ids from 0.

        Batch edges cut sentences, as the loader's do.
        """
        rng = np.random.default_rng(seed)
        n = max(1, self.tokens // batch_words)
        tokens = rng.choice(self.vocab, size=(n, batch_words), p=self.probabilities())
        sentence = np.cumsum(rng.random((n, batch_words)) < 1.0 / self.sentence, axis=1)
        sentence -= sentence[:, :1]
        out = []
        for t, s in zip(tokens.astype(np.int32), sentence.astype(np.int32)):
            t, s = torch.from_numpy(t), torch.from_numpy(s)
            out.append((t.pin_memory(), s.pin_memory()) if pin_memory else (t, s))
        return out


@dataclass(frozen=True)
class Options:
    steps: int | None
    seconds: float | None
    warmup: int
    loader_only: bool
    synthetic: Synthetic | None


def _options(args: argparse.Namespace, cfg: Config) -> Options:
    synthetic = None
    if args.synthetic_vocab is not None:
        if cfg.data.shards:
            raise UsageError("bench: give --data.shards DIR or --synthetic-vocab V, not both")
        _at_least("--synthetic-vocab", args.synthetic_vocab, 1)
        _at_least("--synthetic-tokens", args.synthetic_tokens, 1)
        _at_least("--synthetic-sentence", args.synthetic_sentence, 1)
        _at_least("--synthetic-zipf", args.synthetic_zipf, 0)
        synthetic = Synthetic(
            args.synthetic_vocab, args.synthetic_tokens, args.synthetic_sentence,
            args.synthetic_zipf,
        )
    elif not cfg.data.shards:
        raise UsageError("bench: give --data.shards DIR (a `w2vdist prepare` output) or "
                         "--synthetic-vocab V")
    if args.loader_only and synthetic:
        raise UsageError("bench: --loader-only measures the shard loader; give --data.shards DIR")
    if args.steps is not None and args.seconds is not None:
        raise UsageError("bench: give --steps or --seconds, not both")
    if args.steps is not None:
        _at_least("--steps", args.steps, 1)
    if args.seconds is not None and not args.seconds > 0:
        raise UsageError(f"bench: --seconds must be > 0 (got {args.seconds})")
    _at_least("--warmup", args.warmup, 0)
    seconds = DEFAULT_SECONDS if args.steps is None and args.seconds is None else args.seconds
    return Options(args.steps, seconds, args.warmup, args.loader_only, synthetic)


def _at_least(flag: str, value: float, low: float) -> None:
    if not value >= low:
        raise UsageError(f"bench: {flag} must be >= {low} (got {value})")


def bench(cfg: Config, options: Options) -> dict[str, Any]:
    """Run the measurement; the report holds the settings, the machine and the figures."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("bench: runs in one process; measure ranks with torchrun and "
                         "`w2vdist train` (see benchmarks/README.md)")
    device = distributed.init(cfg.train.device, cfg.sync.timeout_seconds).device
    threads = cfg.train.threads or max(1, torch.get_num_threads())
    torch.set_num_threads(threads)
    backend = None if options.loader_only else choose_backend(cfg, device, 1)
    cfg = with_batch_words(cfg, backend or "torch")
    pin = device.type == "cuda"
    settings: dict[str, Any] = {
        "mode": "loader-only" if options.loader_only else "train",
        "device": str(device),
        "threads": threads,
        "warmup_steps": options.warmup,
    }
    if options.synthetic:
        counts = options.synthetic.counts()
        source: Iterator[Batch] = itertools.cycle(
            options.synthetic.batches(cfg.optim.batch_words, cfg.train.seed, pin)
        )
        settings["source"] = {"synthetic": asdict(options.synthetic)}
    else:
        counts, source, settings["source"] = _shards(cfg, pin)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if options.loader_only:
        work = _loader_work(source, device)
    else:
        settings["backend"] = backend
        work = _train_work(backend, counts, cfg, device, threads, source)
    figures = _timed(work, options, cfg.optim.batch_words, device)
    settings["config"] = config.to_dict(cfg)
    return {"settings": settings, **environment(device), "figures": figures}


def _shards(cfg: Config, pin: bool) -> tuple[np.ndarray, Iterator[Batch], dict[str, Any]]:
    directory = Path(cfg.data.shards)
    manifest = Manifest.load(directory)
    vocab = Vocab.load(directory / VOCAB_FILE)
    if vocab.hash != manifest.vocab_hash:
        raise UsageError(f"{directory / VOCAB_FILE}: does not match manifest.json's vocab_hash")
    batches = TokenBatches(
        manifest.sources(directory), cfg.optim.batch_words, cfg.train.seed, 0,
        cfg.data.loader_workers, cfg.data.prefetch, pin_memory=pin,
    )
    described = {
        "shards": str(directory),
        "vocab_size": manifest.vocab_size,
        "total_tokens": manifest.total_tokens,
        "shard_count": len(manifest.shards),
    }
    return vocab.counts, iter(batches), described


Work = Callable[[], tuple[float, int, float]]  # one step: (loss sum, pairs, loader seconds)


def _next_on_device(source: Iterator[Batch], device: torch.device) -> tuple[Batch, float]:
    """The trainer's hand-over: next batch, copied without waiting; and the host time it took."""
    start = time.perf_counter()
    tokens, sentence = next(source)
    batch = tokens.to(device, non_blocking=True), sentence.to(device, non_blocking=True)
    return batch, time.perf_counter() - start


def _loader_work(source: Iterator[Batch], device: torch.device) -> Work:
    def work() -> tuple[float, int, float]:
        _, seconds = _next_on_device(source, device)
        return 0.0, 0, seconds

    return work


def _train_work(
    backend: str, counts: np.ndarray, cfg: Config, device: torch.device, threads: int,
    source: Iterator[Batch],
) -> Work:
    init = torch.Generator().manual_seed(cfg.train.seed)
    tables = Embeddings(len(counts), cfg.model.dim, init).to(device)
    generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
    sync = build_sync(cfg.sync, 1, tables)
    step = build_step(backend, tables, counts, cfg, sync, generator, threads)
    lr = cfg.optim.alpha

    def work() -> tuple[float, int, float]:
        (tokens, sentence), seconds = _next_on_device(source, device)
        loss, pairs = step(tokens, sentence, lr, lr)
        return loss, pairs, seconds

    return work


def _timed(work: Work, options: Options, batch_words: int, device: torch.device) -> dict[str, Any]:
    warm_start = time.perf_counter()
    for _ in range(options.warmup):
        work()
    _synchronize(device)
    start = time.perf_counter()
    warmup_seconds = start - warm_start
    steps, pairs, loss, loader_seconds = 0, 0, 0.0, 0.0
    while True:
        step_loss, step_pairs, step_loader = work()
        steps += 1
        pairs += step_pairs
        loss += step_loss
        loader_seconds += step_loader
        if options.steps is not None and steps >= options.steps:
            break
        if options.seconds is not None and time.perf_counter() - start >= options.seconds:
            break
    _synchronize(device)
    seconds = time.perf_counter() - start
    words = steps * batch_words
    figures: dict[str, Any] = {
        "steps": steps,
        "seconds": seconds,
        "words": words,
        "words_per_s": words / seconds,
        "warmup_seconds": warmup_seconds,
        "peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }
    if not options.loader_only:
        figures.update(
            pairs=pairs,
            pairs_per_s=pairs / seconds,
            loss_per_pair=loss / max(pairs, 1),
            loader_wait_share=loader_seconds / seconds,  # host time waiting for batches
        )
    return figures


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Where and when a figure was measured: machine, versions, commit of this checkout."""
    return {
        "device_name": _device_name(device),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        **_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _commit() -> dict[str, Any]:
    """The checkout this package runs from, if it is one: which commit, and whether edited."""
    here = Path(__file__).resolve().parent

    def git(*cmd: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(here), *cmd], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "commit_dirty": bool(dirty) if commit else None}


def format_report(report: dict[str, Any]) -> str:
    """A small table: what ran, then one figure per line."""
    s, f = report["settings"], report["figures"]
    model = s["config"]["model"]
    what = (
        "loader only" if s["mode"] == "loader-only"
        else f"{s['backend']} backend, dim {model['dim']}, window {model['window']}, "
        f"negative {model['negative']}"
    )
    if "synthetic" in s["source"]:
        z = s["source"]["synthetic"]
        source = f"synthetic Zipf({z['zipf']:g}) stream, {z['vocab']:,} words"
    else:
        source = f"{s['source']['shards']} ({s['source']['total_tokens']:,} tokens)"
    batch = s["config"]["optim"]["batch_words"]
    warmup = f"after {s['warmup_steps']} warm-up, {f['warmup_seconds']:.1f} s"
    rows = [
        ("steps", f"{f['steps']:,} ({warmup})"),
        ("seconds", f"{f['seconds']:.2f}"),
        ("words/s", f"{f['words_per_s']:,.0f}"),
    ]
    if "pairs_per_s" in f:
        rows += [
            ("pairs/s", f"{f['pairs_per_s']:,.0f}"),
            ("loss/pair", f"{f['loss_per_pair']:.4f}"),
            ("loader wait", f"{100 * f['loader_wait_share']:.1f}% of the time"),
        ]
    rows += [
        ("peak host memory", f"{f['peak_host_mb']:,.0f} MiB"),
        ("peak device memory",
         "-" if f["peak_device_mb"] is None else f"{f['peak_device_mb']:,.0f} MiB"),
    ]
    head = [
        f"w2vdist bench: {what}, {batch:,} words per step",
        f"  on {s['device']} ({report['device_name']}), {s['threads']} thread(s), torch "
        f"{report['torch_version']}, commit {(report['commit'] or 'unknown')[:12]}",
        f"  source: {source}",
    ]
    return "\n".join(head + [f"  {name:<20} {value}" for name, value in rows])


def run_figures(run_dir: str | Path) -> dict[str, Any]:
    """Throughput of a finished, fresh `w2vdist train` run from its metrics.jsonl.

    Each record covers the steps since the previous one at its `words_per_s`, so the training
    loop's own time (no start-up, no final checkpoint) is the sum of steps x words per step /
    words_per_s; the world size comes from the newest checkpoint's meta.json.
    """
    run_dir = Path(run_dir)
    meta = json.loads((checkpoint.resolve(run_dir) / "meta.json").read_text())
    words_per_step = meta["world_size"] * meta["config"]["optim"]["batch_words"]
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"{path}: not found; is {run_dir} a `w2vdist train` run directory?")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if "words_per_s" in r]
    if not records:
        raise UsageError(f"{path}: no speed records")
    previous, seconds, pairs, sync_seconds = 0, 0.0, 0.0, 0.0
    for r in records:
        if r["step"] <= previous:
            raise UsageError(f"{path}: steps do not increase (a resumed run); measure a fresh run")
        interval = (r["step"] - previous) * words_per_step / r["words_per_s"]
        seconds += interval
        pairs += r["pairs_per_s"] * interval
        sync_seconds += r["sync_time_share"] * interval
        previous = r["step"]
    last = records[-1]
    return {
        "world_size": meta["world_size"],
        "steps": last["step"],
        "words": last["step"] * words_per_step,
        "loop_seconds": seconds,
        "words_per_s": last["step"] * words_per_step / seconds,
        "pairs_per_s": pairs / seconds,
        "sync_time_share": sync_seconds / seconds,
        "sync_bytes_per_step": last["sync_bytes_per_step"],
        "final_loss": last["loss"],
        "peak_memory_gb": max(r["memory_gb"] for r in records),
    }
