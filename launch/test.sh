#!/usr/bin/env bash
# Install with the test extras (launch/setup.sh), then run the test suite: what CI runs.
#
#   bash launch/test.sh                  # the whole suite
#   bash launch/test.sh -m "not slurm"   # arguments go to pytest
#
# The test files run on TEST_WORKERS pytest-xdist processes (default 2), each file's tests in
# one of them, in turn, so that module fixtures are made once: most tests keep one core busy
# (a subprocess's start, a rank at one thread), so two of them at once take the suite on two
# cores from 12.5-15 minutes to about 9. TEST_WORKERS=0: in this process, one test at a time.
#
# Settings: PYTHON (python3), TEST_WORKERS (2) and those of launch/setup.sh.
set -euo pipefail

: "${PYTHON:=python3}"
: "${TEST_WORKERS:=2}"
here=$(dirname "${BASH_SOURCE[0]}")

PYTHON="$PYTHON" "$here/setup.sh"
cd "$here/.."
status=0
"$PYTHON" -m pytest -q -n "$TEST_WORKERS" --dist loadfile "$@" || status=$?
if ((status == 5)); then
    echo "launch/test.sh: pytest collected no tests" >&2
fi
exit "$status"
