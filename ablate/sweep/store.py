"""The ledger's one seam to optuna: the storage (an embedded journal file, or an RDB URL with heartbeats), the
optuna study, and every read and write of its trials. Everything else in ablate speaks ablate's own types:
attempts come out as `states.Attempt` with a `states.State`, a trial a worker holds is an opaque handle, and a
trial finished by someone else is `TakenOver`.

optuna's public API covers almost all of it. Where it does not, the private name is used once, in one small
function below with a test of its own (tests/test_store.py), so that an optuna release that changes it breaks
one function here:
- `_storage_id`: a trial's id in its storage (`Trial._trial_id`, `FrozenTrial._trial_id`);
- `_handle`: the `Trial` object of a trial claimed by id (what `Study.ask` builds after its claim);
- `_stale_ids`: the running trials whose heartbeat is too old, read only (`BaseHeartbeat._get_stale_trial_ids`);
- `claim`: the storage's atomic WAITING -> RUNNING switch by id (what optuna's `_pop_waiting_trial_id` does).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from ablate.secrets import safe_url

from .journal import check_journal, repair_tail, torn
from .options import DEFAULT_HEARTBEAT, LedgerError, LedgerOptions
from .states import Attempt, State
from .storage import is_rdb_url, rdb_error, rdb_target, storage_faults

_STATES = {State.WAITING: TrialState.WAITING, State.RUNNING: TrialState.RUNNING, State.COMPLETE: TrialState.COMPLETE,
           State.FAIL: TrialState.FAIL, State.PRUNED: TrialState.PRUNED}
_OURS = {theirs: ours for ours, theirs in _STATES.items()}


class TakenOver(RuntimeError):
    """The attempt was finished by someone else (another worker failed it for missing heartbeats and retries it)."""


# ---- the storage


def open_storage(opts: LedgerOptions, study_dir: Path) -> Any:
    """The optuna storage `opts.storage` names: None -> the embedded journal file `study_dir`/ledger.journal; a path
    -> that journal file; anything with '://' -> an optuna RDB storage (sqlite:///, postgresql://, mysql://).

    RDB storages get heartbeats every `heartbeat` seconds (default 30; 0 turns them off), a grace period
    (default 4x the heartbeat) after which a silent trial is failed, and a callback that retries such a
    trial up to `max_retry` times. Journal files ignore these (a dead local worker is found by its pid).
    Read-only, a ledger that does not exist is None (nothing is created). Every problem is a `LedgerError`."""
    if not is_rdb_url(opts.storage):
        return _journal_storage(Path(opts.storage) if opts.storage else study_dir / "ledger.journal", opts.readonly)
    url = rdb_target(str(opts.storage), opts.readonly)
    if url is None:
        return None
    try:
        return optuna.storages.RDBStorage(url, skip_table_creation=opts.readonly, **_heartbeat_kwargs(opts))
    except Exception as e:  # noqa: BLE001 - a missing driver, a refused connection, an unknown dialect, ...
        raise rdb_error(str(opts.storage), e) from None


def _heartbeat_kwargs(opts: LedgerOptions) -> dict[str, Any]:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    heartbeat = DEFAULT_HEARTBEAT if opts.heartbeat is None else opts.heartbeat
    if not heartbeat:
        return {}
    return {"heartbeat_interval": int(heartbeat), "grace_period": int(opts.grace or 4 * heartbeat),
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=opts.max_retry)}


def _journal_storage(path: Path, readonly: bool) -> Any:
    if readonly and not path.exists():
        return None
    if path.is_dir():
        raise LedgerError(str(path), "is a folder, not a ledger journal file")
    try:
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(safe_journal(path, repair=not readonly))
    except LedgerError:
        raise
    except OSError as e:
        raise LedgerError(str(path), f"cannot open the ledger: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - optuna's replay of a record it cannot apply
        text = str(e).strip()
        raise LedgerError(str(path), f"not an ablate/optuna ledger journal ({type(e).__name__}: "
                          f"{text.splitlines()[0] if text else type(e).__name__})") from None


@contextlib.contextmanager
def _journal_lock(path: Path) -> Iterator[None]:
    """optuna's own lock of a journal file (the one its appends take)."""
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


class SafeJournalFileBackend(JournalFileBackend):
    """Before each append, a torn last record (left by a write cut short) is cut off under the lock; without this
    the next record is appended onto it and optuna can no longer read the journal."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if torn(self.path):
            with _journal_lock(self.path):
                repair_tail(self.path)
        try:
            super().append_logs(logs)
        except OSError as e:  # a full disk: say which file (a torn record it left is cut off next time)
            if e.filename is None:
                e.filename = str(self.path)
            raise


def safe_journal(path: Path, repair: bool = True) -> SafeJournalFileBackend:
    """A journal file backend that survives a torn last record (a full disk, a crash mid-write).

    Opened for writing (`repair`), a last line without its newline is cut off after a copy of the file is
    kept as `<journal>.torn-<time>.bak` (one line on stderr says so); so is one found before any later
    append. Opened read-only the file is only checked (optuna's reader skips a torn last line). A record
    that is not JSON before the last line is a LedgerError naming the file and the line."""
    check_journal(path)
    if repair and path.exists() and torn(path):
        with _journal_lock(path):
            repair_tail(path)
    return SafeJournalFileBackend(path)


def heartbeat_interval(storage: Any) -> int | None:
    """Seconds between heartbeats when the storage has them (RDB with heartbeats on), else None."""
    get = getattr(storage, "get_heartbeat_interval", None)  # optuna's heartbeat interface, on RDB storages only
    return get() if callable(get) else None


# ---- samplers, pruners and param distributions


def make_sampler(search: Any) -> Any:
    """optuna's sampler of a search (None: a study of fixed variants, optuna's default sampler unused)."""
    if search is None:
        return None
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=search.seed)
    return optuna.samplers.RandomSampler(seed=search.seed)


def make_pruner(search: Any) -> Any:
    """optuna's pruner for a search's `pruner:` (its defaults); NopPruner for `none` and for every study of
    fixed variants (optuna's own default, a MedianPruner, would otherwise judge their learning curves)."""
    name = getattr(search, "pruner", "none") if search is not None else "none"
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def distribution(values: list[Any]) -> Any:
    """The distribution of a param whose values are `values` (in study order): numbers an int or float range from
    the smallest to the largest value, anything else (or a single number) the categorical of its values."""
    numbers = [x for x in values if isinstance(x, int | float) and not isinstance(x, bool)]
    if len(numbers) == len(values) and min(numbers) < max(numbers):
        if all(isinstance(x, int) for x in numbers):
            return IntDistribution(int(min(numbers)), int(max(numbers)))
        return FloatDistribution(float(min(numbers)), float(max(numbers)))
    return CategoricalDistribution(list(dict.fromkeys(values)))


def compatible(old: Any, new: Any) -> bool:
    """Whether optuna accepts `new` for a parameter that earlier trials of the study hold with `old` (same
    kind; categorical choices cannot change): an edited study file that gives a field new values records
    that field no more rather than failing the trial."""
    if type(old) is not type(new):
        return False
    if isinstance(old, CategoricalDistribution):
        return old == new
    return getattr(old, "log", False) == getattr(new, "log", False)


# ---- what optuna has no public name for: each once, each tested (tests/test_store.py)


def _storage_id(trial: optuna.trial.Trial | FrozenTrial) -> int:
    """A trial's id in its storage, which the storage's methods take (heartbeats, claiming a queued trial)."""
    return trial._trial_id  # optuna exposes it only under this name, on Trial and FrozenTrial alike


def _handle(study: optuna.Study, storage_id: int) -> optuna.trial.Trial:
    """The `Trial` of a running trial of ours, as `Study.ask` builds it once it has claimed one."""
    return optuna.trial.Trial(study, storage_id)


def _stale_ids(storage: Any, study_id: int) -> set[int]:
    """RDB storages with heartbeats: the running trials whose heartbeat is older than the grace period, read
    only (optuna's public `fail_stale_trials` also fails them; this reader is private)."""
    get = getattr(storage, "_get_stale_trial_ids", None)
    return set(get(study_id)) if callable(get) else set()


def attempt(t: FrozenTrial) -> Attempt:
    """ablate's record of an optuna trial."""
    return Attempt(number=t.number, storage_id=_storage_id(t), state=_OURS[t.state], user_attrs=dict(t.user_attrs),
                   params=dict(t.params), distributions=dict(t.distributions), value=t.value,
                   intermediate_values=dict(t.intermediate_values), datetime_start=t.datetime_start,
                   datetime_complete=t.datetime_complete)


# ---- the study


@storage_faults
class Store:
    """One ablate study's optuna study on its storage (`study` None: opened read-only and never run). `lock`
    serialises the study's creation between local processes."""

    def __init__(self, name: str, opts: LedgerOptions, study_dir: Path, search: Any,
                 lock: Any = contextlib.nullcontext):
        _quiet()
        self.where = safe_url(opts.storage) or str(study_dir / "ledger.journal")
        self.storage = open_storage(opts, study_dir)
        self.heartbeat = heartbeat_interval(self.storage) if self.storage is not None else None
        self.name = name
        self.study = self._open(name, search, opts.readonly, lock) if self.storage is not None else None
        self.sid = self.storage.get_study_id_from_name(name) if self.study is not None else None

    def _open(self, name: str, search: Any, readonly: bool, lock: Any) -> optuna.Study | None:
        """The optuna study, with the search's sampler and pruner (grid searches are expanded and enqueued like
        `grid:`, and never prune)."""
        kwargs = {"study_name": name, "storage": self.storage, "sampler": make_sampler(search),
                  "pruner": make_pruner(search)}
        try:  # load first: optuna's create_study appends a record to a journal even when the study exists
            return optuna.load_study(**kwargs)
        except KeyError:
            if readonly:
                return None
            with lock():
                return optuna.create_study(**kwargs, direction="maximize", load_if_exists=True)

    def study_attr(self, key: str) -> Any:
        return self.study.user_attrs.get(key)

    def set_study_attr(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    # ---- reading

    def trials(self, *states: State) -> list[Attempt]:
        """Every attempt (or those in `states`), in the storage's order."""
        if self.study is None:
            return []
        theirs = tuple(_STATES[s] for s in states) if states else None
        return [attempt(t) for t in self.study.get_trials(deepcopy=False, states=theirs)]

    def state_of(self, storage_id: int) -> State:
        return _OURS[self.storage.get_trial(storage_id).state]

    def stale_ids(self) -> set[int]:
        """The running attempts whose worker stopped sending heartbeats (read only; none without heartbeats, and
        none when the storage cannot say)."""
        if not self.heartbeat:
            return set()
        try:
            return _stale_ids(self.storage, self.sid)
        except Exception:  # noqa: BLE001 - unknown: show the trial as running
            return set()

    # ---- queueing and claiming

    def enqueue(self, user_attrs: dict[str, Any], params: dict[str, Any] | None = None) -> None:
        self.study.enqueue_trial(params or {}, user_attrs=user_attrs, skip_if_exists=False)

    def claim(self, a: Attempt) -> Any | None:
        """Switch queued attempt `a` to RUNNING for this process, as `Study.ask` claims one: its handle, or None when
        another process switched it first."""
        try:
            # the storage's own atomic WAITING -> RUNNING switch: True for the one process that switched the trial;
            # False, or UpdateFinishedTrialError (a RuntimeError), for the others
            if not self.storage.set_trial_state_values(a.storage_id, TrialState.RUNNING):
                return None
        except RuntimeError:
            return None
        return _handle(self.study, a.storage_id)

    def handle(self, storage_id: int) -> Any:
        """The handle of a running attempt of ours known by its id alone."""
        return _handle(self.study, storage_id)

    def ask(self) -> tuple[Any, int, int]:
        """A new attempt from the search's sampler (a queued one first): (handle, number, storage id)."""
        trial = self.study.ask()
        return trial, trial.number, _storage_id(trial)

    def attrs_of(self, trial: Any) -> dict[str, Any]:
        """The user attributes an attempt of ours holds (those it was queued with, for a queued one)."""
        return dict(trial.user_attrs)

    def suggest(self, trial: Any, space: dict[str, Any]) -> dict[str, Any]:
        """The sampled value of every dimension of a search space (fixed ones when the trial was queued with them):
        `Range`s (int or float, optionally stepped or log) and lists of choices."""
        params: dict[str, Any] = {}
        for key, dim in space.items():
            if isinstance(dim, list):
                params[key] = trial.suggest_categorical(key, dim)
            elif dim.is_int:
                params[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=int(dim.step or 1))
            else:
                params[key] = trial.suggest_float(key, dim.low, dim.high, step=dim.step, log=dim.log)
        return params

    def set_param(self, storage_id: int, name: str, value: Any, dist: Any) -> None:
        """A known value of a queued trial's param, through the storage API (`BaseStorage.set_trial_param`, what
        `suggest_*` ends in); a param another process set meanwhile is left."""
        with contextlib.suppress(ValueError):
            self.storage.set_trial_param(storage_id, name, dist.to_internal_repr(value), dist)

    # ---- writing an attempt

    def set_attrs(self, trial: Any, attrs: dict[str, Any]) -> None:
        """User attributes of an attempt: by handle (ours), or by `Attempt` (another process's)."""
        try:
            for key, value in attrs.items():
                if isinstance(trial, Attempt):
                    self.storage.set_trial_user_attr(trial.storage_id, key, value)
                else:
                    trial.set_user_attr(key, value)
        except UpdateFinishedTrialError as e:
            raise TakenOver(str(e)) from None

    def report(self, trial: Any, value: float, step: int) -> None:
        """One point of the learning curve (optuna's `Trial.report`); a trial no longer ours is left."""
        with contextlib.suppress(UpdateFinishedTrialError):
            trial.report(value, step)

    def should_prune(self, trial: Any) -> bool:
        return trial.should_prune()

    def tell(self, trial: Any, state: State, value: float | None = None) -> None:
        """Finish an attempt (handle, or `Attempt`) with optuna's `Study.tell` (its sampler sees the outcome). One
        already finished (another worker failed it for missing heartbeats and retries it) is `TakenOver`, also
        when that happens between tell's read and its write."""
        target, sid = (trial.number, trial.storage_id) if isinstance(trial, Attempt) else (trial, _storage_id(trial))
        try:
            self.study.tell(target, value, state=_STATES[state])
        except UpdateFinishedTrialError as e:
            raise TakenOver(str(e)) from None
        except ValueError:  # tell's "Cannot tell a FAIL trial": finished before tell read it
            if self.storage.get_trial(sid).state.is_finished():
                raise TakenOver(f"trial {sid} is already finished") from None
            raise

    # ---- heartbeats

    def record_heartbeat(self, storage_id: int) -> None:
        self.storage.record_heartbeat(storage_id)

    def fail_stale(self) -> None:
        """Fail the running trials whose worker sent no heartbeat within the grace period; the storage's retry
        callback queues each again (optuna's `fail_stale_trials`)."""
        if self.heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)

    def search_study(self) -> optuna.Study:
        """The optuna study itself, for optuna's own charts of a search (`report.charts.search_charts`); optuna's
        KeyError when there is none."""
        return self.study if self.study is not None else optuna.load_study(study_name=self.name, storage=None)


@functools.cache
def _quiet() -> None:
    from ablate.verbosity import verbose

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose() else optuna.logging.WARNING)
    # search choices that are lists (dims, depths) are stored as JSON in every optuna storage: no need to warn
    warnings.filterwarnings("ignore", message="Choices for a categorical distribution", category=UserWarning)
