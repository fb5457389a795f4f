"""A real one-node SLURM cluster on localhost, for tests that submit the project's sbatch scripts.

`start_cluster(root)` generates a munge key, starts `munged` (as user munge when run as root),
writes a `slurm.conf` describing this machine (CPUs and memory from `slurmd -C`), starts
`slurmctld` and `slurmd` in the foreground and waits until the node is idle. Everything lives
under `root` and uses free ports and its own munge socket, so a system munge or SLURM installed
on the same machine is left alone. `stop()` ends exactly the daemons started here, by pid.

Commands (sbatch, squeue, scontrol...) reach this cluster through `SLURM_CONF`, which
`cluster.env` sets; jobs inherit it from sbatch's environment.
"""

from __future__ import annotations

import getpass
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo")
PARTITION = "debug"
# States after which a job runs no more (REQUEUED/PENDING come back to RUNNING).
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


class SlurmUnavailable(RuntimeError):
    """SLURM or munge binaries are missing or their daemons would not start here."""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]
    node: str
    munge_dir: Path
    partition: str = PARTITION
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *cmd: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True,
                                timeout=60, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr}")
        return result

    def sbatch(self, script: Path, *args: str, options: tuple[str, ...] = (),
               env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        """Submit `script args` with extra sbatch options and job variables; the job id."""
        result = subprocess.run(
            ["sbatch", "--parsable", *options, str(script), *args],
            env={**self.env, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"sbatch {script} failed: {result.stderr}")
        return int(result.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, Restarts, NodeList...)."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id)).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, job_id: int, until=lambda job: job["JobState"] in FINISHED,
             timeout: float = 240) -> dict[str, str]:
        """Poll the job until `until(job)`; fail with its state and the log tail on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} timed out in {job['JobState']}:\n"
                                     + self.log_tail())
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel leftover jobs, then end the daemons started here (newest first), by pid."""
        if self.processes:
            subprocess.run(["scancel", "--full", "--user", getpass.getuser()], env=self.env,
                           capture_output=True, timeout=30)
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.processes.clear()
        shutil.rmtree(self.munge_dir, ignore_errors=True)


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None
            and not Path("/usr/sbin", name).exists()]


def start_cluster(root: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under `root`; raise SlurmUnavailable if they can't."""
    missing = missing_binaries()
    if missing:
        raise SlurmUnavailable(f"not installed: {', '.join(missing)} "
                               "(apt-get install slurmctld slurmd slurm-client munge)")
    root.mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    munge_socket = _start_munge_dir(root)
    conf = root / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for name in list(env):  # a job's own variables would leak into the jobs submitted here
        if name.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and name != "SLURM_CONF":
            del env[name]
    cluster = SlurmCluster(root, conf, env, node, munge_socket.parent)
    try:
        cluster.processes.append(_munged(root, munge_socket))
        conf.write_text(_slurm_conf(root, node, munge_socket))
        for daemon in ("slurmctld", "slurmd"):
            cluster.processes.append(subprocess.Popen(
                [_binary(daemon), "-D", "-f", str(conf)], env=env,
                stdout=open(root / f"{daemon}.out", "w"), stderr=subprocess.STDOUT,
            ))
        _wait_idle(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _start_munge_dir(root: Path) -> Path:
    """A munge directory the daemon's user can reach: pytest's temp dirs are private to us."""
    munge_dir = Path(tempfile.mkdtemp(prefix="w2vdist-munge-"))
    munge_dir.chmod(0o755)
    (root / "munge-dir").symlink_to(munge_dir)
    return munge_dir / "munge.socket"


def _munged(root: Path, munge_socket: Path) -> subprocess.Popen:
    """Key and daemon; as root the daemon runs as user munge, as it does when packaged."""
    munge_dir = munge_socket.parent
    key = munge_dir / "munge.key"
    subprocess.run([_binary("mungekey"), "--create", f"--keyfile={key}"], check=True,
                   capture_output=True)
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("munge")
        except KeyError:
            user = None
        if user is not None:
            os.chown(munge_dir, user.pw_uid, user.pw_gid)
            os.chown(key, user.pw_uid, user.pw_gid)
            prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                      "--clear-groups"]
    cmd = [*prefix, _binary("munged"), "--foreground", f"--socket={munge_socket}",
           f"--key-file={key}", f"--pid-file={munge_dir}/munged.pid",
           f"--log-file={munge_dir}/munged.log", f"--seed-file={munge_dir}/munged.seed"]
    if not prefix and os.geteuid() == 0:
        cmd.append("--force")  # no munge user: run it as root
    proc = subprocess.Popen(cmd, stdout=open(root / "munged.out", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not munge_socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SlurmUnavailable("munged did not start: " + (root / "munged.out").read_text())
        time.sleep(0.1)
    return proc


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _slurm_conf(root: Path, node: str, munge_socket: Path) -> str:
    hardware = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    resources = " ".join(f for f in hardware.split() if not f.startswith("NodeName="))
    ctld_port, slurmd_port = _free_ports(2)
    user = getpass.getuser()
    for name in ("state", "spool"):
        (root / name).mkdir(exist_ok=True)
    return f"""\
ClusterName=w2vdist-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={munge_socket},cred_expire=5
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
NodeName={node} NodeAddr=127.0.0.1 {resources} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_idle(cluster: SlurmCluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in cluster.processes:
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{proc.args[0]} exited {proc.returncode}:\n"
                                       + cluster.log_tail())
        state = subprocess.run(["sinfo", "-h", "-n", cluster.node, "-o", "%t"], env=cluster.env,
                               capture_output=True, text=True, timeout=30).stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise SlurmUnavailable("the node did not become idle:\n" + cluster.log_tail())
