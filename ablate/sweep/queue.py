"""Queueing and handing out the trials of a study of fixed variants (mixed into `Ledger`): `sync` queues what
is not done (idempotent by trial id), `pop` hands each queued trial to exactly one worker, and the trials of
dead workers are failed so that they are queued again (a search samples its trials instead: `search.py`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .params import compatible, variant_params
from .states import FailKind, Status, resumable
from .view import _dead_here, storage_id

if TYPE_CHECKING:
    from ablate.config.variant import Variant

    from .ledger import Item


class LedgerQueue:
    """The queue half of `Ledger` (its reading half, `LedgerView`, is mixed in beside it)."""

    dir: Path
    param_space: dict[str, Any]
    _param_ok: dict[str, bool]

    def sync(self, retry_failed: bool = False) -> dict[str, int]:
        """Queue every (variant, seed) of the study that is not complete, running or queued.
        Failures that are not the trial's own fault (`FailKind.resumable`: interrupted, worker died, data
        unreadable, disk/file system) are queued again; failures by their own fault only with `retry_failed`.
        Returns how many were queued (key `Status.QUEUED`) and how many are done (`Status.DONE`)."""
        self.fail_stale()
        self.reap_dead_local_workers()
        with self._lock():
            latest = self.latest()
            if self.search is not None:
                return self._sync_search(latest, retry_failed)
            return self._sync_variants(latest, retry_failed)

    def _sync_variants(self, latest: dict[str, Any], retry_failed: bool) -> dict[str, int]:
        from optuna.trial import TrialState

        queued = done = 0
        for key, (v, seed) in self.by_key.items():
            t = latest.get(key)
            if t is not None and t.state == TrialState.COMPLETE and not self.is_stale(t):
                done += 1
                continue
            if t is not None and t.state in (TrialState.RUNNING, TrialState.WAITING):
                continue
            own_fault = t is not None and not resumable(t.user_attrs.get("fail_kind"))
            if t is not None and t.state == TrialState.FAIL and own_fault and not retry_failed:
                continue
            self.study.enqueue_trial({}, user_attrs=self._attrs(v, seed), skip_if_exists=False)
            queued += 1
        return {Status.QUEUED: queued, Status.DONE: done}

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise enqueueing between local processes (two `ablate run` at once queue nothing twice)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".enqueue.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- handing out work

    def pop(self) -> Item | None:
        """Take the next queued trial of this study file; None when none is left.

        Not `Study.ask()`, which takes whichever trial of the optuna study is queued first: a worker takes only
        its own study file version's trials (another version of the study may be running on the same ledger).
        One snapshot of the study's trials per round chooses the candidates (oldest first) and tells which
        are duplicates; a trial is claimed as `Study.ask` claims one (`_claim`)."""
        from optuna.trial import TrialState

        if self.search is not None:
            return self._ask()
        while True:
            snapshot = self.study.get_trials(deepcopy=False)
            waiting = sorted((t for t in snapshot if t.state == TrialState.WAITING
                              and t.user_attrs.get("trial_id") in self.by_key), key=lambda t: t.number)
            if not waiting:
                return None
            for t in waiting:
                item = self._claim(t, snapshot)
                if item is not None:
                    return item
            # every candidate was taken by another worker or skipped: look again (more may be queued now)

    def _claim(self, t: Any, snapshot: list[Any]) -> Item | None:
        """Switch queued trial `t` to RUNNING for this worker; None when another worker took it first, or when
        it is a duplicate (then it is finished as skipped)."""
        import optuna
        from optuna.trial import TrialState

        from .ledger import Item

        try:
            # the storage's own atomic WAITING -> RUNNING switch, as optuna's ask does it: True for the one
            # worker that switched the trial; False, or UpdateFinishedTrialError (a RuntimeError), for the others
            if not self.storage.set_trial_state_values(storage_id(t), TrialState.RUNNING):
                return None
        except RuntimeError:
            return None
        trial = optuna.trial.Trial(self.study, storage_id(t))  # ours now: the Trial `Study.ask` would build
        key = t.user_attrs["trial_id"]
        why = self._duplicate(key, t.number, snapshot)
        if why:
            trial.set_user_attr(Status.SKIPPED.value, why)
            with contextlib.suppress(RuntimeError, ValueError):  # finished meanwhile: it is not trained either
                self.study.tell(trial, state=TrialState.PRUNED)
            return None
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        self._first_heartbeat(storage_id(t))
        v, seed = self.by_key[key]
        self._set_params(storage_id(t), v, snapshot)
        return Item(number=t.number, trial_id=storage_id(t), key=key, seed=seed, variant=v, trial=trial)

    def _duplicate(self, key: str, number: int, snapshot: list[Any]) -> str | None:
        """Why queued attempt `number` of trial id `key` is a duplicate (None: it is not): another attempt is
        complete, or an older one is running or queued. Of two attempts queued at once (two `ablate run` on
        two hosts) the older one runs and the newer one is skipped: never both, never neither. The snapshot
        was read before the claim, and suffices: an attempt queued after it is newer than this one, and its
        worker's own snapshot holds this one (queued or running) and so skips that one."""
        from optuna.trial import TrialState

        for t in snapshot:
            if t.user_attrs.get("trial_id") != key or t.number == number:
                continue
            if t.state == TrialState.COMPLETE and not self.is_stale(t):
                return "already complete"
            if t.number < number and t.state in (TrialState.RUNNING, TrialState.WAITING):
                return f"already {Status.of(t).value} (trial {t.number})"  # running or queued
        return None

    def _set_params(self, trial_id: int, v: Variant, snapshot: list[Any]) -> None:
        """The trial's optuna params: the variant's values of the fields the study changes (`params.py`).
        optuna's public way to give a trial params is `Trial.suggest_*`, which samples a value unless the
        trial was enqueued with it fixed; these are known values of a trial already queued (perhaps by an
        older ablate, with no fixed params), so they go through the storage API (`BaseStorage.set_trial_param`,
        what `suggest_*` ends in). A field whose distribution earlier trials of the ledger hold differently
        (the study file was edited) is left out: optuna refuses a categorical parameter whose choices change."""
        for name, value in variant_params(v, self.param_space).items():
            dist = self.param_space[name]
            if name not in self._param_ok:
                old = next((t.distributions[name] for t in snapshot if name in t.distributions), None)
                self._param_ok[name] = old is None or compatible(old, dist)
            if self._param_ok[name]:
                with contextlib.suppress(ValueError):  # another version's trial set it meanwhile: leave it out
                    self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)

    def _first_heartbeat(self, trial_id: int) -> None:
        """Record a heartbeat as soon as a trial is ours: one that never had any is never found stale."""
        if self.heartbeat:
            with contextlib.suppress(Exception):
                self.storage.record_heartbeat(trial_id)

    # ---- trials of dead workers

    def fail_stale(self) -> None:
        """RDB storages with heartbeats: fail the running trials whose worker sent no heartbeat within the
        grace period; the storage's retry callback queues each again (optuna's `fail_stale_trials`)."""
        if not self.heartbeat:
            return
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)

    def reap_dead_local_workers(self) -> int:
        """A RUNNING trial whose worker process on this host no longer exists was killed (SIGKILL,
        power loss): record it as failed with kind `died`, so `sync` queues it again. RDB storages
        with heartbeats leave this to `fail_stale`, which detects dead workers on every host (and a pid
        says little across containers that share a host name)."""
        from optuna.trial import TrialState

        if self.heartbeat or self.study is None:
            return 0
        n = 0
        host = socket.gethostname()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not _dead_here(t, host):
                continue
            try:  # another process's trial: no Trial object of ours, so the storage's (public) attribute setter
                self.storage.set_trial_user_attr(storage_id(t), "fail_reason",
                                                 f"worker process {t.user_attrs.get('pid')} died")
                self.storage.set_trial_user_attr(storage_id(t), "fail_kind", FailKind.DIED.value)
                self.study.tell(t.number, state=TrialState.FAIL)
                n += 1
            except (RuntimeError, ValueError):  # finished meanwhile (the storage's or tell's word for it)
                pass
        return n
