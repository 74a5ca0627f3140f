"""A throwaway one-node SLURM cluster on localhost, for tests: munged, slurmctld and slurmd from Debian's
`munge` and `slurm-wlm`, started in the foreground from a generated slurm.conf in a temporary folder, on free
ports, and stopped (each process by its own handle) when the `with` block ends. Clients find it through
$SLURM_CONF, which `SlurmCluster.env` holds."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")

CONF = """ClusterName=ablatetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge.socket
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=15
MinJobAge=600
JobRequeue=1
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> list[str]:
    """The programs a cluster needs that are not installed."""
    return [p for p in DAEMONS if shutil.which(p) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """`with SlurmCluster(folder) as c: subprocess.run(["sbatch", ...], env=c.env)`."""

    def __init__(self, folder: Path, cpus: int = 2):
        self.dir = folder
        self.cpus = cpus
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> SlurmCluster:
        try:
            self._write()
            self._start(["munged", "--foreground", "--force", f"--key-file={self.dir}/munge.key",
                         f"--socket={self.dir}/munge.socket", f"--pid-file={self.dir}/munged.pid",
                         f"--seed-file={self.dir}/munge.seed", f"--log-file={self.dir}/munged.log"])
            self._wait_for(lambda: (self.dir / "munge.socket").exists(), "munged")
            self._start(["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._start(["slurmd", "-D", "-f", str(self.conf)])
            self._wait_for(self._node_idle, "an idle node")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write(self) -> None:
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        key = self.dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(CONF.format(host=socket.gethostname().split(".")[0], dir=self.dir, cpus=self.cpus,
                                         ctld_port=_free_port(), slurmd_port=_free_port()))

    def _start(self, cmd: list[str]) -> None:
        log = open(self.dir / f"{cmd[0]}.out", "w")  # noqa: SIM115 - closed with the process's end
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _wait_for(self, ready, what: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited: see {self.dir}/{dead[0]}.out and its log")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"no {what} after {timeout:.0f} s: see the logs in {self.dir}")

    def _node_idle(self) -> bool:
        r = self.run("sinfo", "-h", "-o", "%t", check=False)
        return r.returncode == 0 and r.stdout.strip() == "idle"

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def stop(self) -> None:
        """Cancel every job (its step daemons outlive slurmd), then stop the daemons, newest first (slurmd,
        slurmctld, munged): SIGTERM, then SIGKILL after 10 s."""
        if all(p.poll() is None for p in self.procs) and len(self.procs) == 3:
            jobs = self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
            if jobs:
                self.run("scancel", *jobs, check=False)
                end = time.monotonic() + 30
                while self.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < end:
                    time.sleep(0.5)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
