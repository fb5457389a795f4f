#!/usr/bin/env bash
# Install with the test extras (launch/setup.sh), then run the test suite: what CI runs.
#
#   bash launch/test.sh                  # the whole suite
#   bash launch/test.sh -m "not slurm"   # arguments go to pytest
#
# Settings: PYTHON (python3) and those of launch/setup.sh.
set -euo pipefail

: "${PYTHON:=python3}"
here=$(dirname "${BASH_SOURCE[0]}")

PYTHON="$PYTHON" "$here/setup.sh"
cd "$here/.."
status=0
"$PYTHON" -m pytest -q "$@" || status=$?
if ((status == 5)); then
    echo "launch/test.sh: pytest collected no tests" >&2
fi
exit "$status"
