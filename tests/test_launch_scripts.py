"""The shell launchers: shellcheck, what launch/setup.sh installs, the shared logic of
launch/common.sh, launch/torchrun.sh on one machine and as two c10d "nodes", and the
quickstart pipeline."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gensim.models import KeyedVectors

from tests.helpers import checkpoint_info, free_port, prepare, write_zipf_corpus
from w2vdist.training import checkpoint

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash") or "/bin/bash"
SCRIPTS = sorted([*ROOT.glob("slurm/*.sbatch"), *ROOT.glob("launch/*.sh"), ROOT / ".ci/run"])
TRAIN_ARGS = (
    "--model.dim", "16", "--optim.batch_words", "400", "--train.backend", "torch",
    "--train.threads", "1", "--data.loader_workers", "0", "--checkpoint.every_minutes", "0",
)


def test_every_shell_script_passes_shellcheck(shellcheck):
    assert len(SCRIPTS) >= 8
    result = subprocess.run([shellcheck, "--external-sources", *map(str, SCRIPTS)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- launch/common.sh, sourced by a bash that prints what it computed ----------------------


def common(snippet: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SLURM_", "CUDA_", "GPUS_", "CONFIG", "SHARDS", "RUN_DIR"))}
    clean["PATH"] = "/nonexistent"  # no nvidia-smi: the GPU count comes from the variables
    result = subprocess.run([BASH, "-c", f"set -euo pipefail; source launch/common.sh; {snippet}"],
                            cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("env, cuda_wheel, pin", [
    ({}, False, True), ({"EXTRAS": "gpu,parquet", "EDITABLE": "0"}, False, True),
    ({"EXTRAS": "parquet"}, False, False), ({"TRITON_VERSION": ""}, False, False),
    ({}, True, False),  # torch's CUDA wheel requires its own Triton: no second pin to conflict
])
def test_setup_pins_torch_and_the_triton_its_cuda_wheel_requires(env, cuda_wheel, pin,
                                                                  tmp_path):
    """launch/setup.sh, run with an interpreter that records its pip commands: torch at its
    pin, then w2vdist with the extras asked for and, with Triton among them and none required
    by the torch installed, Triton pinned."""
    log = tmp_path / "pip.log"
    # The torch "installed": its metadata, first on the path of the real interpreter that
    # runs setup.sh's own Python.
    metadata = tmp_path / "site" / "torch-2.13.0.dist-info" / "METADATA"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n"
                        "Requires-Dist: filelock\n" + ('Requires-Dist: triton==3.7.1; '
                        'platform_system == "Linux"\n' if cuda_wheel else ""))  # fmt: skip
    python = tmp_path / "python"
    python.write_text('#!/usr/bin/env bash\n'
                      '[[ "$1" == -c && "$2" == *EXTERNALLY-MANAGED* ]] && exit 1\n'
                      f'[[ "$1" == -c ]] && PYTHONPATH={tmp_path / "site"} exec {sys.executable}'
                      ' "$@"\n'
                      f'[[ "$2" == pip ]] && printf "%s|" "${{@:3}}" >> {log} && echo >> {log}\n'
                      "exit 0\n")
    python.chmod(0o755)
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("TORCH_VERSION", "TRITON_VERSION", "EXTRAS", "EDITABLE")}
    subprocess.run([BASH, str(ROOT / "launch" / "setup.sh")], check=True, timeout=60,
                   env={**inherited, "PYTHON": str(python), **env})
    torch_install, package_install = [line.split("|")[:-1]
                                      for line in log.read_text().splitlines()]
    assert torch_install == ["install", "torch==2.13.0"]
    extras = env.get("EXTRAS", "dev")
    editable = ["-e"] if env.get("EDITABLE", "1") == "1" else []
    assert package_install == ["install", *editable, f"{ROOT}[{extras}]",
                               *(["triton==3.7.1; sys_platform == 'linux'"] if pin else [])]


@pytest.mark.parametrize("env, gpus", [
    ({}, "0"),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2"}, "3"),
    ({"CUDA_VISIBLE_DEVICES": ""}, "0"),
    ({"SLURM_JOB_ID": "7", "SLURM_GPUS_ON_NODE": "4"}, "4"),
    ({"SLURM_JOB_ID": "7"}, "0"),  # a job without GPUs uses none, whatever the node holds
    ({"GPUS_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, "2"),
])
def test_gpu_count_follows_the_allocation(env, gpus):
    assert common("w2v_gpu_count", **env) == gpus


def test_cpu_workers_share_the_node_cores():
    out = common('w2v_workers 2; echo "$W2V_GPUS $W2V_NPROC $OMP_NUM_THREADS"',
                 SLURM_JOB_ID="7", SLURM_CPUS_ON_NODE="16")
    assert out == "0 2 8"
    out = common('w2v_workers 3; echo "$W2V_GPUS $W2V_NPROC"', CUDA_VISIBLE_DEVICES="0,1")
    assert out == "2 2"


def test_torchrun_command_forwards_stop_signals_and_passes_only_the_settings_given():
    one = common('w2v_torchrun 1 4 "" "" --train.epochs 3; printf "%s\\n" "${W2V_CMD[@]}"',
                 SHARDS="/data/s", WANDB="offline", PYTHON="py").split("\n")
    assert one[:3] == ["py", "-m", "torch.distributed.run"]
    text = " ".join(one)
    assert "--nnodes 1 --nproc-per-node 4 --standalone" in text
    assert "--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1" in text
    assert "--shutdown-timeout 120 --max-restarts 0" in text
    assert text.endswith("-m w2vdist train --resume auto --data.shards /data/s --wandb offline "
                         "--train.epochs 3")
    assert "--config" not in text and "--train.run_dir" not in text
    many = " ".join(common(
        'w2v_torchrun 4 8 head:29400 42; echo "$TORCH_DISABLE_SHARE_RDZV_TCP_STORE ${W2V_CMD[@]}"',
        SHUTDOWN_TIMEOUT="250", MAX_RESTARTS="3").split())
    assert "--nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint head:29400 " \
           "--rdzv-id 42" in many
    assert "--standalone" not in many and "--shutdown-timeout 250 --max-restarts 3" in many
    assert many.startswith("1 ")  # restarted workers get a fresh rendezvous store


CHILD = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
open(sys.argv[1], "w").write(str(os.getpid()))
deadline = time.time() + 20
while not got and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.5)  # "writing the checkpoint"; a second forwarded signal would land here
sys.exit(75 if len(got) == 1 else 100 + len(got))
"""


def test_run_forwards_the_first_stop_signal_once_and_waits_for_the_exit_status(tmp_path):
    """The trap/wait loop: the child gets one USR1 however many arrive, and its status counts."""
    ready = tmp_path / "ready"
    script = (f'w2v_run {sys.executable} -c "$CHILD" {ready}; '
              'echo "status=$W2V_STATUS stopped=$W2V_STOPPED_BY"; '
              'SLURM_JOB_ID= w2v_requeue_if_stopped || echo "requeue returned $?"')
    proc = subprocess.Popen(
        ["bash", "-c", f"set -euo pipefail; source launch/common.sh; {script}"], cwd=ROOT,
        env={**os.environ, "CHILD": CHILD}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not ready.exists() or not ready.read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "status=75 stopped=USR1" in out
    assert "requeue returned 75" in out  # outside SLURM: nothing to requeue, the status stays
    assert "already stopping on USR1" in err and "not requeueing" in err


# --- launch/torchrun.sh with real training ---------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("launch")
    return prepare(write_zipf_corpus(root / "corpus.txt", 2400, seed=1), root / "shards", 6000)


def launcher_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "CUDA_VISIBLE", "GPUS_", "OMP_"))}
    return {**env, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1", "WANDB": "disabled",
            **settings}


def torchrun_sh(*args: str, **settings: str) -> subprocess.Popen:
    return subprocess.Popen(["bash", "launch/torchrun.sh", *args], cwd=ROOT,
                            env=launcher_env(**settings), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return err


def test_ctrl_c_checkpoints_and_the_same_command_resumes_to_the_end(shards, tmp_path):
    run_dir = tmp_path / "run"
    args = (*TRAIN_ARGS, "--train.epochs", "10", "--train.log_every_seconds", "0.2")
    proc = torchrun_sh(*args, NPROC="2", SHARDS=str(shards), RUN_DIR=str(run_dir))
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not metrics.exists() or len(metrics.read_text().split()) < 2:
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # A terminal's Ctrl-C reaches the script's process group; torchrun runs in its own
    # session, so it gets the signal once, from the script's trap.
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "no GPU: 2 CPU worker(s) (gloo), 1 thread(s) each" in err
    assert "got INT: asking training to checkpoint and stop" in err
    stopped = checkpoint_info(run_dir)
    assert 0 < stopped["step"] < stopped["total_steps"]

    err = finish(torchrun_sh(*args, NPROC="2", SHARDS=str(shards), RUN_DIR=str(run_dir)))
    assert f"at step {stopped['step']}" in err
    done = checkpoint_info(run_dir)
    assert done["step"] == done["total_steps"] and done["words"] == done["total_steps"] * 800


def test_two_agents_as_two_nodes_train_the_same_tables_as_one_node(shards, tmp_path):
    """`--nnodes 2 --nproc-per-node 1` over a c10d rendezvous on 127.0.0.1 trains exactly what
    one machine with two workers trains (both world size 2).

    Only rank 0 writes tables; exact sync keeps every rank's copy equal by construction."""
    args = (*TRAIN_ARGS, "--train.epochs", "2")
    one = torchrun_sh(*args, NPROC="2", SHARDS=str(shards), RUN_DIR=str(tmp_path / "one"))
    finish(one)
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [torchrun_sh(*args, NPROC="1", NNODES="2", RDZV_ENDPOINT=endpoint,
                         RDZV_ID="two-nodes", SHARDS=str(shards), RUN_DIR=str(tmp_path / "two"),
                         OMP_NUM_THREADS="1")
             for _ in range(2)]
    logs = [finish(node) for node in nodes]
    assert any(f"--rdzv-backend c10d --rdzv-endpoint {endpoint}" in log for log in logs)
    assert checkpoint_info(tmp_path / "two")["world_size"] == 2
    for two, one in zip(checkpoint.load_tables(tmp_path / "two")[1:],
                        checkpoint.load_tables(tmp_path / "one")[1:]):
        torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nnodes", ["2", "1:2"])  # a fixed count, an elastic range
def test_torchrun_sh_refuses_several_nodes_without_a_rendezvous(nnodes):
    result = subprocess.run(["bash", "launch/torchrun.sh"], cwd=ROOT,
                            env=launcher_env(NNODES=nnodes), capture_output=True, text=True)
    assert result.returncode == 2
    assert f"NNODES={nnodes} needs RDZV_ENDPOINT=host:port" in result.stderr


def test_quickstart_runs_the_whole_pipeline_and_reports_where_and_how_good(tmp_path):
    out = tmp_path / "qs"
    result = subprocess.run(
        ["bash", "launch/quickstart.sh", str(out)], cwd=ROOT, capture_output=True, text=True,
        env=launcher_env(INSTALL="0", SENTENCES="30000", EPOCHS="2"), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"vectors: {out}/vectors.bin" in result.stdout
    accuracy = float(result.stdout.split("analogy accuracy: ")[1].split("%")[0]) / 100
    scores = json.loads((out / "scores.json").read_text())
    assert accuracy == pytest.approx(scores["analogies"]["total"], abs=1e-3)
    assert accuracy >= 0.8
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.bin"), binary=True)
    assert kv.vector_size == 50 and len(kv) == len(checkpoint.load_tables(out / "run")[0].words)
