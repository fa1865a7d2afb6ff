"""A real single-node SLURM for the profile test: Debian's slurm-wlm and munge, as root.

``single_node_slurm()`` installs the packages with apt when they are missing, writes a minimal
``/etc/slurm/slurm.conf`` (the job-step plugin drops ``SLURM_*`` variables, so a config
elsewhere breaks every job) for this host, starts munged, slurmctld and slurmd by hand (no
systemd), waits for the node to be idle, and on exit cancels every job and stops the daemons
by their PIDs. Anything that prevents this raises ``SlurmUnavailable`` with the reason, which
the test turns into a skip that says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge"]
CONF = Path("/etc/slurm/slurm.conf")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be run here; the message says why."""


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _install() -> None:
    if all(shutil.which(x) for x in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurm-wlm/munge are not installed and this is not root")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("slurm-wlm/munge are not installed and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")


def _conf(host: str, cpus: int, mem_mb: int, spool: Path) -> str:
    return f"""ClusterName=fmridecode-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
SlurmctldPidFile={spool}/slurmctld.pid
SlurmdPidFile={spool}/slurmd.pid
SlurmdSpoolDir={spool}/slurmd
StateSaveLocation={spool}/ctld
SlurmctldLogFile={spool}/slurmctld.log
SlurmdLogFile={spool}/slurmd.log
NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def single_node_slurm(spool: Path) -> Iterator[dict[str, str]]:
    """Run SLURM on this host for the duration of the block; yields facts (partition...)."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting slurmctld/slurmd needs root")
    _install()
    if CONF.exists() and not CONF.read_text().startswith("ClusterName=fmridecode-test"):
        raise SlurmUnavailable(f"{CONF} belongs to another SLURM set-up; not touching it")
    host = socket.gethostname()
    cpus = os.cpu_count() or 1
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
    spool.mkdir(parents=True, exist_ok=True)
    for sub in ("slurmd", "ctld"):
        (spool / sub).mkdir(exist_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_conf(host, cpus, mem_mb, spool))
    pids: list[int] = []
    try:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        pidfile = spool / "munged.pid"
        pidfile.unlink(missing_ok=True)
        proc = _run("munged", "--force", f"--pid-file={pidfile}")
        if proc.returncode != 0 and "already running" not in proc.stderr:
            raise SlurmUnavailable(f"munged did not start: {proc.stderr.strip()[-300:]}")
        time.sleep(0.5)
        if pidfile.exists() and pidfile.read_text().split():
            pids.append(int(pidfile.read_text().split()[0]))
        for daemon, pid in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            (spool / pid).unlink(missing_ok=True)  # a stale one from an earlier run
            proc = _run(daemon)
            if proc.returncode != 0:
                raise SlurmUnavailable(f"{daemon} did not start: {proc.stderr.strip()[-300:]}")
            deadline = time.time() + 20
            while time.time() < deadline:
                text = (spool / pid).read_text().split() if (spool / pid).exists() else []
                if text:
                    pids.append(int(text[0]))
                    break
                time.sleep(0.2)
            else:
                raise SlurmUnavailable(f"{daemon} wrote no PID file in 20 s")
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            state = _run("sinfo", "-h", "-N", "-o", "%t").stdout.strip()
            if state in ("idle", "mix"):
                break
            time.sleep(1)
        else:
            raise SlurmUnavailable(f"the node did not become idle (state {state!r})")
        yield {"partition": "test", "host": host, "cpus": str(cpus)}
    finally:
        _run("scancel", "--user", "root", timeout=20) if shutil.which("scancel") else None
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        time.sleep(1)
        with contextlib.suppress(OSError):
            CONF.unlink()
