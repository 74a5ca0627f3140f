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
        self._check_liveness()

    def _check_liveness(self) -> None:
        """Settings under which a live worker's trial would be taken over, or a dead one's never: refused. On a
        server storage (several machines) a dead worker is found only by its missing heartbeats, so heartbeats
        stay on; a grace period shorter than the heartbeat fails trials whose worker is alive."""
        url = str(self.storage or "")
        if "://" not in url:  # a journal file: a dead worker is found by its pid on this host
            return
        heartbeat = DEFAULT_HEARTBEAT if self.heartbeat is None else self.heartbeat
        if heartbeat == 0 and not url.startswith("sqlite"):
            raise LedgerError("--heartbeat", "0 turns off the only way a trial of a worker that dies on another "
                              "machine is found and retried (it would stay running for ever); give a heartbeat "
                              f"in seconds (default {DEFAULT_HEARTBEAT})")
        if heartbeat and self.grace is not None and self.grace < heartbeat:
            raise LedgerError("--grace", f"{self.grace} s is shorter than --heartbeat ({heartbeat} s): the trials of "
                              "live workers would be failed between two heartbeats and their work thrown away; give "
                              f"at least {heartbeat} (default {4 * heartbeat})")

    def study_dir(self, name: str) -> Path:
        """results/<study>: the trial folders, results tables and (by default) the journal file."""
        return self.results_root / name

    def replace(self, **changes: Any) -> LedgerOptions:
        return dataclasses.replace(self, **changes)
