"""The embedded ledger's journal file, read as bytes: a torn last record (a full disk, a crash mid-write) is found
and cut off (a backup kept), garbage before the last record is one `LedgerError` naming the file and the line.
`store.py` opens the file with optuna's journal storage and calls these under optuna's lock of the file."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from .options import LedgerError


def torn(file: Path) -> bool:
    size = file.stat().st_size
    if size == 0:
        return False
    with open(file, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) != b"\n"


def repair_tail(file: Path) -> None:
    """Cut a torn last record (no newline at the end), keeping a backup of the whole file first (the caller holds
    the journal's lock)."""
    if not file.exists() or not torn(file):
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


def check_journal(file: Path) -> None:
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
