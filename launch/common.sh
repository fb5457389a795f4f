# shellcheck shell=bash
# Shell logic shared by launch/torchrun.sh and slurm/*.sbatch: sourced, never run.
#
# - w2v_gpu_count, w2v_workers: GPUs this node may use, workers per node (GPUs or CPU workers)
# - w2v_torchrun: the one torchrun command line for `w2vdist train` (stop signals forwarded
#   to every worker, a shutdown grace long enough for rank 0 to write its checkpoint)
# - w2v_run: run a launcher in the background, forward the first stop signal to it, wait
# - w2v_requeue_if_stopped: after a stop by signal, requeue the SLURM job to resume
#
# `w2vdist train` stops on SIGUSR1/SIGTERM/SIGINT after the step in progress, rank 0 writes a
# checkpoint and every rank exits 75; torchrun then exits non-zero. Bash runs a trap only
# between commands, so the launcher runs in the background while the script `wait`s.

W2V_STOP_SIGNALS="SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
W2V_STOPPED_BY=""  # the stop signal this script received and forwarded, if any
W2V_CHILD=""
_W2V_TRAPPED=0

w2v_log() {
    printf '[w2vdist-launch %(%F %T)T] %s\n' -1 "$*" >&2
}

w2v_die() {
    w2v_log "error: $*"
    exit 2
}

# Print the number of GPUs this node may use. GPUS_PER_NODE wins; inside a SLURM job the
# allocation decides (CUDA_VISIBLE_DEVICES or SLURM_GPUS_ON_NODE, which SLURM sets for
# --gpus-per-node / --gres=gpu:N), so a job never uses GPUs it did not ask for; outside
# SLURM, CUDA_VISIBLE_DEVICES or else every GPU `nvidia-smi -L` lists.
w2v_gpu_count() {
    if [[ -n "${GPUS_PER_NODE:-}" ]]; then
        echo "$GPUS_PER_NODE"
    elif [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
        local devices
        IFS=, read -r -a devices <<< "$CUDA_VISIBLE_DEVICES"
        echo "${#devices[@]}"
    elif [[ -n "${SLURM_JOB_ID:-}" ]]; then
        echo "${SLURM_GPUS_ON_NODE:-0}"
    elif command -v nvidia-smi > /dev/null 2>&1; then
        nvidia-smi -L 2> /dev/null | grep -c '^GPU ' || true
    else
        echo 0
    fi
}

# Fill the array W2V_CMD with the torchrun command for `w2vdist train`.
#   w2v_torchrun NNODES NPROC_PER_NODE RDZV_ENDPOINT RDZV_ID [train args...]
# RDZV_ENDPOINT "" means one machine (--standalone: a private rendezvous on a free port).
# Reads PYTHON, SHUTDOWN_TIMEOUT, MAX_RESTARTS, CONFIG, SHARDS, RUN_DIR and WANDB (empty =
# not passed). Exports TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: with torchrun's shared store,
# restarted workers can read their dead predecessors' addresses (pytorch/pytorch#135712).
w2v_torchrun() {
    local nnodes=$1 nproc=$2 endpoint=$3 rdzv_id=$4
    shift 4
    W2V_CMD=("${PYTHON:-python3}" -m torch.distributed.run --nnodes "$nnodes"
        --nproc-per-node "$nproc")
    if [[ -z "$endpoint" ]]; then
        W2V_CMD+=(--standalone)
    else
        W2V_CMD+=(--rdzv-backend c10d --rdzv-endpoint "$endpoint" --rdzv-id "$rdzv_id")
    fi
    export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
    W2V_CMD+=(--signals-to-handle "$W2V_STOP_SIGNALS"
        --shutdown-timeout "${SHUTDOWN_TIMEOUT:-120}" --max-restarts "${MAX_RESTARTS:-0}"
        -m w2vdist train --resume auto)
    [[ -n "${CONFIG:-}" ]] && W2V_CMD+=(--config "$CONFIG")
    [[ -n "${SHARDS:-}" ]] && W2V_CMD+=(--data.shards "$SHARDS")
    [[ -n "${RUN_DIR:-}" ]] && W2V_CMD+=(--train.run_dir "$RUN_DIR")
    [[ -n "${WANDB:-}" ]] && W2V_CMD+=(--wandb "$WANDB")
    W2V_CMD+=("$@")
}

# Set W2V_GPUS and W2V_NPROC, the workers per node: one per GPU, else $1 CPU workers (gloo),
# each with its share of the node's cores (torchrun alone would give each one thread).
w2v_workers() {
    W2V_GPUS=$(w2v_gpu_count)
    if ((W2V_GPUS > 0)); then
        W2V_NPROC=$W2V_GPUS
        return
    fi
    W2V_NPROC=$1
    local cores=${SLURM_CPUS_ON_NODE:-$(nproc)}
    if [[ -z "${OMP_NUM_THREADS:-}" ]]; then
        export OMP_NUM_THREADS=$((cores / W2V_NPROC > 0 ? cores / W2V_NPROC : 1))
    fi
}

# Activate the virtualenv $1, if one is given.
w2v_activate() {
    if [[ -n "$1" ]]; then
        # shellcheck disable=SC1091  # the site's virtualenv, not in this repository
        source "$1/bin/activate"
    fi
}

# The trap handler. No `return` in it: bash 5.2 mishandles one in a trap that interrupted a
# `wait` inside a function (the script dies with "pop_var_context").
_w2v_forward() {
    _W2V_TRAPPED=1
    if [[ -n "$W2V_STOPPED_BY" ]]; then
        w2v_log "got $1; already stopping on $W2V_STOPPED_BY, waiting for the checkpoint"
    else
        W2V_STOPPED_BY=$1
        w2v_log "got $1: asking training to checkpoint and stop"
        kill -s "$1" "$W2V_CHILD" 2> /dev/null || true
    fi
}

# Run "$@" in the background in its own session (so a terminal's Ctrl-C reaches it once,
# through the trap, not twice), forward USR1/TERM/INT to it, and wait until it has exited.
# Sets W2V_STATUS to its exit status.
w2v_run() {
    local sig
    for sig in USR1 TERM INT; do
        # shellcheck disable=SC2064  # expand $sig now: one handler per signal
        trap "_w2v_forward $sig" "$sig"
    done
    w2v_log "running: $*"
    if command -v setsid > /dev/null 2>&1; then
        setsid "$@" &
    else
        "$@" &
    fi
    W2V_CHILD=$!
    # `wait` returns early (status > 128) when a trapped signal arrives; then wait again
    # (bash keeps the status of a child that exits meanwhile for that next `wait`).
    while true; do
        _W2V_TRAPPED=0
        wait "$W2V_CHILD" && W2V_STATUS=0 || W2V_STATUS=$?
        if ((!_W2V_TRAPPED || W2V_STATUS <= 128)); then
            break
        fi
    done
    trap - USR1 TERM INT
    w2v_log "launcher exited with status $W2V_STATUS"
}

# Print the newest complete checkpoint folder of run directory $1 (nothing if none).
w2v_newest_checkpoint() {
    local marker newest=""
    for marker in "$1"/checkpoints/step-*/COMPLETE; do
        [[ -e "$marker" ]] && newest=${marker%/COMPLETE}
    done
    [[ -n "$newest" ]] && echo "$newest"
    return 0
}

# After w2v_run: when a stop signal ended the training (non-zero exit), requeue this SLURM job
# so it resumes (--resume auto) from the checkpoint in the same RUN_DIR. Returns the exit
# status the batch script should end with.
w2v_requeue_if_stopped() {
    if [[ -z "$W2V_STOPPED_BY" || "$W2V_STATUS" -eq 0 ]]; then
        return "$W2V_STATUS"
    fi
    if [[ -n "${RUN_DIR:-}" ]]; then
        w2v_log "stopped on $W2V_STOPPED_BY; newest checkpoint: $(w2v_newest_checkpoint "$RUN_DIR")"
    fi
    if [[ "${REQUEUE:-1}" != 1 || -z "${SLURM_JOB_ID:-}" ]]; then
        w2v_log "not requeueing (REQUEUE=${REQUEUE:-1}); resubmit to resume"
        return "$W2V_STATUS"
    fi
    w2v_log "requeueing job $SLURM_JOB_ID; it resumes from the newest checkpoint"
    if scontrol requeue "$SLURM_JOB_ID"; then
        return 0
    fi
    w2v_log "scontrol requeue failed; resubmit this job to resume"
    return "$W2V_STATUS"
}
