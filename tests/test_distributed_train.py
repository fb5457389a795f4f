"""`w2vdist train` under real torchrun process groups (gloo on CPU): uneven shards, resume,
preemption signals, worker restarts, and one W&B run across segments."""

from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import shutil
import torch
import webdataset as wds

from tests.helpers import (
    checkpoint_info, free_port, offline_runs, prepare, write_zipf_corpus,
)
from w2vdist.training import checkpoint
from w2vdist.corpus.shards import Manifest, ShardInfo, decode_sample, encode_sample

ROOT = Path(__file__).resolve().parent.parent


def torchrun_cmd(nproc: int, *args: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "--signals-to-handle=SIGTERM,SIGINT,SIGUSR1",
        *extra, "-m", "w2vdist", "train", *args,
    ]


def train_args(shards: Path, run_dir: Path, *more: str) -> list[str]:
    return [
        "--data.shards", str(shards), "--train.run_dir", str(run_dir),
        "--data.loader_workers", "1", "--model.dim", "16", "--optim.batch_words", "400",
        "--train.epochs", "2", "--train.backend", "torch", "--train.threads", "1",
        "--checkpoint.every_minutes", "0", "--wandb", "disabled", *more,
    ]


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("WANDB_MODE", None)
    return e


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    return prepare(write_zipf_corpus(root / "corpus.txt", 2400, seed=1), root / "shards", 6000)


@pytest.fixture(scope="module")
def uneven(shards, tmp_path_factory) -> Path:
    """The same corpus re-packed into three shards of very different sizes (70/25/5%)."""
    out = tmp_path_factory.mktemp("uneven")
    manifest = Manifest.load(shards)
    samples = [
        decode_sample(s)
        for s in wds.WebDataset(manifest.shard_paths(shards), shardshuffle=False, empty_check=False)
    ]
    sentences = [t for tokens, lengths in samples for t in np.split(tokens, np.cumsum(lengths)[:-1])]
    bounds = np.searchsorted(np.cumsum([len(s) for s in sentences]),
                             [0.7 * manifest.total_tokens, 0.95 * manifest.total_tokens])
    infos = []
    for i, part in enumerate(np.split(np.arange(len(sentences)), bounds)):
        name = f"shard-{i:06d}.tar"
        chunk = [sentences[j] for j in part]
        with wds.TarWriter(str(out / name)) as writer:
            writer.write(encode_sample(f"{i}", np.concatenate(chunk), np.array([len(c) for c in chunk])))
        infos.append(ShardInfo(name, int(sum(len(c) for c in chunk)), 1))
    shutil.copyfile(shards / "vocab.tsv", out / "vocab.tsv")
    Manifest(manifest.vocab_size, manifest.total_tokens, infos, manifest.vocab_hash).save(out)
    assert infos[0].tokens > 10 * infos[2].tokens
    return out


def test_two_ranks_on_three_uneven_shards_finish_with_the_planned_words(uneven, tmp_path):
    result = run(torchrun_cmd(2, *train_args(uneven, tmp_path / "run")))
    assert result.returncode == 0, result.stderr[-3000:]
    total = json.loads((uneven / "manifest.json").read_text())["total_tokens"]
    words = checkpoint_info(tmp_path / "run")["words"]
    # Each epoch covers the corpus, overshooting by less than one global step (2 x 400 words).
    assert 2 * total <= words < 2 * (total + 800)
    # The saved config is the resolved spec of the 2-rank run: no auto or 0-means-default.
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["run"]["world_size"] == 2 and saved["run"]["words_per_step"] == 800
    assert saved["train"]["device"] == "cpu" and saved["train"]["threads"] == 1
    assert saved["train"]["max_steps"] == saved["run"]["total_steps"] > 0
    assert saved["sync"]["every_steps"] > 0 and saved["sync"]["hot_every_steps"] > 0
    assert "auto" not in json.dumps(saved)
    # Each rank's share of a step follows its tokens (70% and 30%), so both pass through their
    # own data twice, overshooting by less than a step; equal shares would have read 1.4 and
    # 3.3 times. (A position counts chunks of samples, then tokens into the chunk: every chunk
    # here, at least 1M words, is longer than the run.)
    shares = saved["run"]["rank_words"]
    assert sum(shares) == 800 and shares[0] == round(800 * infos_share(uneven, 0))
    data = checkpoint_info(tmp_path / "run")["data"]
    first = json.loads((uneven / "manifest.json").read_text())["shards"][0]["tokens"]
    for rank, tokens in enumerate((first, total - first)):
        sample, offset = data[rank][:2]
        assert sample == 0 and 2 * tokens <= offset < 2 * tokens + 2 * shares[rank]


def infos_share(shards: Path, index: int) -> float:
    manifest = json.loads((shards / "manifest.json").read_text())
    return manifest["shards"][index]["tokens"] / manifest["total_tokens"]


def test_fewer_shards_than_ranks_is_refused_before_training(tmp_path):
    one = prepare(write_zipf_corpus(tmp_path / "c.txt", 200), tmp_path / "one", 10**9)
    start = time.monotonic()
    result = run(torchrun_cmd(2, *train_args(one, tmp_path / "run")), timeout=120)
    assert result.returncode != 0
    assert "1 shard(s) for 2 ranks" in result.stderr
    assert time.monotonic() - start < 90
    assert not checkpoint.complete_steps(tmp_path / "run")


def tables(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    _, w_in, w_out = checkpoint.load_tables(run_dir)
    return w_in, w_out


def test_two_rank_exact_run_resumed_equals_uninterrupted(shards, tmp_path):
    full = run(torchrun_cmd(2, *train_args(shards, tmp_path / "full")))
    assert full.returncode == 0, full.stderr[-3000:]
    # The split run's periodic checkpoints are written in the background, as on GPUs.
    saves = ("--checkpoint.every_steps", "4", "--checkpoint.background")
    part = run(torchrun_cmd(2, *train_args(shards, tmp_path / "split", "--train.max_steps", "9",
                                           *saves)))
    assert part.returncode == 0, part.stderr[-3000:]
    assert [p.name for p in checkpoint.complete_steps(tmp_path / "split")] == [
        checkpoint.step_name(9), checkpoint.step_name(8)]
    rest = run(torchrun_cmd(2, *train_args(shards, tmp_path / "split", *saves)))
    assert rest.returncode == 0, rest.stderr[-3000:]
    for a, b in zip(tables(tmp_path / "full"), tables(tmp_path / "split")):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_run_goes_on_over_another_number_of_ranks(shards, tmp_path):
    """A job requeued on more nodes, then an elastic restart on fewer: 2 ranks, then 3 (a
    rank the checkpoint has no state for), then one process finish the run 2 ranks planned,
    its steps, learning rate and W&B run going on; each new world's ranks first read their
    share of what the ranks before had not read of the epoch (`test_redeal`), then their own
    shards (a position counts tokens into a chunk here: every chunk outlasts the run)."""
    run_dir = tmp_path / "run"
    args = train_args(shards, run_dir, "--wandb", "offline", "--sync.strategy", "local")
    first = run(torchrun_cmd(2, *args, "--train.max_steps", "20"))
    assert first.returncode == 0, first.stderr[-3000:]
    started = checkpoint_info(run_dir)
    planned, words_per_step = started["total_steps"], 2 * 400

    plan = run(torchrun_cmd(3, *args, "--dry-run"))  # what a resize will do, before it does
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "at step 20 (epoch 1), saved on 2 rank(s)" in plan.stdout
    owed = [int(m.replace(",", "")) for m in re.findall(
        r"first about ([\d,]+) tokens of epoch 1 the ranks before had not read", plan.stdout)]
    assert len(owed) == 3 and all(owed)
    assert checkpoint_info(run_dir)["step"] == 20  # nothing trained

    second = run(torchrun_cmd(3, *args, "--train.max_steps", "50"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert ("resuming on 3 rank(s) a run saved on 2 at step 20: its 800 words a step are "
            "shared out anew") in second.stderr, second.stderr[-3000:]
    middle = checkpoint_info(run_dir)
    assert (middle["step"], middle["world_size"], middle["total_steps"]) == (50, 3, planned)
    shares = json.loads((run_dir / "config.json").read_text())["run"]["rank_words"]
    assert sum(shares) == words_per_step and len(shares) == 3
    assert [offset for _, offset, *_ in middle["data"]] == [30 * w for w in shares]
    epoch = 20 // (planned // 2)  # of 2
    assert [(s.tag, s.base) for s in middle["streams"]] == \
        [(f"{r}/3@20", epoch + 1) for r in range(3)]
    assert all(s.owed for s in middle["streams"])
    assert middle["config"]["optim"]["batch_words"] == 400  # as the run began
    assert middle["config"]["optim"]["alpha"] == started["config"]["optim"]["alpha"]

    last = subprocess.run([sys.executable, "-m", "w2vdist", "train", *args], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=240)
    assert last.returncode == 0, last.stderr[-3000:]
    done = checkpoint_info(run_dir)
    assert (done["step"], done["world_size"]) == (planned, 1)
    assert done["words"] == planned * words_per_step
    assert [offset for _, offset, *_ in done["data"]] == [(planned - 50) * words_per_step]
    assert [s.tag for s in done["streams"]] == ["0/1@50"]
    runs = offline_runs(run_dir)
    assert len(runs) == 3 and {r["run"].run_id for r in runs} == {started["wandb_run_id"]}
    ends = [(min(r["rows"]), max(r["rows"])) for r in runs]
    assert ends[0][1] <= 20 < ends[1][0] <= ends[1][1] <= 50 < ends[2][0]
    last_rows = [r["rows"][max(r["rows"])] for r in runs]
    assert [row["ranks"] for row in last_rows] == [2, 3, 1]
    lr = [row["lr"] for row in last_rows]
    assert lr == sorted(lr, reverse=True)  # one line down across the three worlds


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited early with {proc.returncode}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


def _metrics_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def test_sigterm_checkpoints_and_a_second_launch_finishes(shards, tmp_path):
    """SIGTERM to torchrun, as `kill` or a scheduler sends it. SIGUSR1, which SLURM sends
    ahead of a time limit, takes the same path from torchrun on: test_slurm sends it, and
    checks the requeued run against an uninterrupted one; SIGINT, test_launch_scripts."""
    run_dir = tmp_path / "run"
    # 520 steps: the signal comes after two 0.2 s metrics records, a few steps in.
    args = train_args(
        shards, run_dir, "--train.epochs", "10", "--train.log_every_seconds", "0.2",
        "--wandb", "offline",
    )
    proc = subprocess.Popen(
        torchrun_cmd(2, *args), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    _wait_for(lambda: len(_metrics_steps(run_dir)) >= 2, 120, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "stopping at step" in err
    stopped = checkpoint_info(run_dir)
    planned = checkpoint_info(run_dir)["total_steps"]
    assert 0 < stopped["step"] < planned

    again = run(torchrun_cmd(2, *args))
    assert again.returncode == 0, again.stderr[-3000:]
    done = checkpoint_info(run_dir)
    assert done["step"] == planned and done["words"] == planned * 2 * 400
    assert done["wandb_run_id"] == stopped["wandb_run_id"]
    runs = offline_runs(run_dir)
    assert len(runs) == 2 and {r["run"].run_id for r in runs} == {stopped["wandb_run_id"]}
    first, second = (r["rows"] for r in runs)
    assert max(first) <= stopped["step"] < min(second)
    for key in ("loss", "lr", "words_per_s", "pairs_per_s", "epoch", "sync_time_share",
                "loader_wait_share", "checkpoint_time_share"):
        assert key in first[max(first)] and key in second[max(second)]
    assert runs[0]["config"]["model"]["dim"] == 16


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _kill_one_worker(shards: Path, run_dir: Path, extra: tuple[str, ...], env: dict[str, str]):
    """Start 2 ranks under torchrun, SIGKILL rank 1 after the first checkpoint, wait for the
    end; return torchrun's exit code and stderr."""
    args = train_args(shards, run_dir, "--train.epochs", "12", "--checkpoint.every_steps", "20")
    proc = subprocess.Popen(
        torchrun_cmd(2, *args, extra=extra), cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _wait_for(lambda: bool(checkpoint.complete_steps(run_dir)), 120, proc)
        workers = [
            c for c in _children(proc.pid)
            if b"w2vdist" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Restarted workers run in sessions of their own: find them by their run directory.
        subprocess.run(["pkill", "-9", "-f", str(run_dir)], check=False)


def test_when_a_worker_dies_the_survivor_logs_and_exits_by_itself(shards, tmp_path):
    code, err = _kill_one_worker(shards, tmp_path / "run", (), env())
    assert code != 0
    assert "rank 0 on" in err and "failed" in err, err[-3000:]
    # torchrun SIGTERMs the survivor and SIGKILLs it if it is still there after 30 s: a rank
    # left waiting on its loader workers at exit would be "forcefully" killed.
    assert "forcefully" not in err, err[-3000:]


def test_killed_worker_is_restarted_by_torchrun_and_resumes(shards, tmp_path):
    run_dir = tmp_path / "run"
    fresh_store = dict(env(), TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    code, err = _kill_one_worker(shards, run_dir, ("--max-restarts=3",), fresh_store)
    assert code == 0, err[-3000:]
    assert "resuming from" in err and "forcefully" not in err, err[-3000:]
    meta = checkpoint_info(run_dir)
    assert meta["step"] == meta["total_steps"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_an_elastic_torchrun_goes_on_with_the_nodes_left(shards, tmp_path):
    """`torchrun --nnodes 1:2` on two "nodes" (two agents meeting at a c10d rendezvous on
    localhost): one node dies after a checkpoint, the survivor's worker fails on the broken
    collective, its agent meets again with the one node left and the run finishes there."""
    run_dir = tmp_path / "run"
    args = train_args(shards, run_dir, "--train.epochs", "30", "--checkpoint.every_steps",
                      "300", "--sync.timeout_seconds", "30")
    port = free_port()
    elastic = ("--nnodes=1:2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
               "--rdzv-id=elastic", "--max-restarts=2",
               # the dead node is dropped from the rendezvous after 5 s without its heartbeat
               "--rdzv-conf=last_call_timeout=3,keep_alive_interval=1,keep_alive_max_attempt=5")
    cmd = [c for c in torchrun_cmd(1, *args, extra=elastic) if c != "--standalone"]
    fresh_store = dict(env(), TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    agents = []
    try:
        for _ in range(2):  # the first hosts the rendezvous store, and survives
            agents.append(subprocess.Popen(cmd, cwd=ROOT, env=fresh_store, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           start_new_session=True))
            _wait_for(lambda: _listening(port), 60, agents[0])
        _wait_for(lambda: bool(checkpoint.complete_steps(run_dir)), 120, agents[0])
        assert checkpoint_info(run_dir)["world_size"] == 2
        for pid in (*_children(agents[1].pid), agents[1].pid):  # the node and its worker
            os.kill(pid, signal.SIGKILL)
        _, err = agents[0].communicate(timeout=240)
    finally:
        for agent in agents:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait()
        subprocess.run(["pkill", "-9", "-f", str(run_dir)], check=False)
    assert agents[0].returncode == 0, err[-3000:]
    assert "resuming on 1 rank(s) a run saved on 2 at step" in err, err[-3000:]
    done = checkpoint_info(run_dir)
    assert (done["step"], done["world_size"]) == (done["total_steps"], 1)


def test_restarts_with_torchruns_shared_store_are_refused(shards, tmp_path):
    args = train_args(shards, tmp_path / "run")
    out = run(torchrun_cmd(2, *args, extra=("--max-restarts=1",)))
    assert out.returncode != 0
    assert "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in out.stderr, out.stderr[-3000:]
    assert not (tmp_path / "run").exists()


def test_local_full_merges_are_spaced_out_when_they_take_too_long(shards, tmp_path):
    """sync.merge_time_share: full merges that take more than the share of the ranks' time
    are made less often, the same on every rank (the decision rides on the control
    all-reduce), and the run still ends with identical tables."""
    run_dir = tmp_path / "run"
    done = run(torchrun_cmd(2, *train_args(
        shards, run_dir, "--sync.strategy", "local", "--train.backend", "cpu-kernel",
        "--sync.every_steps", "1", "--sync.hot_rows", "0", "--sync.control_every_steps", "2",
        "--sync.merge_time_share", "0.0001",
    )))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    spaced = [line for line in lines if "the whole tables now merge every" in line]
    assert spaced, done.stderr[-3000:]
    every = [int(line.split("merge every ")[1].split()[0]) for line in spaced]
    assert every == sorted(every) and every[0] > 1
    assert checkpoint_info(run_dir)["config"]["sync"]["merge_time_share"] == 0.0001
