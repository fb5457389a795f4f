"""`w2vdist train`: checkpoints, exact resume, compatibility checks, dry run (one process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from w2vdist.cli import main
from w2vdist.errors import UsageError
from w2vdist.settings import flatten, from_dict
from w2vdist.training import checkpoint, chunks as chunks_module
from w2vdist.training.callbacks import Callback
from w2vdist.training.chunks import ShardChunks
from w2vdist.training.config import Config
from w2vdist.training.data import TokenBatches
from w2vdist.training.loop import run as run_training, train
from w2vdist.training.preemption import EXIT_PREEMPTED
from w2vdist.training.spec import keep_choices

from tests.helpers import checkpoint_info, config, flags, prepare, write_zipf_corpus


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    return prepare(write_zipf_corpus(root / "corpus.txt", 2000), root / "shards")


def tables(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    _, w_in, w_out = checkpoint.load_tables(run_dir)
    return w_in, w_out


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_and_resumed_run_is_bitwise_equal(shards, tmp_path, workers):
    data = {"loader_workers": workers}
    assert train(config(shards, tmp_path / "full", data=data)) == 0
    assert train(config(shards, tmp_path / "split", data=data, train={"max_steps": 37})) == 0
    state = checkpoint_info(tmp_path / "split")
    assert state["step"] == 37 and state["data"][0][:2] != [0, 0]  # resumes mid-stream
    assert train(config(shards, tmp_path / "split", data=data)) == 0
    full, split = tables(tmp_path / "full"), tables(tmp_path / "split")
    assert torch.equal(full[0], split[0]) and torch.equal(full[1], split[1])
    # ...and training did something: the output table starts at zero.
    assert full[1].abs().sum() > 0


def test_resume_with_another_worker_count_warns_and_finishes(shards, tmp_path, capfd):
    run = tmp_path / "run"
    assert train(config(shards, run, data={"loader_workers": 2}, train={"max_steps": 20})) == 0
    assert "deals the samples" not in capfd.readouterr().err  # a fresh run has nothing to warn of
    assert train(config(shards, run, data={"loader_workers": 1})) == 0
    assert re.search(r"deals the samples to 1 worker\(s\), \d+ sample\(s\) at a time, not 2, ",
                     capfd.readouterr().err)
    state = checkpoint_info(run)
    assert state["step"] > 20 and state["data"][0][2] == 1


def test_checkpoint_folders_are_complete_pruned_and_described(shards, tmp_path):
    run = tmp_path / "run"
    assert train(config(shards, run, checkpoint={"every_steps": 10, "keep": 2})) == 0
    steps = checkpoint.complete_steps(run)
    assert len(steps) == 2
    state = checkpoint_info(steps[0])
    assert state["step"] == state["total_steps"]
    assert state["words"] == state["total_steps"] * 500
    assert state["world_size"] == 1 and state["config"]["model"]["dim"] == 16
    assert len(state["rng"]) == 1
    assert sorted(p.name for p in steps[0].iterdir()) == [
        "COMPLETE", "spec.json", "state.pt", "tables.pt", "vocab.tsv"]
    assert json.loads((run / "config.json").read_text())["model"]["dim"] == 16
    assert not list((run / "checkpoints").glob(".*tmp-*"))


def test_words_trained_cover_the_corpus_each_epoch(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run))
    manifest = json.loads((shards / "manifest.json").read_text())
    words = checkpoint_info(run)["words"]
    per_epoch = words / 2
    assert manifest["total_tokens"] <= per_epoch < manifest["total_tokens"] + 500


def test_corrupt_newest_checkpoint_is_reported_and_the_previous_used(shards, tmp_path, capfd):
    full, run = tmp_path / "full", tmp_path / "run"
    train(config(shards, full))
    train(config(shards, run, checkpoint={"every_steps": 10}, train={"max_steps": 25}))
    newest = checkpoint.complete_steps(run)[0]
    assert newest.name == checkpoint.step_name(25)
    data = (newest / "tables.pt").read_bytes()
    (newest / "tables.pt").write_bytes(data[: len(data) // 2])  # truncated
    assert train(config(shards, run, checkpoint={"every_steps": 10})) == 0
    err = capfd.readouterr().err
    assert "step-000000025: corrupt checkpoint" in err and "resuming from" in err
    # Resumed from step 20, which the uninterrupted run passed through unchanged.
    assert torch.equal(tables(full)[0], tables(run)[0])


def test_checkpoint_of_another_config_is_refused_with_the_difference(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run, train={"max_steps": 5}))
    with pytest.raises(UsageError, match=r"model\.dim 16 -> 32 \(--model\.dim 16 keeps"):
        train(config(shards, run, model={"dim": 32}))


def test_a_resume_keeps_the_runs_choices_and_refuses_other_values(shards, tmp_path, capfd):
    """A setting left to be chosen (here the learning rate, chosen by an older version's
    default when the run started) continues as the run chose it; another value given is
    refused, naming the flag that keeps the checkpoint's, and that flag resumes."""
    run = tmp_path / "run"
    train(config(shards, run, optim={"alpha": 0.02}, train={"max_steps": 5}))
    with pytest.raises(UsageError) as refused:
        train(config(shards, run, optim={"alpha": 0.03}, train={"max_steps": 10}))
    named = re.findall(r"\((--\S+) (\S+) keeps the checkpoint's\)", str(refused.value))
    assert named == [("--optim.alpha", "0.02")]
    code = main(["train", *flags(shards, run, train={"max_steps": 10}), *named[0]])
    assert code == 0 and (run / "checkpoints" / "step-000000010").is_dir()
    capfd.readouterr()

    assert train(config(shards, run, train={"max_steps": 15})) == 0  # alpha left to be chosen
    assert re.search(r"resuming with the run's optim\.alpha 0\.02 \(a new run would choose "
                     r"0\.0[5-9]\)", capfd.readouterr().err)
    assert json.loads((run / "config.json").read_text())["optim"]["alpha"] == 0.02
    assert checkpoint_info(run)["step"] == 15


def test_only_the_settings_chosen_at_start_are_kept_from_the_run():
    ran = from_dict(Config, {"optim": {"alpha": 0.04, "batch_words": 8192, "damping": 0.2},
                             "sync": {"every_steps": 32, "hot_rows": 3000, "hot_every_steps": 2},
                             "model": {"dim": 50}, "data": {"loader_workers": 2}})
    kept = keep_choices(Config(), ran)
    assert (kept.optim.alpha, kept.optim.batch_words, kept.optim.damping, kept.sync.every_steps,
            kept.sync.hot_rows, kept.sync.hot_every_steps) == (0.04, 8192, 0.2, 32, 3000, 2)
    # The loader's count decides the order its samples are read in: a GPU run begun under
    # the earlier default of 2 workers goes on with 2.
    assert kept.data.loader_workers == 2
    assert kept.model.dim == 100  # a default, not a choice: a resume refuses the difference
    assert keep_choices(from_dict(Config, {"optim": {"alpha": 0.03}}), ran).optim.alpha == 0.03
    # On another number of ranks how they agree is chosen for the new world; the schedule stays.
    moved = keep_choices(Config(), ran, resized=True)
    assert (moved.optim.alpha, moved.optim.batch_words, moved.optim.damping) == (0.04, 8192, 0.2)
    assert (moved.sync.every_steps, moved.sync.hot_rows, moved.sync.hot_every_steps) == (0, -1, 0)
    assert moved.data.loader_workers == 2


def test_a_stop_request_on_cpu_is_honoured_after_the_step_in_flight(shards, tmp_path):
    """On CPU the stop request is read after every step: a run of 500-word steps, whose
    control interval on a GPU would be 524 steps (past the epoch end at 69), stops and
    checkpoints at the step after the signal."""

    class SignalAtStep3(Callback):
        def on_checkpoint(self, path: Path, step: int) -> None:
            if step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    run = tmp_path / "run"
    outcome = run_training(config(shards, run, checkpoint={"every_steps": 3}),
                           callbacks=[SignalAtStep3()])
    assert outcome.exit_code == EXIT_PREEMPTED
    assert checkpoint_info(run)["step"] == 4


class Saved(Callback):
    """The steps of the checkpoints announced, each complete when it is."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_checkpoint(self, path: Path, step: int) -> None:
        assert (path / checkpoint.COMPLETE).is_file()
        self.steps.append(step)


def test_checkpoints_written_in_the_background_equal_those_written_in_turn(shards, tmp_path):
    saved = {}
    for background in (None, True):  # unset: in turn on CPU
        seen = Saved()
        run = tmp_path / str(background)
        cfg = config(shards, run, checkpoint={"every_steps": 7, "keep": 100,
                                              "background": background},
                     train={"log_every_seconds": 3600})  # records at epoch ends, past saves
        assert run_training(cfg, callbacks=[seen]).exit_code == 0
        assert json.loads((run / "config.json").read_text())["checkpoint"]["background"] is \
            bool(background)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        shares = [r["checkpoint_time_share"] for r in records if "checkpoint_time_share" in r]
        assert len(shares) >= 2 and all(0 < share < 1 for share in shares), records
        saved[background] = (checkpoint.complete_steps(run), seen.steps)
    (plain, plain_steps), (background, background_steps) = saved[None], saved[True]
    assert background_steps == plain_steps and len(plain_steps) > 5
    assert [p.name for p in background] == [p.name for p in plain]
    for a, b in zip(plain, background):
        assert all(torch.equal(x, y) for x, y in
                   zip(checkpoint.load_tables(a)[1:], checkpoint.load_tables(b)[1:]))
    # The tables are copied before save returns: training on changes nothing written.
    found = checkpoint.load(plain[0])
    state, before = found.state, found.state.input.clone()
    state.step += 1
    saver = checkpoint.Checkpointer(tmp_path / "again", config(shards, tmp_path).checkpoint)
    saver.save(state, found.spec, plain[0] / "vocab.tsv", background=True)
    state.input.add_(1.0)
    path, step = saver.finished(wait=True)
    assert step == state.step and torch.equal(checkpoint.load(path).state.input, before)


def test_a_background_write_that_fails_stops_the_run_naming_the_folder(shards, tmp_path):
    class Spoil(Callback):  # the checkpoints folder becomes a file after the first save
        def on_checkpoint(self, path: Path, step: int) -> None:
            shutil.rmtree(path.parent)
            path.parent.write_text("not a folder\n")

    cfg = config(shards, tmp_path / "run", checkpoint={"every_steps": 7, "background": True})
    with pytest.raises(UsageError, match=r"step-000000014: cannot write: File exists"):
        run_training(cfg, callbacks=[Spoil()])


def test_a_stop_request_waits_for_the_checkpoint_written_in_the_background(shards, tmp_path):
    class SignalAtStep3(Saved):
        def on_checkpoint(self, path: Path, step: int) -> None:
            super().on_checkpoint(path, step)
            if step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    run, seen = tmp_path / "run", SignalAtStep3()
    cfg = config(shards, run, checkpoint={"every_steps": 3, "background": True, "keep": 10})
    assert run_training(cfg, callbacks=[seen]).exit_code == EXIT_PREEMPTED
    # Every folder written is announced once complete, the last one (the stop's) too.
    assert seen.steps[0] == 3 and seen.steps[-1] == checkpoint_info(run)["step"] < 69
    assert [checkpoint.step_name(s) for s in reversed(seen.steps)] == [
        p.name for p in checkpoint.complete_steps(run)]


def test_a_failed_run_keeps_its_stop_handler_until_it_has_said_why():
    """torchrun SIGTERMs a survivor as soon as another rank dies: while the failure unwinds,
    SIGTERM is only recorded, so the survivor lives to log it; then the defaults return."""
    script = textwrap.dedent("""
        import contextlib, os, signal
        from w2vdist.training import preemption
        with preemption.StopRequest():
            pass
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a clean exit restores
        with contextlib.suppress(RuntimeError):
            with preemption.StopRequest() as stop:
                raise RuntimeError("a rank died")
        os.kill(os.getpid(), signal.SIGTERM)
        print("alive after", stop.signal, flush=True)
        preemption.restore()
        os.kill(os.getpid(), signal.SIGTERM)
        print("not reached", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert done.stdout == "alive after SIGTERM\n"


def test_checkpoint_of_another_vocabulary_is_refused(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run, train={"max_steps": 5}))
    other = prepare(write_zipf_corpus(tmp_path / "other.txt", 500, seed=9), tmp_path / "other")
    with pytest.raises(UsageError, match="vocabulary"):
        train(config(other, run))


def test_resume_never_refuses_a_run_directory_with_checkpoints(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run, train={"max_steps": 5}))
    with pytest.raises(UsageError, match="already holds checkpoints"):
        train(config(shards, run), resume="never")


def test_dry_run_prints_the_plan_and_trains_nothing(shards, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        ["train", "--dry-run", "--data.shards", str(shards), "--train.run_dir", str(run),
         "--optim.batch_words", "500", "--train.backend", "torch"]
    )
    out = capsys.readouterr().out
    assert code == 0 and not run.exists()
    assert '"batch_words": 500' in out and "world size: 1" in out
    assert '"loader_workers": 1' in out  # auto (-1) on CPU
    assert "rank 0:" in out and "planned:" in out
    assert main(["train", "--dry-run", "--data.shards", str(shards), "--train.run_dir", str(run),
                 "--optim.batch_words", "64"]) == 0
    assert "WARNING steps of 64 words a rank lose 4% or more" in capsys.readouterr().err
    # A window past every sentence (item2vec's) reaches the mean sentence, not 2^31 words.
    assert main(["train", "--dry-run", "--data.shards", str(shards), "--train.run_dir", str(run),
                 "--optim.batch_words", "500", "--model.window", str(2**31 - 1)]) == 0
    assert "lose" not in capsys.readouterr().err


def test_a_torch_step_past_memory_is_refused_before_it_starts(shards, tmp_path, capsys):
    """The torch step grows with its words, window and negatives: a million negatives filled
    memory until the kernel's OOM killer ended the run, a dim of 20,000 at a whole-sentence
    window failed an allocation of 153 GB part way. Refused as the run resolves, by a lower
    bound of the step's memory (`reference.step_bytes`)."""
    for model in ({"negative": 10**6}, {"window": 2**31 - 1, "dim": 20_000}):
        code = main(["train", *flags(shards, tmp_path / "run", model=model,
                                     train={"backend": "torch"})])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "w2vdist: config: a torch step of " in err, err
        assert "GiB, more than the " in err and "lower optim.batch_words" in err, err
    assert main(["train", *flags(shards, tmp_path / "run", model={"window": 1000},
                                 train={"backend": "torch", "max_steps": 1})]) == 0


def test_a_failed_allocation_is_told_in_one_line(shards, tmp_path, capfd):
    """torch's CPU allocator raises a RuntimeError (CUDA's an OutOfMemoryError), Python a
    MemoryError: `out_of_memory` gives the CLI and train.log what the allocator said, with
    exit status 1 and no traceback (the settings or the machine, not a bug)."""
    from w2vdist.errors import out_of_memory

    run = tmp_path / "run"
    code = main(["train", *flags(shards, run, model={"negative": 2**31 - 2},
                                 train={"backend": "cpu-kernel"})])  # fmt: skip
    err = capfd.readouterr().err
    assert code == 1 and "w2vdist: out of memory: CPU kernel: out of memory" in err, err
    assert "Traceback" not in err and "ran out of memory: CPU kernel: out of memory" in (
        run / "train.log").read_text()
    with pytest.raises(RuntimeError) as failed:
        torch.empty(1 << 50, dtype=torch.uint8)
    assert out_of_memory(failed.value).startswith(
        f"DefaultCPUAllocator: can't allocate memory: you tried to allocate {1 << 50} bytes")
    assert out_of_memory(MemoryError("CPU kernel: out of memory")) == "CPU kernel: out of memory"
    assert out_of_memory(RuntimeError("shape mismatch")) is None
    assert out_of_memory(ValueError("can't allocate memory")) is None


@pytest.mark.parametrize("backend", ["torch", "cpu-kernel"])
def test_a_whole_sentence_window_trains_on_every_backend(shards, tmp_path, backend):
    """item2vec's window (2^31 - 1): the torch step spans the batch rather than allocating 2^32
    context slots a word (it did, for ever), the CPU kernel its longest sentence."""
    run = tmp_path / "run"
    assert train(config(shards, run, model={"window": 2**31 - 1},
                        train={"backend": backend, "max_steps": 3})) == 0
    assert tables(run)[1].abs().sum() > 0


@pytest.mark.parametrize("flag, value, said", [
    ("--model.window", "0", "model.window must be in [1, 2^31)"),
    ("--model.window", "1e30", "model.window must be a 64-bit integer (got '1e30')"),
    ("--model.negative", str(2**31 - 1), "model.negative must be in [1, 2^31 - 1)"),
    ("--train.seed", str(2**63), f"train.seed must be a 64-bit integer (got '{2**63}')"),
    ("--train.threads", "100000", "train.threads must be in [0, 1024] (0: all cores)"),
    ("--data.prefetch", "1e30", "data.prefetch must be a 64-bit integer (got '1e30')"),
    ("--data.prefetch", "65", "data.prefetch must be in [1, 64]"),
    ("--sync.timeout_seconds", "inf", "sync.timeout_seconds must be in (0, 86400]"),
    ("--checkpoint.every_minutes", "nan", "checkpoint.every_minutes must be in [0, 1440] (0: "
     "off)"),
])
def test_bad_config_value_is_one_line_naming_the_field(shards, tmp_path, capsys, flag, value,
                                                       said):
    """Values past what the kernels, torch or the loader take are refused as read: each of
    these crashed (a 1e30 window corrupted the CPU kernel's heap), raised an overflow from
    torch (an infinite timeout on several ranks too), or hung (a huge prefetch filled memory
    with requests)."""
    code = main(["train", "--data.shards", str(shards), flag, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"w2vdist: config: {said}"


def test_integers_are_read_exactly_and_integral_numbers_as_integers(shards, tmp_path, capsys):
    """A seed of 17 digits was read through a float, which rounded it to another seed."""
    assert main(["train", "--dry-run", "--data.shards", str(shards), "--train.run_dir",
                 str(tmp_path / "r"), "--train.seed", "12345678901234567",
                 "--optim.batch_words", "1e3"]) == 0
    out = capsys.readouterr().out
    assert '"seed": 12345678901234567' in out and '"batch_words": 1000' in out
    assert main(["train", "--data.shards", str(shards), "--optim.batch_words", "1000.5"]) == 2
    assert capsys.readouterr().err == ("w2vdist: config: optim.batch_words must be an integer "
                                       "(got '1000.5')\n")


def test_a_run_directory_that_is_a_file_is_refused_by_name(shards, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    assert main(["train", "--data.shards", str(shards), "--train.run_dir", str(taken)]) == 2
    assert capsys.readouterr().err == f"w2vdist: {taken}: a file, where the run needs a directory\n"
    assert taken.read_text() == "mine\n"


def test_missing_shards_directory_is_a_usage_error(tmp_path, capsys):
    code = main(["train", "--data.shards", str(tmp_path / "nope")])
    assert code == 2 and "manifest.json: not found" in capsys.readouterr().err


def test_checkpoints_are_scored_and_logged_when_eval_files_are_set(shards, tmp_path):
    analogies = tmp_path / "analogies.txt"
    analogies.write_text(": section\nw1 w2 w3 w4\nw5 w6 w7 w8\n")
    similarity = tmp_path / "similarity.tsv"
    similarity.write_text("w1\tw2\t5\nw3\tw9\t1\nw4\tw8\t3\n")
    other = tmp_path / "other-pairs.txt"  # a second file: its scores named after it
    other.write_text("w2 w3 1\nw5 w9 4\nw1 w7 2\nw4 w6 3\n")
    run = tmp_path / "run"
    cfg = config(shards, run, eval={"analogies": str(analogies),
                                    "similarity": f"{similarity},{other}"},
                 checkpoint={"every_steps": 50})
    cfg.train.max_steps = 100
    assert train(cfg) == 0
    cfg.train.max_steps = 0  # resumed to the end: the untrained scores are not logged again
    assert train(cfg) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in rows if "analogy/total" in r]
    assert [r["step"] for r in scored] == [0, 50, 100, 138]  # untrained, then checkpoints
    assert all(0 <= r["analogy/total"] <= 1 and "similarity/spearman" in r for r in scored)
    assert all(r["similarity:other-pairs/pairs"] == 4 and r["similarity/pairs"] == 3
               for r in scored)


@pytest.mark.parametrize("problem", ["missing", "malformed"])
def test_an_eval_file_that_cannot_be_scored_stops_the_run_before_it_trains(shards, tmp_path,
                                                                           problem):
    """Rank 0 reads the eval files as the run starts, not first at a checkpoint: nothing is
    trained or saved, and the error names the file."""
    analogies = tmp_path / "analogies.txt"
    if problem == "malformed":
        analogies.write_text("w1 w2 w3 w4\n")  # a question before any ': section' line
    run = tmp_path / "run"
    cfg = config(shards, run, eval={"analogies": str(analogies)},
                 checkpoint={"every_steps": 50})
    expected = ("file not found" if problem == "missing"
                else "1: question before the first ': section' line")
    with pytest.raises(UsageError, match=f"^{re.escape(str(analogies))}:.*{expected}"):
        train(cfg)
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()


def test_the_loaders_wait_and_the_trainers_hand_over_are_logged_apart(shards, tmp_path,
                                                                    monkeypatch):
    """`loader_wait_share` says when the loader bounds a run, `handover_share` when the
    trainer's own cutting of its chunks into batches does: a loader held up 100 ms a chunk
    (two batches), or a hand-over held up 50 ms a batch, against steps of a few milliseconds,
    takes most of every interval, each in its own share and not in the other's."""
    def shares(run: Path) -> list[tuple[float, float]]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["loader_wait_share"], r["handover_share"]) for r in rows if "loss" in r]

    settings = {"train": {"max_steps": 40, "log_every_seconds": 0.2},
                "data": {"loader_workers": 0}}  # the loader's chunks read in this process
    monkeypatch.setattr(chunks_module, "MIX_WORDS", 500)  # chunks of one sample, two batches
    assert train(config(shards, tmp_path / "plain", **settings)) == 0
    chunks, batches = ShardChunks.__iter__, TokenBatches.__iter__

    def slow_loader(self: ShardChunks):
        for chunk in chunks(self):
            time.sleep(0.1)
            yield chunk

    def slow_handover(self: TokenBatches):
        for batch in batches(self):
            time.sleep(0.05)
            yield batch

    monkeypatch.setattr(ShardChunks, "__iter__", slow_loader)
    assert train(config(shards, tmp_path / "loader", **settings)) == 0
    monkeypatch.setattr(ShardChunks, "__iter__", chunks)
    monkeypatch.setattr(TokenBatches, "__iter__", slow_handover)
    assert train(config(shards, tmp_path / "handover", **settings)) == 0
    plain = shares(tmp_path / "plain")
    loader, handover = shares(tmp_path / "loader"), shares(tmp_path / "handover")
    assert len(loader) >= 3 and all(0.7 < w <= 1 and h < 0.2 for w, h in loader), loader
    assert len(handover) >= 3 and all(w < 0.2 and 0.7 < h <= 1 for w, h in handover), handover
    assert plain and all(w < min(w for w, _ in loader) for w, _ in plain), plain
    assert all(h < min(h for _, h in handover) for _, h in plain), plain


@pytest.mark.parametrize("backend", ["torch", "cpu-kernel"])
def test_a_diverging_run_stops_with_an_error_and_saves_no_bad_tables(shards, tmp_path, backend):
    """A learning rate far too large turns the tables to NaN: the run must stop non-zero, name
    the cause, and leave no checkpoint of non-finite tables behind."""
    run = tmp_path / "run"
    code = main(["train", "--data.shards", str(shards), "--train.run_dir", str(run),
                 "--train.backend", backend, "--optim.alpha", "1000", "--optim.damping", "0",
                 "--train.threads", "1", "--data.loader_workers", "0", "--wandb", "disabled"])
    assert code == 3
    for step in checkpoint.complete_steps(run):
        tables = torch.load(step / "tables.pt", weights_only=True)
        assert all(torch.isfinite(t).all() for t in tables.values()), step


def test_a_run_whose_loss_climbs_far_above_an_untrained_model_stops(shards, tmp_path, capsys):
    """Undamped 16,384-word torch steps at alpha 0.3 run away: the loss stays finite but
    climbs past 1e20 (it exited 0 before); the run must stop non-zero and say why."""
    run = tmp_path / "run"
    code = main(["train", "--data.shards", str(shards), "--train.run_dir", str(run),
                 "--train.backend", "torch", "--optim.alpha", "0.3", "--optim.damping", "0",
                 "--optim.batch_words", "16384", "--train.threads", "1",
                 "--data.loader_workers", "0", "--wandb", "disabled"])
    assert code == 3
    assert "times an untrained model's 4.16" in capsys.readouterr().err
    assert not checkpoint.complete_steps(run)


def test_a_run_that_ends_above_an_untrained_models_loss_is_warned_of(shards, tmp_path,
                                                                      capsys):
    """Damping keeps a rate of 10 finite, so the run ends normally, its loss above an untrained
    model's (6.8 against 4.16 here): it must say its vectors learned nothing. At the default
    rate the run trains (2.6 after 3 epochs) and says nothing."""
    args = ["--train.backend", "torch", "--train.threads", "1", "--data.loader_workers", "0",
            "--wandb", "disabled"]
    for run, settings in (("wild", ["--optim.alpha", "10", "--train.epochs", "1"]),
                          ("plain", ["--train.epochs", "3"])):
        assert main(["train", "--data.shards", str(shards), "--train.run_dir",
                     str(tmp_path / run), *settings, *args]) == 0
        err = capsys.readouterr().err
        warned = re.search(r"the loss per pair ended at [\d.]+, above an untrained model's "
                           r"4\.16: these vectors have likely learned nothing", err)
        assert bool(warned) == (run == "wild"), err[-2000:]


def test_settings_that_cannot_be_finite_are_refused():
    with pytest.raises(UsageError, match="optim.alpha"):
        from_dict(Config, {"optim": {"alpha": float("inf")}})
    with pytest.raises(UsageError, match="sync.curvature_weight"):
        from_dict(Config, {"sync": {"curvature_weight": float("nan")}})


def test_saved_config_is_the_resolved_spec_with_no_placeholders(shards, tmp_path):
    run = tmp_path / "run"
    code = main(["train", "--data.shards", str(shards), "--train.run_dir", str(run),
                 "--train.epochs", "1", "--wandb.mode", "auto", "--data.loader_workers", "0"])
    assert code == 0
    saved = flatten(json.loads((run / "config.json").read_text()))
    assert saved["train.backend"] == "cpu-kernel" and saved["train.device"] == "cpu"
    assert saved["wandb.mode"] in ("online", "offline", "disabled")
    for key in ("train.threads", "train.max_steps", "optim.batch_words", "sync.every_steps",
                "sync.hot_every_steps", "run.world_size", "run.total_steps"):
        assert saved[key] > 0, key
    assert "auto" not in saved.values()
    assert saved["optim.alpha"] > 0 and saved["optim.damping"] >= 0
    # The step folder carries the same spec.
    assert flatten(checkpoint_info(run)["config"])["train.backend"] == "cpu-kernel"


def test_resume_under_another_resolved_backend_is_refused_naming_it(shards, tmp_path):
    run = tmp_path / "run"
    assert train(config(shards, run, train={"backend": "auto", "max_steps": 5})) == 0
    with pytest.raises(UsageError, match=r"train\.backend 'cpu-kernel' -> 'torch'"):
        train(config(shards, run, train={"backend": "torch"}))


@pytest.mark.parametrize("flag", ["--model.d", "--model.dimm"])
def test_abbreviated_or_misspelt_flags_are_refused_with_a_suggestion(shards, capsys, flag):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--data.shards", str(shards), flag, "60"])
    err = capsys.readouterr().err
    assert exit.value.code == 2
    assert f"unknown flag {flag}; did you mean --model.dim?" in err and len(err.splitlines()) == 1


def test_unknown_config_file_key_and_syntax_errors_name_their_place(shards, tmp_path, capsys):
    bad_key = tmp_path / "key.yaml"
    bad_key.write_text("model:\n  dimm: 30\n")
    assert main(["train", "--config", str(bad_key), "--data.shards", str(shards)]) == 2
    assert "unknown key model.dimm; did you mean model.dim?" in capsys.readouterr().err
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model:\n  dim: [30\n")
    assert main(["train", "--config", str(bad_yaml)]) == 2
    assert f"{bad_yaml}:3:1: not valid YAML: expected ',' or ']'" in capsys.readouterr().err
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[model]\ndim = = 3\n")
    assert main(["train", "--config", str(bad_toml)]) == 2
    assert "line 2, column 7" in capsys.readouterr().err
    numbered = tmp_path / "numbered.yaml"  # YAML keys need not be strings
    numbered.write_text("model:\n  dim: 30\n  3: x\n")
    assert main(["train", "--config", str(numbered)]) == 2
    assert "unknown key model.3 (known: dim, negative" in capsys.readouterr().err
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"model:\n  dim: 30  # caf\xe9\n")
    assert main(["train", "--config", str(latin)]) == 2
    assert capsys.readouterr().err == f"w2vdist: {latin}:2: not valid UTF-8\n"


def test_help_says_what_each_setting_means_and_its_allowed_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--train.backend {auto,torch,cpu-kernel,triton}" in text
    assert "subsampling threshold of frequent words (0: none); default: 0.0001" in text
    assert "--model.share_negatives {centre,pair,chunk}" in text
