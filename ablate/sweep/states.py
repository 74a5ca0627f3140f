"""Trial statuses and failure kinds, the ledger's attempt states, and the records the ledger hands out (`Attempt`,
`Item`): the one module that spells them. Nothing here imports optuna (`store.py` converts its trials).

Both are `StrEnum`s: a member *is* its string (`Status.DONE == "done"`, `str(FailKind.IO) == "io"`), so what
the ledger's user attributes (`fail_kind`), results.csv/parquet, summary.csv and the printed status hold is
the same text as before these enums existed, and ledgers written before load unchanged. Write `.value` where
a value leaves the process (the ledger's storage), so that no storage ever sees the enum type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ablate.config.variant import Variant


class State(Enum):
    """Where an attempt stands in the ledger's storage (the names of optuna's trial states; `store.py` maps them)."""

    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    FAIL = "fail"
    PRUNED = "pruned"


@dataclass(frozen=True)
class Attempt:
    """One attempt at a trial as the ledger stores it (a copy: changing it changes nothing stored)."""

    number: int  # the study's trial number (optuna's), in the order attempts were queued or sampled
    storage_id: int  # the storage's id of the attempt (heartbeats, claiming, setting attributes take it)
    state: State
    user_attrs: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, Any] = field(default_factory=dict)  # the storage's, per param (`store.compatible`)
    value: float | None = None
    intermediate_values: dict[int, float] = field(default_factory=dict)  # the learning curve by epoch
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None


@dataclass
class Item:
    """A trial handed to a worker."""

    number: int  # the attempt's trial number
    trial_id: int  # the storage's id of the attempt (heartbeats take it)
    key: str  # our trial id: <variant id>-s<seed>
    seed: int
    variant: Variant
    trial: Any = field(default=None, repr=False)  # the store's handle on the attempt, ours since `pop` or `ask`
    reported: set[int] = field(default_factory=set, repr=False)  # epochs of the learning curve reported
    confirm: bool = False  # a search's configuration retrained on one more seed (`search.confirm`)


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
    def of(cls, trial: Attempt | None, stale: bool = False) -> Status:
        """The status of an attempt (the latest of a trial id; None: never queued). A failure that is not the
        trial's own fault is INTERRUPTED; a finished trial on other data (`stale`) is STALE."""
        if trial is None:
            return cls.NEW
        state = trial.state
        if state is State.COMPLETE:
            return cls.STALE if stale else cls.DONE
        if state is State.FAIL:
            return cls.INTERRUPTED if resumable(trial.user_attrs.get("fail_kind")) else cls.FAILED
        if state is State.PRUNED:
            return cls.PRUNED if was_pruned(trial) else cls.SKIPPED
        return {State.RUNNING: cls.RUNNING, State.WAITING: cls.QUEUED}[state]

    @classmethod
    def counts_line(cls, counts: dict[str, int], label: bool = False) -> str:
        """'3 done, 1 running, ...' in display order, leaving out statuses with no trial."""
        return ", ".join(f"{counts[s]} {s.label if label else s.value}" for s in cls if counts.get(s, 0))


def was_pruned(trial: Attempt) -> bool:
    """A PRUNED attempt that a search's pruner stopped (trained for some epochs), not a skipped duplicate or a
    configuration rejected by the cost window (never trained), which the storage also holds as PRUNED."""
    return trial.state is State.PRUNED and Status.PRUNED.value in trial.user_attrs


# A variant (all its seeds) some but not all of whose seeds are done (reports; not a trial status).
PARTIAL = "partial"
