#!/usr/bin/env bash
# Train on this machine: one worker per visible GPU (NCCL), or NPROC CPU workers (gloo).
#
#   SHARDS=data/shards RUN_DIR=runs/exp1 launch/torchrun.sh [w2vdist train flags...]
#   CONFIG=cfg.yaml launch/torchrun.sh --train.epochs 3
#   SHARDS=data/shards launch/torchrun.sh --dry-run      # plan only: world, shards, steps
#
# Ctrl-C or `kill -USR1 <pid of this script>` makes every worker finish its step, rank 0
# writes a checkpoint and the script exits non-zero; run the same command again to resume.
# The same script spans several machines: run it on each with NNODES and the same
# RDZV_ENDPOINT (on SLURM use slurm/train-multinode.sbatch instead).
#
# Settings (environment variables; empty = not passed, the config file or default decides):
#   CONFIG            config file for `w2vdist train` (YAML, TOML or JSON)
#   SHARDS            prepared shards (`w2vdist prepare -o DIR`), --data.shards
#   RUN_DIR           run directory (checkpoints, logs, W&B), --train.run_dir
#   WANDB             auto | online | offline | disabled, --wandb
#   NPROC             CPU workers when no GPU is visible (default 1)
#   GPUS_PER_NODE     GPUs to use (default: CUDA_VISIBLE_DEVICES, else all of nvidia-smi -L)
#   NNODES            machines in the job (default 1), or MIN:MAX for an elastic job: with
#                     MAX_RESTARTS, the machines left after one fails meet again and the run
#                     goes on over them from the newest checkpoint
#   RDZV_ENDPOINT     host:port of the c10d rendezvous, the same on every machine (NNODES > 1)
#   RDZV_ID           rendezvous id, the same on every machine (default w2vdist)
#   SHUTDOWN_TIMEOUT  seconds workers get to checkpoint after a stop signal (default 120)
#   MAX_RESTARTS      times torchrun restarts the workers after one fails; they resume from
#                     the newest checkpoint (default 0)
#   PYTHON            interpreter with w2vdist installed (default python3)
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${NPROC:=1}"
: "${NNODES:=1}"
: "${RDZV_ENDPOINT:=}"
: "${RDZV_ID:=w2vdist}"

if [[ "$NNODES" != 1 && -z "$RDZV_ENDPOINT" ]]; then
    w2v_die "NNODES=$NNODES needs RDZV_ENDPOINT=host:port (the same on every machine)"
fi
w2v_workers "$NPROC"
if ((W2V_GPUS > 0)); then
    w2v_log "$W2V_GPUS GPU(s): one worker each (NCCL)"
else
    w2v_log "no GPU: $W2V_NPROC CPU worker(s) (gloo), $OMP_NUM_THREADS thread(s) each"
fi

w2v_torchrun "$NNODES" "$W2V_NPROC" "$RDZV_ENDPOINT" "$RDZV_ID" "$@"
w2v_run "${W2V_CMD[@]}"
exit "$W2V_STATUS"
