"""Queueing and handing out the trials of a study of fixed variants (`Ledger` calls these): `sync_variants`
queues what is not done (idempotent by trial id), `pop` hands each queued trial to exactly one worker, and
`reap_dead_local_workers` fails the trials of dead local workers so that they are queued again (a search
samples its trials instead: `search.py`)."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import TYPE_CHECKING

from .states import Attempt, FailKind, Item, State, Status, resumable
from .store import compatible
from .view import owner_gone

if TYPE_CHECKING:
    from ablate.config.variant import Variant

    from .ledger import Ledger


def sync_variants(ledger: Ledger, latest: dict[str, Attempt], retry_failed: bool) -> dict[str, int]:
    """Queue every (variant, seed) that is not complete, running or queued; failures by the trial's own fault
    only with `retry_failed`. Returns how many were queued (`Status.QUEUED`) and are done (`Status.DONE`)."""
    queued = done = 0
    for key, (v, seed) in ledger.by_key.items():
        t = latest.get(key)
        if t is not None and t.state is State.COMPLETE and not ledger.is_stale(t):
            done += 1
            continue
        if t is not None and t.state in (State.RUNNING, State.WAITING):
            continue
        own_fault = t is not None and not resumable(t.user_attrs.get("fail_kind"))
        if t is not None and t.state is State.FAIL and own_fault and not retry_failed:
            continue
        ledger.store.enqueue(ledger.attrs(v, seed))
        queued += 1
    return {Status.QUEUED: queued, Status.DONE: done}


def pop(ledger: Ledger) -> Item | None:
    """Take the next queued trial of this study file; None when none is left.

    Not `Study.ask()`, which takes whichever trial of the optuna study is queued first: a worker takes only
    its own study file version's trials (another version of the study may be running on the same ledger).
    One snapshot of the study's trials per round chooses the candidates (oldest first) and tells which
    are duplicates; a trial is claimed as `Study.ask` claims one (`Store.claim`)."""
    while True:
        snapshot = ledger.store.trials()
        waiting = sorted((t for t in snapshot if t.state is State.WAITING
                          and t.user_attrs.get("trial_id") in ledger.by_key), key=lambda t: t.number)
        if not waiting:
            return None
        for t in waiting:
            item = _claim(ledger, t, snapshot)
            if item is not None:
                return item
        # every candidate was taken by another worker or skipped: look again (more may be queued now)


def _claim(ledger: Ledger, t: Attempt, snapshot: list[Attempt]) -> Item | None:
    """Switch queued attempt `t` to RUNNING for this worker; None when another worker took it first, or when
    it is a duplicate (then it is finished as skipped)."""
    trial = ledger.store.claim(t)
    if trial is None:
        return None
    key = t.user_attrs["trial_id"]
    why = _duplicate(ledger, key, t.number, snapshot)
    if why:
        ledger.store.set_attrs(trial, {Status.SKIPPED.value: why})
        with contextlib.suppress(RuntimeError, ValueError):  # finished meanwhile: it is not trained either
            ledger.store.tell(trial, State.PRUNED)
        return None
    ledger.store.set_attrs(trial, {"host": socket.gethostname(), "pid": os.getpid()})
    first_heartbeat(ledger, t.storage_id)
    v, seed = ledger.by_key[key]
    _set_params(ledger, t.storage_id, v, snapshot)
    return Item(number=t.number, trial_id=t.storage_id, key=key, seed=seed, variant=v, trial=trial)


def _duplicate(ledger: Ledger, key: str, number: int, snapshot: list[Attempt]) -> str | None:
    """Why queued attempt `number` of trial id `key` is a duplicate (None: it is not): another attempt is
    complete, or an older one is running or queued. Of two attempts queued at once (two `ablate run` on
    two hosts) the older one runs and the newer one is skipped: never both, never neither. The snapshot
    was read before the claim, and suffices: an attempt queued after it is newer than this one, and its
    worker's own snapshot holds this one (queued or running) and so skips that one."""
    for t in snapshot:
        if t.user_attrs.get("trial_id") != key or t.number == number:
            continue
        if t.state is State.COMPLETE and not ledger.is_stale(t):
            return "already complete"
        if t.number < number and t.state in (State.RUNNING, State.WAITING):
            return f"already {Status.of(t).value} (trial {t.number})"  # running or queued
    return None


def _set_params(ledger: Ledger, storage_id: int, v: Variant, snapshot: list[Attempt]) -> None:
    """The trial's optuna params: the variant's values of the fields the study changes (`params.py`).
    optuna's public way to give a trial params is `Trial.suggest_*`, which samples a value unless the
    trial was enqueued with it fixed; these are known values of a trial already queued (perhaps by an
    older ablate, with no fixed params), so they go through the storage API (`Store.set_param`). A field
    whose distribution earlier trials of the ledger hold differently (the study file was edited) is left
    out: optuna refuses a categorical parameter whose choices change."""
    from .params import variant_params

    for name, value in variant_params(v, ledger.param_space).items():
        dist = ledger.param_space[name]
        if name not in ledger.param_ok:
            old = next((t.distributions[name] for t in snapshot if name in t.distributions), None)
            ledger.param_ok[name] = old is None or compatible(old, dist)
        if ledger.param_ok[name]:
            ledger.store.set_param(storage_id, name, value, dist)


def first_heartbeat(ledger: Ledger, storage_id: int) -> None:
    """Record a heartbeat as soon as a trial is ours: one that never had any is never found stale."""
    if ledger.heartbeat:
        with contextlib.suppress(Exception):
            ledger.store.record_heartbeat(storage_id)


def reap_dead_local_workers(ledger: Ledger) -> int:
    """A RUNNING trial without a live owner (`view.owner_gone`: its worker process on this host no longer exists,
    or no worker ever recorded taking it) was abandoned (SIGKILL, power loss, a full disk): record it as failed
    with kind `died`, so `sync` queues it again. With heartbeats (RDB storages) a recorded owner's liveness is
    left to `fail_stale`, which detects dead workers on every host (and a pid says little across containers
    that share a host name)."""
    if not ledger.exists:
        return 0
    n = 0
    host = socket.gethostname()
    for t in ledger.store.trials(State.RUNNING):
        why = owner_gone(t, host, ledger.heartbeat)
        if why is None:
            continue
        try:  # another process's trial: set through the storage, by its id
            ledger.store.set_attrs(t, {"fail_reason": why, "fail_kind": FailKind.DIED.value})
            ledger.store.tell(t, State.FAIL)
            n += 1
        except (RuntimeError, ValueError):  # finished meanwhile (the storage's or tell's word for it)
            pass
    return n
