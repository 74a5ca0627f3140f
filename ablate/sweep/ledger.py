"""The ledger: one optuna study per ablate study; one optuna trial per attempt at (variant, seed).

optuna does the bookkeeping (storages, atomic WAITING -> RUNNING hand-over, user attributes,
heartbeats on RDB storages); this module only decides *what* to enqueue and how to read it back.

Trial user attributes: `trial_id` (`<variant id>-s<seed>`), `variant_id`, `name`, `group`,
`index`, `seed`, `config` (the resolved network/recipe/data as JSON); once running `host`, `pid`;
once finished the metrics, or `fail_reason`, `fail_kind` (`error` | `interrupted` | `died` | `data`) and
`traceback`.

Dead workers: on a local journal file, a RUNNING trial whose worker process (same host) is gone is failed
with kind `died` (`reap_dead_local_workers`). On RDB storages (PostgreSQL, ...) workers record heartbeats
while they train (`heartbeat.py`); before taking work every worker fails the trials whose heartbeat is
older than the grace period (`fail_stale`), and optuna's retry callback queues each again (same user
attributes, so same trial id and checkpoint folder) up to `max_retry` times. optuna cannot annotate a
finished trial, so such an attempt carries no `fail_reason`: `trials()` fills in kind `died` and
"worker ... stopped sending heartbeats".
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.config.load import LoadedStudy, Variant

# Reasons that are not the trial's own fault: such a trial is queued again automatically.
RESUMABLE = ("interrupted", "died")


def variant_config(v: Variant) -> dict[str, Any]:
    return {
        "net": v.train_net.canonical() if v.train_net else None,
        "net_paper": v.net.canonical() if v.net else None,
        "timm": v.timm,
        "recipe": v.recipe.model_dump(mode="json"),
        "data": v.data.model_dump(mode="json"),
    }


DEFAULT_HEARTBEAT = 30  # seconds, RDB storages only
DEFAULT_MAX_RETRY = 3
STALE_REASON = "stopped sending heartbeats"


def is_rdb_url(url: str | None) -> bool:
    return bool(url) and "://" in str(url)


def safe_url(url: str | None) -> str | None:
    """The storage URL with its password hidden (for logs)."""
    if not is_rdb_url(url):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy understands: show it as given
        return url


def rdb_url(url: str) -> str:
    """A bare postgresql:// (or postgres://) URL names no driver, and SQLAlchemy's default driver changed
    (psycopg2 up to 2.0, psycopg 3 from 2.1): name the one that is installed (psycopg2-binary is ours)."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
            if importlib.util.find_spec(module) is not None:
                return f"postgresql+{driver}{sep}{rest}"
        return f"postgresql{sep}{rest}"
    return url


def open_storage(url: str | None, results_dir: Path, heartbeat: int | None = None, grace: int | None = None,
                 max_retry: int | None = DEFAULT_MAX_RETRY) -> Any:
    """None -> the embedded journal file results/<study>/ledger.journal; a path -> that journal file;
    anything with '://' -> an optuna RDB storage (sqlite:///, postgresql://, mysql://).

    RDB storages get heartbeats every `heartbeat` seconds (default 30; 0 turns them off), a grace period
    (default 4x the heartbeat) after which a silent trial is failed, and a callback that retries such a
    trial up to `max_retry` times. Journal files ignore these (a dead local worker is found by its pid)."""
    import optuna

    if is_rdb_url(url):
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        kwargs: dict[str, Any] = {}
        if heartbeat is None:
            heartbeat = DEFAULT_HEARTBEAT
        if heartbeat:
            kwargs.update(heartbeat_interval=int(heartbeat), grace_period=int(grace or 4 * heartbeat),
                          heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                              max_retry=max_retry))
        return optuna.storages.RDBStorage(rdb_url(str(url)), **kwargs)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(url) if url else results_dir / "ledger.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def heartbeat_interval(storage: Any) -> int | None:
    """Seconds between heartbeats when the storage has them (RDB with heartbeats on), else None."""
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if callable(get) else None


@dataclass
class Item:
    """A trial handed to a worker."""

    number: int  # optuna trial number
    trial_id: int  # optuna's internal id (storage API)
    key: str  # our trial id: <variant id>-s<seed>
    seed: int
    variant: Variant


class Ledger:
    def __init__(self, loaded: LoadedStudy, storage: str | None = None, results_root: Path = Path("results"),
                 heartbeat: int | None = None, grace: int | None = None, max_retry: int | None = DEFAULT_MAX_RETRY):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.loaded = loaded
        self.dir = Path(results_root) / loaded.name
        self.storage_url = storage
        self.storage = open_storage(storage, self.dir, heartbeat, grace, max_retry)
        self.heartbeat = heartbeat_interval(self.storage)
        search = loaded.study.search
        self.search = search if search is not None and search.sampler != "grid" else None
        sampler = None
        if self.search is not None:  # optuna's samplers; grid searches are expanded and enqueued like `grid:`
            sampler = (optuna.samplers.TPESampler(seed=self.search.seed) if self.search.sampler == "tpe"
                       else optuna.samplers.RandomSampler(seed=self.search.seed))
        self.study = optuna.create_study(study_name=loaded.name, storage=self.storage, direction="maximize",
                                         load_if_exists=True, sampler=sampler)
        self.sid = self.study._study_id
        self.by_key = {v.trial_id(s): (v, s) for v in loaded.variants for s in loaded.study.seeds}

    def known(self) -> dict[str, tuple[Variant, int]]:
        """The study's (variant, seed) by trial id: its fixed variants, plus those a search has sampled."""
        if self.search is None:
            return self.by_key
        from ablate.config.load import search_variant

        out = dict(self.by_key)
        for t in sorted(self.trials(), key=lambda t: t.number):
            key = t.user_attrs.get("trial_id")
            if key and key not in out and t.params:
                out[key] = (search_variant(self.loaded, dict(t.params), t.number), self.loaded.study.seeds[0])
        return out

    # ---- reading

    def trials(self) -> list[Any]:
        """All attempts; one failed by a live worker for missing heartbeats reads as fail_kind `died`."""
        from optuna.trial import TrialState

        out = []
        for t in self.storage.get_all_trials(self.sid, deepcopy=False):
            if t.state == TrialState.FAIL and "fail_kind" not in t.user_attrs:
                t = copy.copy(t)  # never edit the storage's own object
                who = f"{t.user_attrs.get('host', '?')} pid {t.user_attrs.get('pid', '?')}"
                t.user_attrs = {**t.user_attrs, "fail_kind": "died", "fail_reason": f"worker {who} {STALE_REASON}"}
            out.append(t)
        return out

    def history(self) -> dict[str, list[Any]]:
        """Our trial id -> all its attempts (queued ones too, not skipped duplicates), oldest first."""
        out: dict[str, list[Any]] = {}
        for t in sorted(self.trials(), key=lambda t: t.number):
            key = t.user_attrs.get("trial_id")
            if key and t.state.name != "PRUNED":
                out.setdefault(key, []).append(t)
        return out

    def latest(self) -> dict[str, Any]:
        """Our trial id -> its most relevant attempt (complete > running > waiting > the last failure)."""
        from optuna.trial import TrialState

        rank = {TrialState.COMPLETE: 4, TrialState.RUNNING: 3, TrialState.WAITING: 2, TrialState.FAIL: 1,
                TrialState.PRUNED: 0}
        best: dict[str, Any] = {}
        for t in self.trials():
            key = t.user_attrs.get("trial_id")
            if key is None:
                continue
            old = best.get(key)
            if old is None or (rank[t.state], t.number) > (rank[old.state], old.number):
                best[key] = t
        return best

    def attempts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials():
            key = t.user_attrs.get("trial_id")
            if key and t.state.name != "WAITING" and t.state.name != "PRUNED":
                out[key] = out.get(key, 0) + 1
        return out

    # ---- enqueueing (idempotent by trial id)

    def sync(self, retry_failed: bool = False) -> dict[str, int]:
        """Queue every (variant, seed) of the study that is not complete, running or queued.
        Trials that were interrupted or whose worker died are queued again; failures by their own
        fault only with `retry_failed`. Returns how many were queued and how many are done."""
        from optuna.trial import TrialState

        self.fail_stale()
        self.reap_dead_local_workers()
        queued = done = 0
        with self._lock():
            latest = self.latest()
            if self.search is not None:
                return self._sync_search(latest, retry_failed)
            for key, (v, seed) in self.by_key.items():
                t = latest.get(key)
                if t is not None and t.state == TrialState.COMPLETE:
                    done += 1
                    continue
                if t is not None and t.state in (TrialState.RUNNING, TrialState.WAITING):
                    continue
                own_fault = t is not None and t.user_attrs.get("fail_kind") not in RESUMABLE
                if t is not None and t.state == TrialState.FAIL and own_fault and not retry_failed:
                    continue
                self.study.enqueue_trial({}, user_attrs=self._attrs(v, seed), skip_if_exists=False)
                queued += 1
        return {"queued": queued, "done": done}

    def _sync_search(self, latest: dict[str, Any], retry_failed: bool) -> dict[str, int]:
        """A search samples new trials as it runs; here only interrupted (or, asked, failed) ones are queued
        again, with their sampled parameters fixed."""
        from optuna.trial import TrialState

        queued = done = 0
        known = self.known()
        for key, t in latest.items():
            if t.state == TrialState.COMPLETE:
                done += 1
            elif t.state == TrialState.FAIL and key in known and (
                    t.user_attrs.get("fail_kind") in RESUMABLE or retry_failed):
                v, seed = known[key]
                self.study.enqueue_trial(dict(t.params), user_attrs=self._attrs(v, seed))
                queued += 1
        return {"queued": queued, "done": done}

    def _search_budget_left(self) -> int:
        from optuna.trial import TrialState

        used = set()
        for key, t in self.latest().items():
            if t.state != TrialState.FAIL or t.user_attrs.get("fail_kind") not in RESUMABLE:
                used.add(key)
        return self.search.trials - len(used) if self.search is not None else 0

    def _ask(self) -> Item | None:
        """Next search trial: a queued (interrupted) one first, else a new sample from optuna's sampler."""
        from optuna.trial import TrialState

        from ablate.config.load import search_variant
        from ablate.config.study import Range

        assert self.search is not None
        for _ in range(20):  # a sampler may propose a configuration already trained: ask again
            if self._search_budget_left() <= 0 and not self.storage.get_all_trials(
                    self.sid, deepcopy=False, states=(TrialState.WAITING,)):
                return None
            trial = self.study.ask()
            params: dict[str, Any] = {}
            for key, dim in self.search.space.items():
                if isinstance(dim, Range):
                    if dim.is_int:
                        params[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=int(dim.step or 1))
                    else:
                        params[key] = trial.suggest_float(key, dim.low, dim.high, step=dim.step, log=dim.log)
                else:
                    params[key] = trial.suggest_categorical(key, dim)
            v = search_variant(self.loaded, params, trial.number)
            seed = self.loaded.study.seeds[0]
            key = v.trial_id(seed)
            if self._done_elsewhere(key, trial.number):
                self.storage.set_trial_user_attr(trial._trial_id, "trial_id", key)
                self.storage.set_trial_user_attr(trial._trial_id, "skipped", "configuration already trained")
                self.storage.set_trial_state_values(trial._trial_id, TrialState.PRUNED)
                continue
            for k, value in {**self._attrs(v, seed), "host": socket.gethostname(), "pid": os.getpid()}.items():
                self.storage.set_trial_user_attr(trial._trial_id, k, value)
            self._first_heartbeat(trial._trial_id)
            return Item(number=trial.number, trial_id=trial._trial_id, key=key, seed=seed, variant=v)
        return None

    def _attrs(self, v: Variant, seed: int) -> dict[str, Any]:
        return {"trial_id": v.trial_id(seed), "variant_id": v.id, "name": v.name, "group": v.group or "",
                "index": v.index, "seed": seed, "config": json.dumps(variant_config(v), sort_keys=True)}

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise enqueueing between local processes (two `ablate run` at once queue nothing twice)."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".enqueue.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- handing out work

    def pop(self) -> Item | None:
        """Take the next queued trial (optuna's own atomic WAITING -> RUNNING switch); None when none is left."""
        from optuna.trial import TrialState

        if self.search is not None:
            return self._ask()
        while True:
            waiting = self.storage.get_all_trials(self.sid, deepcopy=False, states=(TrialState.WAITING,))
            if not waiting:
                return None
            for t in sorted(waiting, key=lambda t: t.number):
                try:
                    if not self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                        continue  # another worker took it first
                except RuntimeError:  # finished meanwhile (optuna raises UpdateFinishedTrialError)
                    continue
                key = t.user_attrs.get("trial_id")
                if key not in self.by_key or self._done_elsewhere(key, t.number):
                    # queued by an older version of the study file, or a duplicate from a concurrent enqueue
                    self.storage.set_trial_user_attr(t._trial_id, "skipped", "not in the study" if key not in
                                                     self.by_key else "already complete")
                    self.storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)
                    continue
                self.storage.set_trial_user_attr(t._trial_id, "host", socket.gethostname())
                self.storage.set_trial_user_attr(t._trial_id, "pid", os.getpid())
                self._first_heartbeat(t._trial_id)
                v, seed = self.by_key[key]
                return Item(number=t.number, trial_id=t._trial_id, key=key, seed=seed, variant=v)

    def _done_elsewhere(self, key: str, number: int) -> bool:
        """Another attempt of the same trial id is complete, or running and older (of two duplicates that
        start at once, the older one runs and the newer one is skipped: never both, never neither)."""
        from optuna.trial import TrialState

        return any(t.user_attrs.get("trial_id") == key and t.number != number and
                   (t.state == TrialState.COMPLETE or (t.state == TrialState.RUNNING and t.number < number))
                   for t in self.trials())

    def _first_heartbeat(self, trial_id: int) -> None:
        """Record a heartbeat as soon as a trial is ours: one that never had any is never found stale."""
        if self.heartbeat:
            with contextlib.suppress(Exception):
                self.storage.record_heartbeat(trial_id)

    def fail_stale(self) -> None:
        """RDB storages with heartbeats: fail the running trials whose worker sent no heartbeat within the
        grace period; the storage's retry callback queues each again (optuna's `fail_stale_trials`)."""
        if not self.heartbeat:
            return
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)

    def running(self) -> int:
        """How many trials are running (on any worker)."""
        from optuna.trial import TrialState

        return len(self.storage.get_all_trials(self.sid, deepcopy=False, states=(TrialState.RUNNING,)))

    def complete(self, item: Item, metrics: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        for k, value in metrics.items():
            self.storage.set_trial_user_attr(item.trial_id, k, value)
        objective = self.search.objective if self.search is not None else "top1"
        value = metrics.get(objective)
        self.storage.set_trial_state_values(item.trial_id, TrialState.COMPLETE,
                                            values=[float(value) if value is not None else 0.0])

    def fail(self, item: Item, reason: str, kind: str = "error", traceback: str | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        from optuna.trial import TrialState

        for k, value in (metrics or {}).items():
            self.storage.set_trial_user_attr(item.trial_id, k, value)
        self.storage.set_trial_user_attr(item.trial_id, "fail_reason", reason)
        self.storage.set_trial_user_attr(item.trial_id, "fail_kind", kind)
        if traceback:
            self.storage.set_trial_user_attr(item.trial_id, "traceback", traceback)
        self.storage.set_trial_state_values(item.trial_id, TrialState.FAIL)

    def reap_dead_local_workers(self) -> int:
        """A RUNNING trial whose worker process on this host no longer exists was killed (SIGKILL,
        power loss): record it as failed with kind `died`, so `sync` queues it again. RDB storages
        with heartbeats leave this to `fail_stale`, which detects dead workers on every host (and a pid
        says little across containers that share a host name)."""
        from optuna.trial import TrialState

        if self.heartbeat:
            return 0
        n = 0
        host = socket.gethostname()
        for t in self.storage.get_all_trials(self.sid, deepcopy=False, states=(TrialState.RUNNING,)):
            pid = t.user_attrs.get("pid")
            if t.user_attrs.get("host") == host and isinstance(pid, int) and not _alive(pid):
                try:
                    self.storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker process {pid} died")
                    self.storage.set_trial_user_attr(t._trial_id, "fail_kind", "died")
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                    n += 1
                except RuntimeError:
                    pass
        return n


def _alive(pid: int) -> bool:
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
