#!/usr/bin/env bash
# Install w2vdist: the one install step of the README, CI (.ci/run) and docker/Dockerfile.
#
#   launch/setup.sh                    # torch, then w2vdist (editable) with its test extras
#   EDITABLE=0 EXTRAS=gpu launch/setup.sh     # a regular install, as the Docker image does
#
# launch/quickstart.sh and launch/test.sh (what CI runs) start with it.
#
# torch is pinned and installed first so every install trains with the same version: pip
# picks the build for the platform (CUDA wheels on Linux x86-64 from PyPI; an index or
# --find-links in pip's config can serve another build of the same version). On an image
# that already holds this torch version (e.g. pytorch/pytorch:<version>-cuda...), it is a
# no-op.
#
# Settings (environment variables):
#   PYTHON         interpreter to install into (default python3: activate a virtualenv first)
#   TORCH_VERSION  torch version (default 2.13.0)
#   TRITON_VERSION Triton, with the dev or gpu extras on Linux, where the torch installed
#                  requires none (its CPU wheels; its CUDA wheels pin their own): default
#                  3.7.1, which torch 2.13's CUDA wheel requires, so that CI tests the kernel
#                  with the Triton GPU runs use rather than the newest; "" for the extras'
#                  triton>=3.0
#   EXTRAS         extras of the w2vdist package (default dev: pytest, pytest-xdist, gensim,
#                  dockerfile, triton, pyarrow, mypy, setuptools; gpu: triton; parquet:
#                  pyarrow; comma-separated; "" for none)
#   EDITABLE       1 (default): pip install -e, for a checkout you work in; 0: regular install
set -euo pipefail

: "${PYTHON:=python3}"
: "${TORCH_VERSION:=2.13.0}"
: "${TRITON_VERSION=3.7.1}"
: "${EXTRAS=dev}"
: "${EDITABLE:=1}"

if "$PYTHON" -c 'import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)'; then
    echo "launch/setup.sh: $PYTHON belongs to the operating system (PEP 668); create and" \
        "activate a virtualenv first: $PYTHON -m venv .venv && . .venv/bin/activate" >&2
    exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target="$repo${EXTRAS:+[$EXTRAS]}"

"$PYTHON" -m pip install "torch==$TORCH_VERSION"
pins=()
if [[ -n "$TRITON_VERSION" && ",$EXTRAS," =~ ,(dev|gpu), ]] && "$PYTHON" -c 'import sys
from importlib.metadata import requires
sys.exit(any(r.startswith("triton") for r in requires("torch") or []))'; then
    pins+=("triton==$TRITON_VERSION; sys_platform == 'linux'")
fi
editable=()
[[ "$EDITABLE" == 1 ]] && editable=(-e)
"$PYTHON" -m pip install ${editable[@]+"${editable[@]}"} "$target" ${pins[@]+"${pins[@]}"}
"$PYTHON" -m w2vdist --version
