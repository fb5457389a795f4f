"""Session fixtures shared by test modules."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, SlurmUnavailable, start_cluster


def require_tools() -> bool:
    """In CI (.ci/run sets W2VDIST_CI=1) a missing tool fails its tests instead of skipping."""
    return os.environ.get("W2VDIST_CI") == "1"


def _missing(what: str) -> None:
    if require_tools():
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture
def w2vdist_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """`caplog`, also hearing the `w2vdist` logger, which stops propagating once a command
    has set up its logging (`logs.setup`), as earlier tests in a run do."""
    logger = logging.getLogger("w2vdist")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="w2vdist"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def _tool(name: str) -> str:
    """The executable `name` from Debian's package of that name (a failure in CI when
    missing)."""
    found = shutil.which(name)
    if found is None:
        _missing(f"{name} is not installed (apt-get install {name})")
    return found


@pytest.fixture(scope="session")
def shellcheck() -> str:
    return _tool("shellcheck")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """A 1 MiB tmpfs (True) where this machine lets us mount one, else a plain folder (False:
    the test injects ENOSPC instead)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    yield mount, done.returncode == 0
    if done.returncode == 0:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only directory: a tmpfs mounted read-only (root ignores permission bits), else
    one of mode 555."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        _missing(f"cannot mount a read-only tmpfs as root: {done.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster on localhost (munged, slurmctld, slurmd), stopped at the end."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as exc:
        _missing(f"no local SLURM cluster: {exc}")
    yield cluster
    cluster.stop()
