"""A one-node Slurm cluster on 127.0.0.1 for a test: Debian 12's slurm-wlm 22.05 with accounting
(``sacct``, which submitit asks for job states) through slurmdbd and a private MariaDB.

Every daemon runs in the foreground as a child of the test (``-D``), on free ports, with its state,
logs and sockets in one temporary folder, and is stopped at the end; the cluster's jobs are
cancelled first. Authentication is ``auth/none`` (no munge): nothing outside this machine's
loopback reaches it. Needs root (the daemons run as root) and, on Debian/Ubuntu,
``apt-get install slurm-wlm slurmdbd mariadb-server``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROGRAMS = ("slurmctld", "slurmd", "slurmdbd", "sacctmgr", "sbatch", "srun", "sacct", "mariadbd", "mariadb-install-db")
NODE, PARTITION, CLUSTER = "p2pnode", "debug", "p2ptest"


def missing_programs() -> list[str]:
    """The programs of the cluster that are not on PATH (the daemons live in /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(what: str, ready, procs: list[subprocess.Popen], logs: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-2000:]}" for log in logs if log.exists())
            raise RuntimeError(f"the test's Slurm cluster: {what} is not ready ({'exited' if dead else 'timeout'})\n{tails}")
        time.sleep(0.2)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def slurm_cluster() -> Iterator[dict[str, str]]:
    """Start the cluster; yields the environment its clients need (``SLURM_CONF``, ``PATH``)."""
    root = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))
    env = {**os.environ, "PATH": os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]),
           "SLURM_CONF": str(root / "slurm.conf")}
    ports = {name: _free_port() for name in ("ctld", "slurmd", "dbd", "db")}
    cpus = os.cpu_count() or 1
    (root / "state").mkdir()
    (root / "spool").mkdir()
    (root / "slurm.conf").write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost=localhost(127.0.0.1)
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ports['ctld']}
SlurmdPort={ports['slurmd']}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports['dbd']}
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={socket.gethostname()} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
    dbd_conf = root / "slurmdbd.conf"  # beside slurm.conf, where slurmdbd looks; readable by its owner only
    dbd_conf.write_text(f"""\
AuthType=auth/none
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={ports['dbd']}
SlurmUser=root
LogFile={root}/slurmdbd.log
PidFile={root}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports['db']}
StorageUser=root
StorageLoc=slurm_acct_db
""")
    dbd_conf.chmod(0o600)
    procs: list[subprocess.Popen] = []
    logs = [root / n for n in ("db.err", "slurmdbd.log", "slurmctld.log", "slurmd.log", "out.log")]
    out = open(root / "out.log", "ab")

    def start(*cmd: str) -> subprocess.Popen:
        proc = subprocess.Popen(list(cmd), env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={root}/db", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"], env=env, cwd=root, stdout=out,
                       stderr=subprocess.STDOUT, check=True, timeout=120)
        start("mariadbd", "--no-defaults", f"--datadir={root}/db", f"--socket={root}/db.sock", "--bind-address=127.0.0.1",
              f"--port={ports['db']}", "--user=root", f"--pid-file={root}/db.pid", f"--log-error={root}/db.err")
        _wait("mariadbd", lambda: _listening(ports["db"]), procs, logs)
        start("slurmdbd", "-D")
        _wait("slurmdbd", lambda: _listening(ports["dbd"]), procs, logs)
        subprocess.run(["sacctmgr", "-i", "add", "cluster", CLUSTER], env=env, stdout=out, stderr=subprocess.STDOUT, check=True,
                       timeout=60)
        start("slurmctld", "-D", "-i")
        _wait("slurmctld", lambda: _listening(ports["ctld"]), procs, logs)
        start("slurmd", "-D", "-N", NODE)

        def idle() -> bool:
            res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
            return res.stdout.strip() == "idle"

        _wait("slurmd (node idle)", idle, procs, logs)
        yield {"SLURM_CONF": env["SLURM_CONF"], "PATH": env["PATH"]}
    finally:
        if any(p.poll() is None for p in procs[-2:]):
            subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True, timeout=60)
        for proc in reversed(procs):  # slurmd, slurmctld, slurmdbd, mariadbd
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
        out.close()
        shutil.rmtree(root, ignore_errors=True)
