"""Measure training (or loader) throughput and peak memory with the trainer's own parts.

    w2vdist bench --data.shards DIR [--model.dim 300 --train.backend torch ...] [--seconds 20]
    w2vdist bench --synthetic-vocab 100000 [--synthetic-tokens 4000000] [--steps 500]
    w2vdist bench --data.shards DIR --loader-only

Each step is one call of the trainer's step (built by `session.Session.build`, exactly as
`w2vdist train` builds it) on `optim.batch_words` raw
corpus words: words read before subsampling, as word2vec.c and gensim count them, so words/s
here compares with theirs. Batches come from the trainer's loader (`data.TokenBatches`, moved
with `.to(device, non_blocking=True)`) on prepared shards, or from a Zipfian stream drawn up
front in memory (no files), which measures the step alone. `--loader-only` drives the loader
and the copy to the device without training, to show how far the loader is ahead of the step.

Warm-up steps (kernel build, loader workers starting, CUDA allocations) are not timed; then
`--steps` steps or `--seconds` seconds are. The learning rate stays at `optim.alpha`: speed
does not depend on it. Peak host memory is this process's ru_maxrss and the host CPU share
its CPU time over the wall time (loader workers are separate processes): with
`--loader-only`, the words per CPU second are the rate the trainer's side of the loader would
allow with workers that never kept it waiting. Peak device memory is
torch.cuda.max_memory_allocated on CUDA.

One process only: ranks are measured with torchrun and `w2vdist train`, whose metrics.jsonl
`benchmarks/run_figures.py` summarises (see benchmarks/README.md).
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vdist import settings
from w2vdist.errors import UsageError
from w2vdist.files import write_text
from w2vdist.settings import to_dict
from w2vdist.training import distributed
from w2vdist.training.config import BenchCommand, BenchConfig, Config
from w2vdist.training.session import Session
from w2vdist.training.spec import Corpus, resolve
from w2vdist.vectors.word2vec import check_writable

Batch = tuple[torch.Tensor, torch.Tensor]
DEFAULT_SECONDS = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, BenchCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(BenchCommand, args)
    if cmd.bench.json:
        check_writable(Path(cmd.bench.json))
    report = bench(cmd.config, cmd.bench)
    print(format_report(report))
    if cmd.bench.json:
        write_text(cmd.bench.json, json.dumps(report, indent=2) + "\n")
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
        sentence = np.cumsum(rng.random((n, batch_words)) < 1.0 / self.sentence, axis=1,
                             dtype=np.int64)
        sentence -= sentence[:, :1]
        out = []
        for t, s in zip(tokens.astype(np.int32), sentence.astype(np.int32)):
            t, s = torch.from_numpy(t), torch.from_numpy(s)
            out.append((t.pin_memory(), s.pin_memory()) if pin_memory else (t, s))
        return out


def _synthetic(cfg: Config, options: BenchConfig) -> Synthetic | None:
    """The synthetic stream asked for, if any; refuses contradictory options."""
    if options.synthetic_vocab is not None:
        if cfg.data.shards:
            raise UsageError("bench: give --data.shards DIR or --synthetic-vocab V, not both")
        if options.loader_only:
            raise UsageError("bench: --loader-only measures the shard loader; give "
                             "--data.shards DIR")
        return Synthetic(options.synthetic_vocab, options.synthetic_tokens,
                         options.synthetic_sentence, options.synthetic_zipf)
    if not cfg.data.shards:
        raise UsageError("bench: give --data.shards DIR (a `w2vdist prepare` output) or "
                         "--synthetic-vocab V")
    return None


def bench(cfg: Config, options: BenchConfig) -> dict[str, Any]:
    """Run the measurement; the report holds the settings, the machine and the figures."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("bench: runs in one process; measure ranks with torchrun and "
                         "`w2vdist train` (see benchmarks/README.md)")
    synthetic = _synthetic(cfg, options)
    # Nothing is logged to W&B: its mode is not resolved (which imports wandb) but off.
    cfg = replace(cfg, wandb=replace(cfg.wandb, mode="disabled"))
    world = distributed.init(cfg.train.device, cfg.sync.timeout_seconds)
    if synthetic:
        corpus = Corpus(synthetic.counts(), "synthetic", synthetic.tokens)
        described: dict[str, Any] = {"synthetic": asdict(synthetic)}
    else:
        corpus = Corpus.load(cfg.data)
        manifest, _ = corpus.prepared()
        described = {
            "shards": corpus.source,
            "vocab_size": len(corpus.counts),
            "total_tokens": corpus.tokens,
            "shard_count": len(manifest.shards),
        }
    session = Session.build(resolve(cfg, world, corpus), world, corpus)
    cfg = session.spec.config
    device = world.device
    waited: Callable[[], float] = lambda: 0.0  # a synthetic stream's batches wait for nothing
    if synthetic:
        source: Iterator[Batch] = itertools.cycle(
            synthetic.batches(cfg.optim.batch_words, cfg.train.seed, device.type == "cuda")
        )
    else:
        loader = session.batches()
        source, waited = iter(loader), lambda: loader.wait_seconds
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    work = _loader_work(source, device) if options.loader_only else _train_work(session, source)
    figures = _timed(work, waited, options, cfg.optim.batch_words, device)
    what = {
        "mode": "loader-only" if options.loader_only else "train",
        "device": str(device),
        "threads": cfg.train.threads,
        "warmup_steps": options.warmup,
        "source": described,
        **({} if options.loader_only else {"backend": cfg.train.backend}),
        "config": to_dict(cfg),
    }
    return {"settings": what, **environment(device), "figures": figures}


# One step: (loss sum, pairs, hand-over seconds); loss and pairs may stay on the device.
Work = Callable[[], tuple[float | torch.Tensor, int | torch.Tensor, float]]


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


def _train_work(session: Session, source: Iterator[Batch]) -> Work:
    """One training step as the trainer takes it, at a constant learning rate (speed does not
    depend on it)."""
    lr = session.spec.config.optim.alpha

    def work() -> tuple[torch.Tensor, torch.Tensor, float]:
        (tokens, sentence), seconds = _next_on_device(source, session.world.device)
        loss, pairs = session.step(tokens, sentence, lr, lr)
        return loss, pairs, seconds

    return work


def _timed(
    work: Work, waited: Callable[[], float], options: BenchConfig, batch_words: int,
    device: torch.device,
) -> dict[str, Any]:
    """Untimed warm-up steps, then `steps` steps or `seconds` seconds (10 if neither);
    `waited()`, the loader's time so far waiting for its workers' chunks."""
    seconds_limit = options.seconds or (None if options.steps else DEFAULT_SECONDS)
    warm_start = time.perf_counter()
    for _ in range(options.warmup):
        work()
    _synchronize(device)
    start, cpu_start, wait_start = time.perf_counter(), time.process_time(), waited()
    warmup_seconds = start - warm_start
    steps, handover_seconds = 0, 0.0
    pairs: int | torch.Tensor = 0
    loss: float | torch.Tensor = 0.0
    while True:
        step_loss, step_pairs, step_handover = work()
        steps += 1
        pairs += step_pairs
        loss += step_loss
        handover_seconds += step_handover
        if options.steps and steps >= options.steps:
            break
        if seconds_limit and time.perf_counter() - start >= seconds_limit:
            break
    _synchronize(device)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    words = steps * batch_words
    loss, pairs = float(loss), int(pairs)
    figures: dict[str, Any] = {
        "steps": steps,
        "seconds": seconds,
        "words": words,
        "words_per_s": words / seconds,
        "warmup_seconds": warmup_seconds,
        # This process's CPU time over the wall time, all its threads (loader workers, being
        # processes of their own, not counted), and the words a second of it handled: with
        # --loader-only, the rate the trainer's side allows. (CUDA's waits spin by default:
        # in a GPU step they do not tell work from waiting.)
        "host_cpu_share": cpu_seconds / seconds,
        "words_per_cpu_s": words / max(cpu_seconds, 1e-9),
        "peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }
    if not options.loader_only:
        wait = waited() - wait_start
        figures.update(
            pairs=pairs,
            pairs_per_s=pairs / seconds,
            loss_per_pair=loss / max(pairs, 1),
            # The host's time handing batches over: waiting for the workers' chunks, and the
            # rest, cutting them into batches and starting their copies (as a run logs them).
            loader_wait_share=wait / seconds,
            handover_share=max(0.0, handover_seconds - wait) / seconds,
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
        ("host CPU", f"{100 * f['host_cpu_share']:.0f}% of the time in this process "
                     f"({f['words_per_cpu_s']:,.0f} words/s per CPU second)"),
    ]
    if "pairs_per_s" in f:
        rows += [
            ("pairs/s", f"{f['pairs_per_s']:,.0f}"),
            ("loss/pair", f"{f['loss_per_pair']:.4f}"),
            ("loader wait", f"{100 * f['loader_wait_share']:.1f}% of the time"),
            ("batch hand-over", f"{100 * f['handover_share']:.1f}% of the time (the trainer's "
                                "own cutting and copying)"),
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
