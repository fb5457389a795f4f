"""Train SGNS embeddings on prepared shards: one process, or every worker of a torchrun.

    w2vdist train --data.shards DIR --train.run_dir RUN [--config cfg.yaml] [--section.key V]
    torchrun --nproc-per-node 4 -m w2vdist train ...     (same command, N ranks)

Every rank streams its own shards and takes `optim.batch_words` raw tokens per step; all ranks
run the same planned number of steps, so the learning rate, which decays linearly with the
global words processed, follows the same schedule on 1 or N ranks. Rank 0 writes checkpoints,
logs and W&B. SIGUSR1/SIGTERM/SIGINT stop every rank after the same step, rank 0 checkpoints,
and the process exits 75; `--resume auto` (the default) continues from the newest complete
checkpoint of the run directory, bit for bit on one CPU process with the torch backend.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import time
from contextlib import closing
from dataclasses import astuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from w2vdist import config
from w2vdist.train import checkpoint
from w2vdist.train import distributed
from w2vdist.config import Config
from w2vdist.train.data import Position, TokenBatches, assign_shards
from w2vdist.errors import Diverged, UsageError
from w2vdist.logs import set_step, setup_logging
from w2vdist.train.metrics import build_metrics
from w2vdist.train.preemption import EXIT_PREEMPTED, StopRequest
from w2vdist.train.sgns import Embeddings
from w2vdist.corpus.shards import Manifest
from w2vdist.train.backends import batch_warning, build_step, choose_backend, with_batch_words
from w2vdist.train.sync import build_sync, with_merge_interval
from w2vdist.corpus.vocab import VOCAB_FILE, Vocab

# Settings a checkpoint must share with the run that resumes it.
_COMPATIBLE = ("model", "optim", "train.epochs", "train.seed", "sync.strategy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML, TOML or JSON file of config sections")
    parser.add_argument(
        "--resume",
        default="auto",
        help="auto: continue from the run directory's newest complete checkpoint if any "
        "(default); never: refuse a run directory that has checkpoints",
        choices=("auto", "never"),
    )
    parser.add_argument(
        "--wandb", choices=("auto", "online", "offline", "disabled"), help="= --wandb.mode"
    )
    parser.add_argument(
        "--dry-run",
        "--print-config",
        action="store_true",
        help="print the resolved config, world size, shards per rank and planned steps; "
        "train nothing",
    )
    config.add_arguments(parser)


def command(args: argparse.Namespace) -> int:
    overrides = config.overrides_from_args(args)
    if args.wandb:
        overrides = config.merge(overrides, {"wandb": {"mode": args.wandb}})
    cfg = config.load(args.config, overrides)
    if not cfg.data.shards:
        raise UsageError("config: data.shards is required (a `w2vdist prepare` output directory)")
    return train(cfg, resume=args.resume, dry_run=args.dry_run)


@dataclass(frozen=True)
class Plan:
    """How long the run is: fixed up front so every rank runs the same steps."""

    steps_per_epoch: int
    total_steps: int
    words_per_step: int  # global: batch_words on every rank

    @classmethod
    def build(cls, total_tokens: int, world_size: int, batch_words: int, epochs: int) -> "Plan":
        words_per_step = world_size * batch_words
        steps_per_epoch = max(1, math.ceil(total_tokens / words_per_step))
        return cls(steps_per_epoch, steps_per_epoch * epochs, words_per_step)

    @property
    def total_words(self) -> int:
        return self.total_steps * self.words_per_step

    def learning_rate(self, step: int, alpha: float, min_ratio: float) -> float:
        """Linear from alpha to alpha * min_ratio over the planned words."""
        progress = min(1.0, step / self.total_steps)
        return alpha * (1.0 - (1.0 - min_ratio) * progress)


def train(cfg: Config, resume: str = "auto", dry_run: bool = False) -> int:
    world = distributed.init(cfg.train.device, cfg.sync.timeout_seconds)
    run_dir = Path(cfg.train.run_dir)
    log = setup_logging(None if dry_run or not world.is_main else run_dir, world.rank, world.size)
    try:
        return _train(cfg, world, run_dir, resume, dry_run, log)
    except UsageError:
        raise  # bad input: the one-line message says it all
    except Exception:
        log.exception("rank %d on %s failed", world.rank, world.host)
        raise
    finally:
        distributed.shutdown()


def _train(cfg, world, run_dir: Path, resume: str, dry_run: bool, log) -> int:
    shards_dir = Path(cfg.data.shards)
    manifest = Manifest.load(shards_dir)
    vocab = Vocab.load(shards_dir / VOCAB_FILE)
    if vocab.hash != manifest.vocab_hash:
        raise UsageError(f"{shards_dir / VOCAB_FILE}: does not match manifest.json's vocab_hash")
    owned = assign_shards(manifest, world.size, shards_dir)
    backend = choose_backend(cfg, world.device, world.size)
    cfg = with_merge_interval(with_batch_words(cfg, backend, world.size), world.size)
    plan = Plan.build(manifest.total_tokens, world.size, cfg.optim.batch_words, cfg.train.epochs)
    warning = batch_warning(backend, cfg, world.size)
    if warning and world.is_main:
        log.warning(warning)
    if dry_run:
        if world.is_main:
            _print_plan(cfg, world, manifest, owned, plan, backend)
        return 0

    threads = cfg.train.threads or max(1, torch.get_num_threads())
    torch.set_num_threads(threads)
    init = torch.Generator().manual_seed(cfg.train.seed)  # same tables on every rank
    tables = Embeddings(len(vocab), cfg.model.dim, init).to(world.device)
    generator = torch.Generator(device=world.device).manual_seed(cfg.train.seed + world.rank)

    step, run_id, start = 0, None, Position()
    previous = _find_checkpoint(run_dir, resume)
    if previous is not None:
        _check_compatible(previous, cfg, vocab, world.size)
        tables.input.data.copy_(previous.tables["input"])
        tables.output.data.copy_(previous.tables["output"])
        step = previous.state["step"]
        run_id = previous.state.get("wandb_run_id")
        generator.set_state(previous.state["rng"][world.rank])
        start = Position(*previous.state["data"][world.rank])
        log.info("resuming from %s at step %d", previous.path, step)
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(cfg, run_dir / "config.json")
        shutil.copyfile(shards_dir / VOCAB_FILE, run_dir / VOCAB_FILE)

    sync = build_sync(cfg.sync, world.size, tables)
    train_step = build_step(backend, tables, vocab.counts, cfg, sync, generator, threads)
    metrics = build_metrics(
        cfg, run_dir, world.rank, run_id, plan.total_words, step * plan.words_per_step
    )
    loader = TokenBatches(
        manifest.sources(shards_dir, owned[world.rank]), cfg.optim.batch_words, cfg.train.seed,
        world.rank, cfg.data.loader_workers, cfg.data.prefetch,
        pin_memory=world.device.type == "cuda", start=start,
    )
    if previous is not None and loader.start != start:
        log.warning(
            "data.loader_workers now deals the shards to %d worker(s), not %d: the resumed "
            "run continues after the same amount of data, in another order",
            loader.workers, start.workers,
        )
    # Closed on every exit path: loader workers ignore stop signals, so an interpreter
    # exiting on an error would otherwise wait for them forever.
    with closing(iter(loader)) as batches:
        log.info(
            "training %s backend, %d rank(s), %d steps of %d words (%d per epoch), from step %d",
            backend, world.size, plan.total_steps, plan.words_per_step, plan.steps_per_epoch, step,
        )

        stop = StopRequest()
        last_save = time.monotonic()
        end_step = min(plan.total_steps, cfg.train.max_steps or plan.total_steps)
        interval = _Interval(step)
        alpha, ratio = cfg.optim.alpha, cfg.optim.min_alpha_ratio
        preempted = False
        while step < end_step:
            tokens, sentence = next(batches)
            tokens = tokens.to(world.device, non_blocking=True)
            sentence = sentence.to(world.device, non_blocking=True)
            lr = plan.learning_rate(step, alpha, ratio)
            next_lr = plan.learning_rate(step + 1, alpha, ratio)
            loss, pairs = train_step(tokens, sentence, lr, next_lr)
            step += 1
            set_step(step)
            sync.after_step(tables, step)

            # One small all-reduce per step: the global loss and pair count, whether any rank was
            # asked to stop, and whether rank 0's clock says a checkpoint is due.
            minutes_due = (
                world.is_main
                and cfg.checkpoint.every_minutes > 0
                and time.monotonic() - last_save >= 60 * cfg.checkpoint.every_minutes
            )
            control = _all_sum(
                [loss, float(pairs), float(stop.requested), float(minutes_due)], world, sync
            )
            if not math.isfinite(control[0]):
                raise Diverged(
                    f"training diverged at step {step}: the loss is {control[0]} (lr {lr:.4g}, "
                    f"{plan.words_per_step:,} words per step); nothing after the last checkpoint "
                    "was saved; lower optim.alpha or optim.batch_words"
                )
            interval.add(control[0], control[1])
            metrics.progress(
                step * plan.words_per_step, interval.mean_loss(), interval.words_per_s(step, plan)
            )
            preempted = control[2] > 0
            epoch_end = step % plan.steps_per_epoch == 0
            if epoch_end:
                sync.merge(tables)
            due = (
                control[3] > 0
                or (cfg.checkpoint.every_steps and step % cfg.checkpoint.every_steps == 0)
            )
            if interval.elapsed() >= cfg.train.log_every_seconds or epoch_end or step == end_step:
                metrics.log(step, interval.flush(step, plan, sync, lr, world))
            if preempted or (due and step < end_step):
                _save(cfg, run_dir, step, plan, tables, vocab, generator, loader.position,
                      sync, metrics, world, log)
                last_save = time.monotonic()
            if preempted:
                log.warning("stopping at step %d on %s; run again to resume", step, stop.signal)
                break

        if not preempted:
            _save(cfg, run_dir, step, plan, tables, vocab, generator, loader.position, sync,
                  metrics, world, log)

    metrics.close()
    stop.restore()
    if world.is_main and not preempted:
        words_per_s = interval.total_words_per_s(plan)
        print(
            f"trained {step}/{plan.total_steps} steps ({step * plan.words_per_step:,} words, "
            f"{words_per_s:,.0f} words/s); checkpoint: {checkpoint.resolve(run_dir)}",
            flush=True,
        )
    return EXIT_PREEMPTED if preempted else 0


def _find_checkpoint(run_dir: Path, resume: str) -> checkpoint.Checkpoint | None:
    if not checkpoint.complete_steps(run_dir):
        return None
    if resume == "never":
        raise UsageError(f"{run_dir}: already holds checkpoints (use --resume auto or a new dir)")
    found = checkpoint.load_latest(run_dir)
    if found is None:
        raise UsageError(f"{run_dir}: every checkpoint is corrupt; move them away to start over")
    return found


def _check_compatible(ckpt: checkpoint.Checkpoint, cfg: Config, vocab: Vocab, world: int) -> None:
    """Refuse a checkpoint that another vocabulary or an incompatible config wrote."""
    differences = []
    if ckpt.meta.get("vocab_hash") != vocab.hash:
        differences.append("vocabulary (vocab.tsv hash)")
    if ckpt.meta.get("world_size") != world:
        differences.append(f"world_size {ckpt.meta.get('world_size')} -> {world}")
    old = _flatten(ckpt.meta.get("config", {}))
    new = _flatten(config.to_dict(cfg))
    for key in sorted(new):
        if key.startswith(_COMPATIBLE) and old.get(key) != new[key]:
            differences.append(f"{key} {old.get(key)!r} -> {new[key]!r}")
    if differences:
        raise UsageError(f"{ckpt.path}: cannot resume, it differs in " + "; ".join(differences))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _save(
    cfg, run_dir, step, plan, tables, vocab, generator, position, sync, metrics, world, log
) -> None:
    """Merge (local sync), collect every rank's RNG state and data position, rank 0 writes;
    scores if asked."""
    sync.merge(tables)
    if not all(bool(torch.isfinite(t).all()) for t in (tables.input, tables.output)):
        raise Diverged(
            f"training diverged by step {step}: the tables hold non-finite values and were not "
            "saved; lower optim.alpha or optim.batch_words"
        )
    mine = (generator.get_state(), astuple(position))
    ranks = [mine]
    if world.size > 1:
        ranks = [None] * world.size
        dist.all_gather_object(ranks, mine)
    if not world.is_main:
        return
    state = {
        "step": step,
        "words": step * plan.words_per_step,
        "epoch": step // plan.steps_per_epoch,
        "tokens_per_rank": step * cfg.optim.batch_words,
        "rng": [rng for rng, _ in ranks],
        "data": [data for _, data in ranks],  # Position(sample, offset, workers) per rank
        "wandb_run_id": metrics.run_id,
    }
    meta = {
        **{k: v for k, v in state.items() if k != "rng"},
        "total_steps": plan.total_steps,
        "world_size": world.size,
        "vocab_hash": vocab.hash,
        "config": config.to_dict(cfg),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tables_cpu = {"input": tables.input.data, "output": tables.output.data}
    path = checkpoint.save(run_dir, step, tables_cpu, state, meta, cfg.checkpoint.keep)
    log.info("checkpoint %s", path)
    scores = _evaluate(cfg, vocab, tables)
    if scores:
        metrics.log(step, scores)
        log.info("eval at step %d: %s", step, json.dumps(scores))


def _evaluate(cfg: Config, vocab: Vocab, tables: Embeddings) -> dict[str, float]:
    if not (cfg.eval.analogies or cfg.eval.similarity):
        return {}
    from w2vdist.vectors import evaluate

    words = vocab.words
    vectors = tables.input.data.float().cpu()
    scores: dict[str, float] = {}
    if cfg.eval.analogies:
        result = evaluate.score_analogies(words, vectors, cfg.eval.analogies, cfg.eval.restrict_vocab)
        scores.update({f"analogy/{k}": v for k, v in _numbers(result).items()})
    if cfg.eval.similarity:
        result = evaluate.score_similarity(words, vectors, cfg.eval.similarity)
        scores.update({f"similarity/{k}": v for k, v in _numbers(result).items()})
    return scores


def _numbers(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}


def _all_sum(values: list[float], world, sync) -> list[float]:
    if world.size == 1:
        return values
    start = time.perf_counter()
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    sync.seconds += time.perf_counter() - start
    return t.tolist()


class _Interval:
    """Loss and speed over one reporting interval, summed in float64 and then reset."""

    def __init__(self, step: int) -> None:
        self.start_step = self.step = step
        self.run_start = self.start = time.perf_counter()
        self.loss = 0.0
        self.pairs = 0.0
        self.sync_seconds = 0.0

    def add(self, loss: float, pairs: float) -> None:
        self.loss += loss
        self.pairs += pairs

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def mean_loss(self) -> float:
        return self.loss / max(self.pairs, 1.0)

    def words_per_s(self, step: int, plan: Plan) -> float:
        return (step - self.step) * plan.words_per_step / max(self.elapsed(), 1e-9)

    def flush(self, step: int, plan: Plan, sync, lr: float, world) -> dict[str, float]:
        seconds = max(self.elapsed(), 1e-9)
        sync_share = (sync.seconds - self.sync_seconds) / seconds
        stats = {
            "loss": self.mean_loss(),
            "lr": lr,
            "words_per_s": self.words_per_s(step, plan),
            "pairs_per_s": self.pairs / seconds,
            "epoch": step / plan.steps_per_epoch,
            "progress": step / plan.total_steps,
            "sync_time_share": sync_share,
            "sync_bytes_per_step": sync.bytes_sent / max(step - self.start_step, 1),
            "memory_gb": _peak_memory_gb(world.device),
        }
        self.step, self.start, self.loss, self.pairs = step, time.perf_counter(), 0.0, 0.0
        self.sync_seconds = sync.seconds
        return stats

    def total_words_per_s(self, plan: Plan) -> float:
        seconds = max(time.perf_counter() - self.run_start, 1e-9)
        return (self.step - self.start_step) * plan.words_per_step / seconds


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _print_plan(cfg, world, manifest, owned, plan, backend) -> None:
    print(json.dumps(config.to_dict(cfg), indent=2))
    print(f"world size: {world.size} (device {world.device}, backend {backend})")
    for rank, shards in enumerate(owned):
        tokens = sum(manifest.shards[i].tokens for i in shards)
        print(f"rank {rank}: {len(shards)} shard(s), {tokens:,} tokens")
    print(
        f"planned: {plan.total_steps} steps ({plan.steps_per_epoch} per epoch x "
        f"{cfg.train.epochs}), {plan.words_per_step:,} words per step, "
        f"{plan.total_words:,} words in all (corpus {manifest.total_tokens:,} per epoch)"
    )
