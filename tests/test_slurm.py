"""The sbatch scripts on a real one-node SLURM cluster: prepare, train on CPU workers (gloo),
preemption by USR1 with requeue and exact resume, and the multi-node srun + c10d path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from benchmarks.prepare_parts import tokens_and_lengths
from tests.slurm_cluster import SlurmCluster
from tests.helpers import checkpoint_info, offline_runs
from w2vdist.corpus.shards import Manifest
from w2vdist.training import checkpoint
from w2vdist.cli import main

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parent.parent
SLURM = ROOT / "slurm"
# Small CPU settings: 2 gloo workers, 8 shards, about 300 steps (a few seconds).
TRAIN_ARGS = (
    "--model.dim", "16", "--optim.batch_words", "400", "--train.epochs", "4",
    "--train.backend", "torch", "--train.threads", "1", "--data.loader_workers", "0",
    "--checkpoint.every_minutes", "0", "--train.log_every_seconds", "0.2",
)
# sbatch options that fit the test node: no GPU, its 2 cores, little memory.
CPU_NODE = ("--gpus-per-node=0", "--mem=1G")


def job_env(**settings: str) -> dict[str, str]:
    """The script variables of one job, plus the interpreter running the tests."""
    return {"PYTHON": sys.executable, "CPU_WORKERS": "2", "WANDB": "disabled",
            "PYTHONUNBUFFERED": "1", **settings}


def submit(cluster: SlurmCluster, script: str, tmp: Path, *args: str,
           options: tuple[str, ...] = CPU_NODE, **settings: str) -> int:
    return cluster.sbatch(SLURM / script, *args, cwd=ROOT, env=job_env(**settings),
                          options=(f"--output={tmp}/%x-%j.out", *options))


def job_log(tmp: Path, job_id: int) -> str:
    (path,) = tmp.glob(f"*-{job_id}.out")
    return path.read_text()


def finished(cluster: SlurmCluster, job_id: int, tmp: Path) -> dict[str, str]:
    job = cluster.wait(job_id)
    assert job["JobState"] == "COMPLETED", job_log(tmp, job_id)[-4000:]
    return job


@pytest.fixture(scope="module")
def shards(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards written by slurm/prepare.sbatch, where the training scripts are told to read."""
    tmp = tmp_path_factory.mktemp("slurm-data")
    assert main(["synth", str(tmp / "synth"), "--sentences", "6000", "--seed", "1"]) == 0
    job = submit(
        slurm_cluster, "prepare.sbatch", tmp, "--min-count", "2", "--shard-tokens", "8000",
        "--block-tokens", "1000", options=("--cpus-per-task=2", "--mem=1G"),
        CORPUS=str(tmp / "synth" / "corpus*.txt"), SHARDS=str(tmp / "shards"),
    )
    finished(slurm_cluster, job, tmp)
    assert "with 2 workers" in job_log(tmp, job)
    assert len(json.loads((tmp / "shards" / "manifest.json").read_text())["shards"]) == 8
    return tmp / "shards"


@pytest.fixture(scope="module")
def uninterrupted(slurm_cluster: SlurmCluster, shards: Path, tmp_path_factory) -> Path:
    """slurm/train.sbatch on CPU workers, run to the end: the reference run directory."""
    tmp = tmp_path_factory.mktemp("slurm-train")
    run_dir = tmp / "run"
    job = submit(slurm_cluster, "train.sbatch", tmp, *TRAIN_ARGS,
                 SHARDS=str(shards), RUN_DIR=str(run_dir))
    finished(slurm_cluster, job, tmp)
    assert "2 worker(s), 0 GPU(s)" in job_log(tmp, job)
    return run_dir


def test_train_sbatch_on_cpu_workers_trains_and_exports_for_gensim(uninterrupted, tmp_path):
    done = checkpoint_info(uninterrupted)
    assert done["world_size"] == 2 and done["step"] == done["total_steps"] > 0
    vectors = tmp_path / "vectors.bin"
    assert main(["export", str(uninterrupted), "-o", str(vectors), "--format", "binary"]) == 0
    kv = KeyedVectors.load_word2vec_format(str(vectors), binary=True)
    vocab, table, _ = checkpoint.load_tables(uninterrupted)
    assert kv.index_to_key == vocab.words and kv.vector_size == 16
    torch.testing.assert_close(torch.from_numpy(kv.vectors), table)


def test_usr1_checkpoints_requeues_and_ends_as_an_uninterrupted_run(
    slurm_cluster, shards, uninterrupted, tmp_path
):
    run_dir = tmp_path / "run"
    job = submit(slurm_cluster, "train.sbatch", tmp_path, *TRAIN_ARGS,
                 SHARDS=str(shards), RUN_DIR=str(run_dir), WANDB="offline")
    metrics = run_dir / "metrics.jsonl"
    slurm_cluster.wait(job, lambda j: metrics.exists() and len(metrics.read_text().split()) >= 2
                       or j["JobState"] != "RUNNING" and j["JobState"] != "PENDING")
    # What SLURM does ahead of a time limit with --signal=B:USR1: signal the batch shell only.
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", str(job))
    job_state = finished(slurm_cluster, job, tmp_path)

    log = job_log(tmp_path, job)
    assert job_state["Restarts"] == "1", log[-4000:]
    assert "got USR1" in log and f"requeueing job {job}" in log
    stopped_at = int(log.split("stopping at step ")[1].split()[0])
    assert f"resuming from {run_dir}/checkpoints/step-{stopped_at:09d}" in log
    reference, done = checkpoint_info(uninterrupted), checkpoint_info(run_dir)
    assert 0 < stopped_at < done["total_steps"]
    assert done["words"] == reference["words"] == done["total_steps"] * 2 * 400
    for ours, theirs in zip(checkpoint.load_tables(run_dir)[1:],
                            checkpoint.load_tables(uninterrupted)[1:]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    # One W&B run across both segments: two offline segments with the checkpoint's run id.
    run_id = checkpoint_info(run_dir)["wandb_run_id"]
    runs = offline_runs(run_dir)
    assert len(runs) == 2 and {r["run"].run_id for r in runs} == {run_id}
    assert max(runs[0]["rows"]) <= stopped_at < min(runs[1]["rows"])


def test_multinode_sbatch_on_one_node_goes_through_srun_and_c10d(
    slurm_cluster, shards, uninterrupted, tmp_path
):
    run_dir = tmp_path / "run"
    job = submit(slurm_cluster, "train-multinode.sbatch", tmp_path, *TRAIN_ARGS,
                 options=(*CPU_NODE, "--nodes=1"), SHARDS=str(shards), RUN_DIR=str(run_dir))
    finished(slurm_cluster, job, tmp_path)
    log = job_log(tmp_path, job)
    node = slurm_cluster.node
    assert "running: srun --nodes=1 --ntasks-per-node=1 --cpus-per-task=" in log
    assert f"--rdzv-backend c10d --rdzv-endpoint {node}:{20000 + job % 20000}" in log
    assert f"--rdzv-id {job}" in log
    done = checkpoint_info(run_dir)
    assert done["world_size"] == 2 and done["step"] == done["total_steps"]
    for ours, theirs in zip(checkpoint.load_tables(run_dir)[1:],
                            checkpoint.load_tables(uninterrupted)[1:]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_prepare_multinode_sbatch_writes_what_one_prepare_of_the_whole_writes(
    slurm_cluster, tmp_path
):
    """Two tasks (on the one test node) count, prepare and join their parts of three files."""
    assert main(["synth", str(tmp_path / "synth"), "--sentences", "3000", "--seed", "2"]) == 0
    lines = (tmp_path / "synth" / "corpus.txt").read_text().splitlines(keepends=True)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for k in range(3):
        (corpus / f"part-{k}.txt").write_text("".join(lines[k * 1000 : (k + 1) * 1000]))
    flags = ("--min-count", "2", "--shard-tokens", "8000", "--block-tokens", "1000")
    job = submit(slurm_cluster, "prepare-multinode.sbatch", tmp_path, *flags,
                 options=("--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--mem=1G"),
                 CORPUS=str(corpus), SHARDS=str(tmp_path / "shards"))
    finished(slurm_cluster, job, tmp_path)
    log = job_log(tmp_path, job)
    assert "in 2 part(s) of 1 worker(s)" in log and log.count("launcher exited with status 0") == 2
    assert not list(tmp_path.glob("shards.parts-*"))  # the parts are gone once joined
    assert main(["prepare", str(corpus), "-o", str(tmp_path / "whole"), "--workers", "1",
                 *flags]) == 0
    ours, theirs = tmp_path / "shards", tmp_path / "whole"
    assert (ours / "vocab.tsv").read_bytes() == (theirs / "vocab.tsv").read_bytes()
    assert [p.name for p in map(Path, Manifest.load(ours).stats["paths"])] == \
        [f"part-{k}.txt" for k in range(3)]
    for mine, one in zip(tokens_and_lengths(ours), tokens_and_lengths(theirs)):
        assert np.array_equal(mine, one)
