"""Heartbeats of a running trial on an RDB ledger (PostgreSQL, MySQL, SQLite).

While a worker trains a trial, a daemon thread records a heartbeat (`Store.record_heartbeat(trial_id)`)
every `interval` seconds. Another worker that finds no heartbeat within the grace period marks the
trial failed (`optuna.storages.fail_stale_trials`) and queues a retry (the storage's retry callback).

The thread also notices when the trial was taken away from this worker (its heartbeats did not reach the
database in time, e.g. a network partition, and another worker failed it): it then sets `lost`, which
also reads as a stop request, so the trial stops at its next step instead of running twice.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from .states import State

if TYPE_CHECKING:
    from .store import Store


class StopEither(threading.Event):
    """An event that reads as set when it is set or any of `others` is (run_trial only calls is_set)."""

    def __init__(self, *others: threading.Event | None):
        super().__init__()
        self._others = [e for e in others if e is not None]

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self._others)


class Heartbeat:
    """`with Heartbeat(store, trial_id, interval): train()`; a no-op when interval is None or 0."""

    def __init__(self, store: Store, trial_id: int, interval: int | None, log: Any = None):
        self.store = store
        self.trial_id = trial_id
        self.interval = interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._failures = 0

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self._beat()  # at once: a trial without any heartbeat is never considered stale
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.trial_id}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        assert self.interval
        while not self._stop.wait(self.interval):
            self._beat()
            self._check_owned()

    def _beat(self) -> None:
        try:
            self.store.record_heartbeat(self.trial_id)
            self._failures = 0
        except Exception as e:  # noqa: BLE001 - a database hiccup must not kill the training
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:
                self._log(f"heartbeat of trial {self.trial_id} not recorded ({self._failures}x): "
                          f"{type(e).__name__}: {e}")

    def _check_owned(self) -> None:
        try:
            state = self.store.state_of(self.trial_id)
        except Exception:  # noqa: BLE001 - unknown: keep training
            return
        if state is not State.RUNNING and not self._stop.is_set():
            self.lost.set()
