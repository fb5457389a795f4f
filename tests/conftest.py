"""Session fixtures shared by test modules."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.slurm_cluster import SlurmCluster, SlurmUnavailable, start_cluster


def require_tools() -> bool:
    """In CI (.ci/run sets W2VDIST_CI=1) a missing tool fails its tests instead of skipping."""
    return os.environ.get("W2VDIST_CI") == "1"


def _missing(what: str) -> None:
    if require_tools():
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="session")
def shellcheck() -> str:
    """The shellcheck executable (a failure in CI when it is missing)."""
    found = shutil.which("shellcheck")
    if found is None:
        _missing("shellcheck is not installed (apt-get install shellcheck)")
    return found


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster on localhost (munged, slurmctld, slurmd), stopped at the end."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as exc:
        _missing(f"no local SLURM cluster: {exc}")
    yield cluster
    cluster.stop()
