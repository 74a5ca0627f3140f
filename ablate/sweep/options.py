"""How a ledger is opened: where (storage URL or journal file, results folder), whether read-only, and the
heartbeat / grace / retry settings of RDB storages, bundled in one frozen `LedgerOptions`; and `LedgerError`,
the one-line error of a ledger that cannot be opened or written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.config.errors import StudyError

DEFAULT_HEARTBEAT = 30  # seconds, RDB storages only
DEFAULT_MAX_RETRY = 3


class LedgerError(StudyError):
    """The ledger cannot be opened or written (bad --storage, damaged journal, full disk): one line, exit 2."""

    def __init__(self, where: str, problem: str):
        super().__init__(where, "", problem)


@dataclass(frozen=True)
class LedgerOptions:
    """Everything that says how to open a study's ledger (the CLI's --storage, --results, --heartbeat, --grace,
    --max-retry). `LedgerOptions(url, results)` names the two most given."""

    storage: str | None = None  # None: results/<study>/ledger.journal; a path: that journal; '://': an RDB URL
    results_root: Path = Path("results")
    heartbeat: int | None = None  # seconds; None: DEFAULT_HEARTBEAT on RDB storages; 0: off (journals never)
    grace: int | None = None  # seconds without a heartbeat before a running trial is failed; None: 4x heartbeat
    max_retry: int | None = DEFAULT_MAX_RETRY  # retries of a trial whose worker stopped sending heartbeats
    readonly: bool = False  # reading commands: append nothing, create nothing

    def __post_init__(self) -> None:
        object.__setattr__(self, "results_root", Path(self.results_root))

    def study_dir(self, name: str) -> Path:
        """results/<study>: the trial folders, results tables and (by default) the journal file."""
        return self.results_root / name

    def replace(self, **changes: Any) -> LedgerOptions:
        return dataclasses.replace(self, **changes)
