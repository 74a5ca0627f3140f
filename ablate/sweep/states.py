"""Trial statuses and failure kinds: the one module that spells them.

Both are `StrEnum`s: a member *is* its string (`Status.DONE == "done"`, `str(FailKind.IO) == "io"`), so what
the ledger's user attributes (`fail_kind`), results.csv/parquet, summary.csv and the printed status hold is
the same text as before these enums existed, and ledgers written before load unchanged. Write `.value` where
a value leaves the process (the ledger's storage), so that no storage ever sees the enum type.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class FailKind(StrEnum):
    """Why an attempt failed (the ledger's `fail_kind` user attribute)."""

    ERROR = "error"  # the trial's own fault (an exception, a diverged loss): trained again only with --retry-failed
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: continues from its last epoch checkpoint
    DIED = "died"  # its worker process was killed, or (RDB storages) stopped sending heartbeats
    DATA = "data"  # the data could not be read (missing or unreadable files): fix them and run again
    IO = "io"  # the disk or file system (full, read-only, gone) while training

    @property
    def resumable(self) -> bool:
        """Not the trial's own fault: `ablate run` queues it again (and `status` shows it as interrupted)."""
        return self is not FailKind.ERROR

    @classmethod
    def parse(cls, value: Any) -> FailKind:
        """The kind a ledger recorded; a missing or unknown value counts as the trial's own fault (`ERROR`)."""
        try:
            return cls(value)
        except (ValueError, TypeError):
            return cls.ERROR


def resumable(fail_kind: Any) -> bool:
    """Whether a failure recorded with this `fail_kind` value is queued again without --retry-failed."""
    return FailKind.parse(fail_kind).resumable


class Status(StrEnum):
    """A trial's status as `status`, results.csv and reports show it. Members are in display order."""

    DONE = "done"
    RUNNING = "running"
    QUEUED = "queued"
    INTERRUPTED = "interrupted"  # failed, but not by its own fault (`FailKind.resumable`): queued again
    STALE = "stale"  # finished on other data than data.root holds now: not done, trained again
    FAILED = "failed"  # by its own fault (`FailKind.ERROR`)
    PRUNED = "pruned"  # a search trial stopped early by the search's pruner (optuna PRUNED); also the user
    #                    attribute that says why ("pruned at epoch 3 by the median pruner")
    NEW = "new"  # not in the ledger yet
    SKIPPED = "skipped"  # a duplicate of an attempt that already ran (optuna PRUNED); also the user attribute
    #                      that says why it was skipped

    @property
    def order(self) -> int:
        """Position in display order (lists of statuses are shown done first, skipped last)."""
        return list(Status).index(self)

    @property
    def label(self) -> str:
        """The word reports use: `new` reads "not run"."""
        return "not run" if self is Status.NEW else self.value

    @classmethod
    def of(cls, trial: Any | None, stale: bool = False) -> Status:
        """The status of an optuna trial (the latest attempt of a trial id; None: never queued). A failure
        that is not the trial's own fault is INTERRUPTED; a finished trial on other data (`stale`) is STALE."""
        if trial is None:
            return cls.NEW
        from optuna.trial import TrialState

        state = trial.state
        if state == TrialState.COMPLETE:
            return cls.STALE if stale else cls.DONE
        if state == TrialState.FAIL:
            return cls.INTERRUPTED if resumable(trial.user_attrs.get("fail_kind")) else cls.FAILED
        if state == TrialState.PRUNED:
            return cls.PRUNED if was_pruned(trial) else cls.SKIPPED
        return {TrialState.RUNNING: cls.RUNNING, TrialState.WAITING: cls.QUEUED}[state]

    @classmethod
    def counts_line(cls, counts: dict[str, int], label: bool = False) -> str:
        """'3 done, 1 running, ...' in display order, leaving out statuses with no trial."""
        return ", ".join(f"{counts[s]} {s.label if label else s.value}" for s in cls if counts.get(s, 0))


def was_pruned(trial: Any) -> bool:
    """An optuna PRUNED trial that a search's pruner stopped (trained for some epochs), not a skipped duplicate
    or a configuration rejected by the cost window (never trained), which optuna also holds as PRUNED."""
    return trial.state.name == "PRUNED" and Status.PRUNED.value in trial.user_attrs


# A variant (all its seeds) some but not all of whose seeds are done (reports; not a trial status).
PARTIAL = "partial"
