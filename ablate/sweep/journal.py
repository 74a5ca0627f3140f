"""The embedded ledger: an optuna journal file that survives a torn last record (a full disk, a crash
mid-write), and reports garbage before the last record as one `LedgerError` naming the file and the line."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .options import LedgerError


@contextlib.contextmanager
def _journal_lock(path: Path) -> Iterator[None]:
    """optuna's own lock of a journal file (the one its appends take)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@functools.cache
def _safe_backend_class() -> type:
    from optuna.storages.journal import JournalFileBackend

    class SafeJournalFileBackend(JournalFileBackend):
        """Before each append, a torn last record (left by a write cut short) is cut off under the lock;
        without this the next record is appended onto it and optuna can no longer read the journal."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            path = Path(self._file_path)  # optuna keeps the backend's path only here
            if _torn(path):
                with _journal_lock(path):
                    _repair_tail(path)
            try:
                super().append_logs(logs)
            except OSError as e:  # a full disk: say which file (a torn record it left is cut off next time)
                if e.filename is None:
                    e.filename = str(path)
                raise

    return SafeJournalFileBackend


def safe_journal(path: str, repair: bool = True) -> Any:
    """A journal file backend that survives a torn last record (a full disk, a crash mid-write).

    Opened for writing (`repair`), a last line without its newline is cut off after a copy of the file is
    kept as `<journal>.torn-<time>.bak` (one line on stderr says so); so is one found before any later
    append. Opened read-only the file is only checked (optuna's reader skips a torn last line). A record
    that is not JSON before the last line is a LedgerError naming the file and the line."""
    file = Path(path)
    _check_journal(file)
    if repair and file.exists() and _torn(file):
        with _journal_lock(file):
            _repair_tail(file)
    return _safe_backend_class()(path)


def _torn(file: Path) -> bool:
    size = file.stat().st_size
    if size == 0:
        return False
    with open(file, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) != b"\n"


def _repair_tail(file: Path) -> None:
    """Cut a torn last record (no newline at the end), keeping a backup of the whole file first."""
    if not file.exists() or not _torn(file):
        return
    data = file.read_bytes()
    keep = data.rfind(b"\n") + 1
    backup = file.with_name(f"{file.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.bak")
    try:
        shutil.copyfile(file, backup)
        with open(file, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise LedgerError(str(file), f"its last record is torn and it cannot be repaired: {e.strerror or e}") \
            from None
    print(f"{file}: dropped a torn last record ({len(data) - keep} bytes, an interrupted write); "
          f"backup in {backup}", file=sys.stderr, flush=True)


def _check_journal(file: Path) -> None:
    """Every line but a torn last one must be a JSON record: else one LedgerError with the line number."""
    if not file.exists():
        return
    with open(file, "rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1  # after the final newline: b"" when the file ends with one, else the torn record
    for i, line in enumerate(lines):
        if i == last or not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            what = "not a ledger record" if i else "not an ablate/optuna ledger journal"
            raise LedgerError(str(file), f"line {i + 1}: {what} (damaged journal; restore it from a backup, "
                              "or move it away to start the study afresh)")
