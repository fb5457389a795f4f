"""Train SGNS embeddings on prepared shards: one process, or every worker of a torchrun.

    w2vdist train --data.shards DIR --train.run_dir RUN [--config cfg.yaml] [--section.key V]
    torchrun --nproc-per-node 4 -m w2vdist train ...     (same command, N ranks)

Every rank streams its own shards and takes its share of a step's `world_size x
optim.batch_words` raw tokens (in proportion to its shards' tokens); all ranks
run the same planned number of steps, so the learning rate, which decays linearly with the
global words processed, follows the same schedule on 1 or N ranks. Rank 0 writes checkpoints,
logs and W&B. SIGUSR1/SIGTERM/SIGINT stop every rank after the same step, rank 0 checkpoints,
and the process exits 75; `--resume auto` (the default) continues from the newest complete
checkpoint of the run directory, bit for bit on one CPU process with the torch backend.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from w2vdist import settings
from w2vdist.errors import Diverged, UsageError, out_of_memory
from w2vdist.files import locked, write_text
from w2vdist.logs import close_logging, set_step, setup_logging
from w2vdist.training import backends, distributed, preemption
from w2vdist.training.callbacks import Callback
from w2vdist.training.checkpoint import Checkpoint, Checkpointer, TrainState
from w2vdist.training.config import Config, TrainCommand
from w2vdist.training.data import OnDevice, Position, assign_shards
from w2vdist.training.distributed import World
from w2vdist.training.divergence import diverged, learned_nothing
from w2vdist.training.metrics import Interval, Metrics, build_metrics
from w2vdist.training.preemption import EXIT_PREEMPTED, StopRequest
from w2vdist.training.redeal import owed_tokens, resumed_streams
from w2vdist.training.session import Session
from w2vdist.training.spec import (
    CHOSEN_AT_START, CHOSEN_FOR_THE_WORLD, Corpus, RunSpec, keep_choices, resolve,
)
from w2vdist.vectors.evaluate import scores


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, TrainCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(TrainCommand, args)
    return train(cmd.config, resume=cmd.resume, dry_run=cmd.dry_run)


@dataclass
class Outcome:
    """How a run ended: its exit code, resolved spec, newest checkpoint and latest scores."""

    exit_code: int
    spec: RunSpec
    checkpoint: Path | None = None
    scores: dict[str, float] = field(default_factory=dict)


def train(cfg: Config, resume: str = "auto", dry_run: bool = False) -> int:
    """Run (or continue) the training `cfg` describes; the exit code."""
    return run(cfg, resume, dry_run).exit_code


def run(
    cfg: Config, resume: str = "auto", dry_run: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Outcome:
    """`train`, with callbacks, returning what the run produced."""
    if not cfg.data.shards:
        raise UsageError("config: data.shards is required (a `w2vdist prepare` output directory)")
    run_dir = Path(cfg.train.run_dir)
    if run_dir.exists() and not run_dir.is_dir():  # its mkdir would say only "File exists"
        raise UsageError(f"{run_dir}: a file, where the run needs a directory")
    world = distributed.init(cfg.train.device, cfg.sync.timeout_seconds)
    log = setup_logging(None if dry_run or not world.is_main else run_dir, world.rank, world.size)
    owner = locked(run_dir) if world.is_main and not dry_run else contextlib.nullcontext()
    try:
        with owner:  # one run per run directory: a second is refused, naming the first
            return _train(cfg, world, run_dir, resume, dry_run, log, callbacks)
    except (UsageError, OSError):
        raise  # bad input, a path that cannot be written: the one-line message says it all
    except Exception as exc:
        why = out_of_memory(exc)
        if why is None:
            log.exception("rank %d on %s failed", world.rank, world.host)
        else:  # the settings or the machine, not a bug: the allocator's line says it
            log.error("rank %d on %s ran out of memory: %s", world.rank, world.host, why)
        raise
    finally:
        preemption.restore()  # left in place by a failed run until its failure is logged
        distributed.shutdown()
        close_logging()


def _train(
    cfg: Config, world: World, run_dir: Path, resume: str, dry_run: bool, log: logging.Logger,
    callbacks: Sequence[Callback],
) -> Outcome:
    corpus = Corpus.load(cfg.data)
    checkpointer = Checkpointer(run_dir, cfg.checkpoint)
    previous = _previous(checkpointer, resume)
    spec = resolve(cfg, world, corpus) if previous is None else \
        _resumed(cfg, previous, world, corpus, log)
    cfg, plan = spec.config, spec.plan
    for warning in (backends.batch_warning(cfg, spec.update_words),
                    backends.edge_warning(cfg.model.window, min(plan.rank_words),
                                          corpus.mean_sentence),
                    backends.negatives_warning(cfg)):
        if warning and world.is_main:
            log.warning(warning)
    if dry_run:
        if world.is_main:
            _print_plan(spec, corpus, previous)
        return Outcome(0, spec)
    state = previous.state if previous else None
    if previous is not None and previous.state.step >= cfg.train.max_steps:
        if world.is_main:
            print(f"{run_dir}: already trained, {previous.state.step}/{plan.total_steps} steps "
                  f"(checkpoint {previous.path}); raise train.epochs to train more", flush=True)
        return Outcome(0, spec, previous.path)
    session = Session.build(spec, world, corpus, state)
    step = state.step if state else 0
    # Rank 0 scores the tables as training starts: a missing or malformed eval file stops the
    # run now, not at its first checkpoint hours on; a new run logs these untrained scores.
    untrained = scores(cfg.eval, corpus.words, session.tables.input.data) \
        if world.is_main else {}
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps(spec.to_dict(), indent=2) + "\n")
        shutil.copyfile(corpus.vocab_file, run_dir / corpus.vocab_file.name)
    loader = session.batches(state)
    if previous is not None:
        log.info("resuming from %s at step %d", previous.path, step)
        if loader.reordered:
            log.warning("the checkpoint's data position is read in another order (%s): the "
                        "resumed run continues after the same amount of data", loader.reordered)

    # Every exit path closes the loader (its workers end with the run, not with the
    # interpreter), the metrics and the signal handlers.
    with contextlib.ExitStack() as stack:
        metrics = stack.enter_context(build_metrics(
            cfg, run_dir, world.rank, state.wandb_run_id if state else None,
            plan.total_words, step * plan.words_per_step,
        ))
        if untrained and previous is None:  # where a new run's curves begin
            metrics.log(step, untrained)
            log.info("eval at step %d: %s", step, json.dumps(untrained))
        stop = stack.enter_context(StopRequest())
        batches = OnDevice(stack.enter_context(contextlib.closing(iter(loader))), loader,
                           world.device)
        log.info(
            "training %s backend%s, %d rank(s), %d steps of %d words (%d per epoch), from step "
            "%d, %d loader worker(s) a rank", cfg.train.backend,
            " (replayed from a CUDA graph)" if cfg.train.cuda_graph else "", world.size,
            plan.total_steps, plan.words_per_step, plan.steps_per_epoch, step,
            cfg.data.loader_workers,
        )
        interval = Interval(step, plan)
        preempted, saved = False, Outcome(0, spec)
        stats: dict[str, float] = {}  # the last interval's figures
        # The step's loss and pair count stay on the device; they are read, summed over the
        # ranks, only at control steps (`sync.control_every_steps`), so that a GPU never waits
        # for the host between steps.
        unread_loss = torch.zeros((), dtype=torch.float64, device=world.device)
        unread_pairs = torch.zeros((), dtype=torch.float64, device=world.device)
        while step < cfg.train.max_steps:
            tokens, sentence = next(batches)
            lr = spec.learning_rate(step)
            loss, pairs = session.step(tokens, sentence, lr, spec.learning_rate(step + 1))
            unread_loss += loss
            unread_pairs += pairs
            step += 1
            set_step(step)
            session.sync.after_step(session.tables, step)
            epoch_end = step % plan.steps_per_epoch == 0
            if not (step % cfg.sync.control_every_steps == 0 or epoch_end
                    or step == cfg.train.max_steps or checkpointer.due(step, False)):
                continue

            # A control step: one small all-reduce of the loss and pairs since the last one,
            # whether any rank was asked to stop, and whether rank 0's clock says a checkpoint
            # is due.
            clock_due = world.is_main and checkpointer.clock_due()
            summed_loss, summed_pairs, stopping, clock = session.sync.control(
                [unread_loss, unread_pairs, float(stop.requested), float(clock_due)]
            )
            unread_loss.zero_()
            unread_pairs.zero_()
            why = diverged(summed_loss, summed_pairs, cfg.model.negative)
            if why:
                raise Diverged(
                    f"training diverged by step {step}: {why} (lr {lr:.4g}, "
                    f"{plan.words_per_step:,} words per step); nothing after the last checkpoint "
                    "was saved; lower optim.alpha or optim.batch_words"
                )
            interval.add(summed_loss, summed_pairs)
            metrics.progress(step * plan.words_per_step, interval.mean_loss(),
                             interval.words_per_s(step))
            preempted = stopping > 0
            if epoch_end:
                session.sync.merge(session.tables)
                for callback in callbacks:
                    callback.on_epoch_end(step // plan.steps_per_epoch, step, session)
            if (interval.elapsed() >= cfg.train.log_every_seconds or epoch_end
                    or step == cfg.train.max_steps):
                stats = interval.flush(step, session.sync, batches, lr, world.device,
                                       checkpointer.held_seconds)
                metrics.log(step, stats)
            if world.is_main:  # a checkpoint written in the background since the last look
                _written(checkpointer.finished(), log, callbacks)
            if preempted or (checkpointer.due(step, clock > 0) and step < cfg.train.max_steps):
                saved = _save(session, checkpointer, step, batches.position, metrics, log,
                              callbacks, background=not preempted) or saved
            if preempted:
                log.warning("stopping at step %d on %s; run again to resume", step, stop.signal)
                break
        if not preempted:
            saved = _save(session, checkpointer, step, batches.position, metrics, log,
                          callbacks) or saved
            if world.is_main and metrics.wandb_on:
                _publish(saved, metrics, run_dir, step)

    if world.is_main and not preempted:
        print(
            f"trained {step}/{plan.total_steps} steps ({step * plan.words_per_step:,} words, "
            f"{interval.total_words_per_s():,.0f} words/s); checkpoint: {saved.checkpoint}",
            flush=True,
        )
        unlearned = learned_nothing(stats.get("loss"), cfg.model.negative)
        if unlearned:
            log.warning(unlearned)
    saved.exit_code = EXIT_PREEMPTED if preempted else 0
    return saved


def _previous(checkpointer: Checkpointer, resume: str) -> Checkpoint | None:
    """The checkpoint to continue from, if any."""
    if not checkpointer.steps():
        return None
    if resume == "never":
        raise UsageError(f"{checkpointer.root.parent}: already holds checkpoints "
                         "(use --resume auto or a new dir)")
    found = checkpointer.latest()
    if found is None:
        raise UsageError(f"{checkpointer.root.parent}: every checkpoint is corrupt; move them "
                         "away to start over")
    return found


def _resumed(
    cfg: Config, previous: Checkpoint, world: World, corpus: Corpus, log: logging.Logger
) -> RunSpec:
    """The spec that continues `previous`: settings left to be chosen keep the run's choices
    (a newer version may choose otherwise), and any other difference in math is refused. On
    another number of ranks (an elastic restart, a job requeued on fewer nodes) the run keeps
    its words per step, shared out among the ranks there are."""
    ran = previous.spec
    resized = ran.world_size != world.size
    spec = resolve(keep_choices(cfg, ran.config, resized), world, corpus,
                   ran.plan.words_per_step)
    differences = spec.differences(ran)
    if differences:
        raise UsageError(f"{previous.path}: cannot resume, it differs in " +
                         "; ".join(differences))
    if not world.is_main:
        return spec
    kept = settings.flatten(settings.to_dict(spec.config))
    fresh = settings.flatten(settings.to_dict(resolve(cfg, world, corpus).config))
    for key in (f"{section}.{name}" for section, name, _ in CHOSEN_AT_START):
        if kept[key] != fresh[key] and not (resized and key in CHOSEN_FOR_THE_WORLD):
            log.info("resuming with the run's %s %s (a new run would choose %s)", key,
                     kept[key], fresh[key])
    if resized:
        log.warning(
            "resuming on %d rank(s) a run saved on %d at step %d: its %s words a step are "
            "shared out anew (%s to %s a rank), the shards are dealt anew, and the ranks first "
            "read what the %d before had not yet read of the epoch in progress",
            world.size, ran.world_size, previous.state.step, f"{spec.plan.words_per_step:,}",
            f"{min(spec.plan.rank_words):,}", f"{max(spec.plan.rank_words):,}", ran.world_size)
    return spec


def _save(
    session: Session, checkpointer: Checkpointer, step: int, position: Position,
    metrics: Metrics, log: logging.Logger, callbacks: Sequence[Callback],
    background: bool = False,
) -> Outcome | None:
    """Merge (local sync), gather every rank's RNG state and data position; rank 0 writes the
    step folder (in the background when asked and `checkpoint.background` allows, announced
    once written) and scores the tables if asked (None on other ranks)."""
    tables, world = session.tables, session.world
    session.sync.merge(tables)
    if not all(bool(torch.isfinite(t).all()) for t in (tables.input, tables.output)):
        raise Diverged(
            f"training diverged by step {step}: the tables hold non-finite values and were not "
            "saved; lower optim.alpha or optim.batch_words"
        )
    mine = (session.generator.get_state(), position)
    ranks: list[Any] = [mine]
    if world.size > 1:
        ranks = [None] * world.size
        dist.all_gather_object(ranks, mine)
    if not world.is_main:
        return None
    cfg = session.spec.config
    _written(checkpointer.finished(wait=True), log, callbacks)  # one write at a time
    state = TrainState(tables.input.data, tables.output.data, step, [r for r, _ in ranks],
                       [p for _, p in ranks], metrics.run_id, session.streams)
    background = background and bool(cfg.checkpoint.background)
    path = checkpointer.save(state, session.spec, session.corpus.vocab_file, background)
    if not background:
        _written((path, step), log, callbacks)
    found = scores(cfg.eval, session.corpus.words, tables.input.data)
    if found:
        metrics.log(step, found)
        metrics.neighbours(step, session.corpus.words, tables.input.data, cfg.eval.probe_words)
        log.info("eval at step %d: %s", step, json.dumps(found))
        for callback in callbacks:
            callback.on_eval(step, found)
    return Outcome(0, session.spec, path, found)


def _written(saved: tuple[Path, int] | None, log: logging.Logger,
             callbacks: Sequence[Callback]) -> None:
    """A complete step folder (path, step) logged and handed to the callbacks."""
    if saved is None:
        return
    path, step = saved
    log.info("checkpoint %s", path)
    for callback in callbacks:
        callback.on_checkpoint(path, step)


def _publish(saved: Outcome, metrics: Metrics, run_dir: Path, step: int) -> None:
    """The run's vectors exported beside it and handed to W&B as an artifact."""
    from w2vdist.vectors.export import metadata, sidecar
    from w2vdist.vectors.keyed import WordVectors

    assert saved.checkpoint is not None  # rank 0's `_save` always writes one
    vectors = WordVectors.load(saved.checkpoint)
    out = run_dir / "vectors.bin"
    vectors.save(out)
    write_text(sidecar(out), metadata(vectors, "input", saved.scores))
    metrics.publish(out, sidecar(out), vectors.index_to_key, vectors.vectors, step)


def _print_plan(spec: RunSpec, corpus: Corpus, previous: Checkpoint | None) -> None:
    """The resolved spec, each rank's shards and the plan; on a resume, where it resumes and,
    on another number of ranks, what each rank owes of the epoch in progress."""
    cfg, plan = spec.config, spec.plan
    manifest, _ = corpus.prepared()
    print(json.dumps(spec.to_dict(), indent=2))
    print(f"world size: {spec.world_size} (device {cfg.train.device}, "
          f"backend {cfg.train.backend})")
    owed: list[str] = [""] * spec.world_size
    if previous is not None:
        state = previous.state
        epoch = state.step // plan.steps_per_epoch
        print(f"resuming from {previous.path} at step {state.step} (epoch {epoch + 1}), saved "
              f"on {state.world_size} rank(s)")
        if state.world_size != spec.world_size:
            owed = [f", first about {owed_tokens(s, manifest):,} tokens of epoch "
                    f"{epoch + 1} the ranks before had not read"
                    for s in resumed_streams(state, corpus, cfg.train.seed, plan)]
    for rank, shards in enumerate(assign_shards(manifest, spec.world_size, corpus.source)):
        tokens = sum(manifest.shards[i].tokens for i in shards)
        print(f"rank {rank}: {len(shards)} shard(s), {tokens:,} tokens{owed[rank]}")
    print(
        f"planned: {plan.total_steps} steps ({plan.steps_per_epoch} per epoch x "
        f"{cfg.train.epochs}), {plan.words_per_step:,} words per step, "
        f"{plan.total_words:,} words in all (corpus {corpus.tokens:,} per epoch)"
    )
