#!/usr/bin/env bash
# The GPU path checked and timed on one lent GPU in at most about 8 minutes, as tagged lines
# (ENV, CORRECT, SYNC, GRAPH, BENCH, MEM, CKPT, NCCL, E2E, LOADER, FIT; FAIL for a failed
# section); see benchmarks/gpu_check.py.
#   bash benchmarks/gpu_check.sh            # CUDA machine
#   bash benchmarks/gpu_check.sh --quick    # any machine: tiny sizes, Triton's CPU interpreter
# Exit status: the number of failed sections (124 if the whole run passed its time bound).
# Settings: PYTHON (python3), the interpreter that has torch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${PYTHON:=python3}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    export TRITON_INTERPRET=1  # no GPU: the Triton kernel runs on CPU tensors
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export GPU_CHECK_SECONDS=480  # the bound, which gpu_check.py shares out
exec timeout --signal=TERM --kill-after=10 "$GPU_CHECK_SECONDS" "$PYTHON" benchmarks/gpu_check.py "$@"
