"""Reading a ledger's attempts (`Ledger` calls these): each as ablate sees it (one whose worker died reads as
failed, kind `died`), each trial id's latest attempt and history, the attempts per trial id and the code
versions of the finished ones. Pure functions over `states.Attempt`s, except for the liveness of local pids."""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
from collections.abc import Callable

from .states import Attempt, FailKind, State, was_pruned

STALE_REASON = "stopped sending heartbeats"

# the most relevant attempt of a trial id: complete > running > waiting > the last failure > pruned by a search's
# pruner > a skipped duplicate; a stale result (trained on other data) ranks below a queued attempt, above a failure
_RANK = {State.COMPLETE: 4, State.RUNNING: 3, State.WAITING: 2, State.FAIL: 1, State.PRUNED: 0}


def as_seen(trials: list[Attempt], heartbeat: int | None, stale: set[int]) -> list[Attempt]:
    """All attempts; one failed by a live worker for missing heartbeats reads as fail_kind `died`, and so does a
    running one whose worker process (on this host, journal ledgers) is gone, or (`stale`, RDB ledgers) whose
    heartbeats stopped. Nothing is written."""
    host = socket.gethostname()
    return [_as_seen(t, host, heartbeat, stale) for t in trials]


def _as_seen(t: Attempt, host: str, heartbeat: int | None, stale: set[int]) -> Attempt:
    who = f"{t.user_attrs.get('host', '?')} pid {t.user_attrs.get('pid', '?')}"
    if t.state is State.FAIL and "fail_kind" not in t.user_attrs:  # failed by optuna's stale check
        reason = f"worker {who} {STALE_REASON}"
    elif t.state is State.RUNNING and owner_gone(t, host, heartbeat):
        reason = owner_gone(t, host, heartbeat)
    elif t.state is State.RUNNING and t.storage_id in stale:  # its worker stopped sending heartbeats
        reason = f"worker {who} {STALE_REASON}"
    else:
        return t
    return dataclasses.replace(t, state=State.FAIL, user_attrs={**t.user_attrs, "fail_kind": FailKind.DIED.value,
                                                                 "fail_reason": reason})


def latest(trials: list[Attempt], is_stale: Callable[[Attempt], bool]) -> dict[str, Attempt]:
    """Our trial id -> its most relevant attempt (`_RANK`)."""
    best: dict[str, Attempt] = {}

    def score(t: Attempt) -> tuple[float, int]:
        return (1.5 if is_stale(t) else 0.5 if was_pruned(t) else _RANK[t.state], t.number)

    for t in trials:
        key = t.user_attrs.get("trial_id")
        if key is None:
            continue
        old = best.get(key)
        if old is None or score(t) > score(old):
            best[key] = t
    return best


def history(trials: list[Attempt]) -> dict[str, list[Attempt]]:
    """Our trial id -> all its attempts (queued and pruned ones too, not skipped duplicates), oldest first."""
    out: dict[str, list[Attempt]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = t.user_attrs.get("trial_id")
        if key and (t.state is not State.PRUNED or was_pruned(t)):
            out.setdefault(key, []).append(t)
    return out


def attempts(trials: list[Attempt]) -> dict[str, int]:
    """Our trial id -> how many attempts were taken (neither queued ones nor skipped duplicates)."""
    out: dict[str, int] = {}
    for t in trials:
        key = t.user_attrs.get("trial_id")
        if key and t.state is not State.WAITING and (t.state is not State.PRUNED or was_pruned(t)):
            out[key] = out.get(key, 0) + 1
    return out


def versions(latest: dict[str, Attempt], keys: set[str] | dict[str, object]) -> dict[str, int]:
    """Code version -> how many of the study's finished trials it trained (unknown: before versions were
    recorded)."""
    out: dict[str, int] = {}
    for key, t in latest.items():
        if key in keys and t.state is State.COMPLETE:
            v = str(t.user_attrs.get("code_version", "unknown"))
            out[v] = out.get(v, 0) + 1
    return out


def version_note(versions: dict[str, int]) -> str | None:
    """One line when the study's results come from more than one code version."""
    if len(versions) < 2:
        return None
    parts = ", ".join(f"{v} ({n} trial{'s' * (n != 1)})" for v, n in sorted(versions.items()))
    return f"note: results come from {len(versions)} code versions: {parts}"


OWNERLESS_GRACE = 120.0  # seconds a claimed trial may go without its owner's record (written milliseconds later)


def owner_gone(t: Attempt, host: str, heartbeat: int | None) -> str | None:
    """Why running attempt `t` has no live owner (None: it may have one). No owner record (host, pid) long after
    it was claimed: its worker was killed, or the disk filled, between the claim and the record, on any storage.
    Without heartbeats: its worker process was on this host and is gone."""
    if "pid" not in t.user_attrs and t.datetime_start is not None:
        start = t.datetime_start
        now = datetime.datetime.now(start.tzinfo)
        if (now - start).total_seconds() > OWNERLESS_GRACE:
            return f"no worker recorded taking it within {OWNERLESS_GRACE:.0f} s (killed, or the disk filled)"
    if not heartbeat and dead_here(t, host):
        return f"worker process {t.user_attrs.get('pid')} died"
    return None


def dead_here(t: Attempt, host: str) -> bool:
    """A running attempt whose worker process was on this host and is gone."""
    pid = t.user_attrs.get("pid")
    return t.user_attrs.get("host") == host and isinstance(pid, int) and not alive(pid)


def alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed child not yet reaped by its parent) is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
