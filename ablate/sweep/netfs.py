"""Is a ledger file on a network file system? A journal file (or an SQLite database) that workers on several
machines append to over NFS, Lustre or GPFS can be corrupted (client-side caching breaks the appends' order and
the locks), so the cluster launcher refuses one unless the user insists, and says how to use PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

from .options import LedgerError
from .storage import is_rdb_url

NETWORK = ("nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "ceph", "fuse.glusterfs",
           "fuse.sshfs", "9p", "panfs", "afs")
POSTGRES_HINT = ("use --storage postgresql://USER@HOST/DB (a server any user can start: docs/cluster.md), "
                 "or --network-journal to use it anyway")


def filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The type of the file system holding `path` (the longest mount point above it in /proc/mounts), or None
    when the mount table cannot be read."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def ledger_file(storage: str | None, study_dir: Path) -> Path | None:
    """The file a ledger lives in (a journal file, or an SQLite database); None for a database server."""
    if not is_rdb_url(storage):
        return Path(storage) if storage else study_dir / "ledger.journal"
    if str(storage).startswith("sqlite:///"):
        return Path(str(storage)[len("sqlite:///"):])
    return None


def check_shared_ledger(storage: str | None, study_dir: Path, insist: bool, mounts: str | None = None) -> None:
    """A LedgerError when the ledger is a file on a network file system and the user does not insist."""
    file = ledger_file(storage, study_dir)
    if file is None or insist:
        return
    kind = filesystem(file, mounts)  # realpath resolves the links above a file not written yet
    if kind in NETWORK:
        raise LedgerError(str(file), f"the ledger file is on a network file system ({kind}), where workers on "
                          f"several machines can corrupt it; {POSTGRES_HINT}")
