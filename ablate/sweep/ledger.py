"""The ledger: one optuna study per ablate study; one optuna trial per attempt at (variant, seed).

optuna does the bookkeeping (storages, atomic WAITING -> RUNNING hand-over, user attributes,
heartbeats on RDB storages); this module only decides *what* to enqueue and how to read it back.

Trial user attributes: `trial_id` (`<variant id>-s<seed>`), `variant_id`, `name`, `group`,
`index`, `seed`, `config` (the resolved network/recipe/data as JSON); once running `host`, `pid`;
once finished the metrics, or `fail_reason`, `fail_kind` (`states.FailKind`: `error` | `interrupted` | `died` |
`data` | `io`; all but `error` are resumable: queued again by the next `ablate run`) and `traceback`. Statuses
as shown (done, interrupted, stale, ...): `states.Status`. Provenance, set when a worker takes the trial:
`code_version` (ablate's version and git commit) and `data_fingerprint` (of the data files the trial reads,
`ablate.train.data.data_fingerprint`). A finished trial whose data fingerprint differs from that of the data
the study names now is `stale`: not done, and trained again.

Reading commands (`status`, `report`) open the ledger read-only (`readonly=True`): they append nothing and
create nothing for a study never run. A journal file whose last record is torn (a full disk, a crash
mid-write) is repaired before the next write (a backup is kept); garbage before the last record is a
one-line `LedgerError` naming the file and the line.

One ledger (study name) belongs to one study file: the file's name is recorded in the optuna study's user
attributes; another file with the same `name:` is refused. A worker only takes queued trials of its own
study file version and leaves the others alone (another version of the study may be running).

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
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ablate
from ablate.config.errors import StudyError
from ablate.config.load import LoadedStudy, Variant

from .params import compatible, param_space, variant_params
from .states import FailKind, Status, resumable


class LedgerError(StudyError):
    """The ledger cannot be opened or written (bad --storage, damaged journal, full disk): one line, exit 2."""

    def __init__(self, where: str, problem: str):
        super().__init__(where, "", problem)


@functools.cache
def code_version() -> str:
    """ablate's version, plus `+g<commit>` (and `.dirty` when ablate/ has uncommitted changes) in a git checkout."""
    here = Path(__file__).resolve().parents[1]
    try:
        def git(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)

        head = git("rev-parse", "--short=10", "HEAD")
        if head.returncode != 0:
            return ablate.__version__
        dirty = git("diff", "--quiet", "HEAD", "--", ".").returncode == 1
        return f"{ablate.__version__}+g{head.stdout.strip()}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return ablate.__version__


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
                 max_retry: int | None = DEFAULT_MAX_RETRY, readonly: bool = False) -> Any:
    """None -> the embedded journal file results/<study>/ledger.journal; a path -> that journal file;
    anything with '://' -> an optuna RDB storage (sqlite:///, postgresql://, mysql://).

    RDB storages get heartbeats every `heartbeat` seconds (default 30; 0 turns them off), a grace period
    (default 4x the heartbeat) after which a silent trial is failed, and a callback that retries such a
    trial up to `max_retry` times. Journal files ignore these (a dead local worker is found by its pid).

    `readonly`: None when there is no ledger yet (nothing is created). Every problem is a `LedgerError`."""
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
        return _rdb_storage(str(url), readonly, kwargs)
    from optuna.storages.journal import JournalStorage

    path = Path(url) if url else results_dir / "ledger.journal"
    if readonly and not path.exists():
        return None
    if path.is_dir():
        raise LedgerError(str(path), "is a folder, not a ledger journal file")
    try:
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        backend = safe_journal(str(path), repair=not readonly)
        return JournalStorage(backend)
    except LedgerError:
        raise
    except OSError as e:
        raise LedgerError(str(path), f"cannot open the ledger: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - optuna's replay of a record it cannot apply
        raise LedgerError(str(path), f"not an ablate/optuna ledger journal ({type(e).__name__}: {_first_line(e)})") \
            from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _rdb_storage(url: str, readonly: bool, kwargs: dict[str, Any]) -> Any:
    """optuna's RDBStorage, with every way a URL can be wrong as one LedgerError (password never shown)."""
    import optuna
    from sqlalchemy.engine import make_url

    shown = safe_url(url) or ""
    try:
        parsed = make_url(url)
    except Exception as e:  # noqa: BLE001 - sqlalchemy's ArgumentError / ValueError: malformed URL
        raise LedgerError("--storage", f"'{_hide(url, None)}' is not a storage URL ({_first_line(e)}); e.g. "
                          "postgresql://user@host/db, sqlite:///ledger.db, or a journal file path") from None
    password = parsed.password
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            file = Path(db)
            if file.is_dir():
                raise LedgerError("--storage", f"{shown}: {db} is a folder, not an SQLite database")
            if file.is_file():
                with open(file, "rb") as fh:
                    head = fh.read(16)
                if head and head != b"SQLite format 3\x00":
                    raise LedgerError("--storage", f"{shown}: {db} is not an SQLite database")
            elif readonly:
                return None
    try:
        storage = optuna.storages.RDBStorage(rdb_url(url), **kwargs)
    except ModuleNotFoundError as e:
        raise LedgerError("--storage", f"{shown}: the database driver '{e.name}' is not installed "
                          f"(pip install it)") from None
    except Exception as e:  # noqa: BLE001 - refused connection, unknown dialect, bad host, ...
        cause = getattr(e, "orig", None) or e
        raise LedgerError("--storage", f"{shown}: cannot open: {_hide(_first_line(cause), password)}") from None
    return storage


def _hide(text: str, password: str | None) -> str:
    """`text` with a URL's password (or, unparsed, anything between user: and @) masked."""
    import re

    if password:
        text = text.replace(password, "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


@contextlib.contextmanager
def _journal_lock(path: Path) -> Iterator[None]:
    """optuna's own lock of a journal file (the one its appends take)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@functools.cache
def _safe_backend_class() -> type:
    from optuna.storages.journal import JournalFileBackend

    class SafeJournalFileBackend(JournalFileBackend):
        """Before each append, a torn last record (left by a write cut short) is cut off under the lock;
        without this the next record is appended onto it and optuna can no longer read the journal."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            path = Path(self._file_path)
            if _torn(path):
                with _journal_lock(path):
                    _repair_tail(path)
            try:
                super().append_logs(logs)
            except OSError as e:  # a full disk: say which file (a torn record it left is cut off next time)
                if e.filename is None:
                    e.filename = str(path)
                raise

    return SafeJournalFileBackend


def safe_journal(path: str, repair: bool = True) -> Any:
    """A journal file backend that survives a torn last record (a full disk, a crash mid-write).

    Opened for writing (`repair`), a last line without its newline is cut off after a copy of the file is
    kept as `<journal>.torn-<time>.bak` (one line on stderr says so); so is one found before any later
    append. Opened read-only the file is only checked (optuna's reader skips a torn last line). A record
    that is not JSON before the last line is a LedgerError naming the file and the line."""
    file = Path(path)
    _check_journal(file)
    if repair and file.exists() and _torn(file):
        with _journal_lock(file):
            _repair_tail(file)
    return _safe_backend_class()(path)


def _torn(file: Path) -> bool:
    size = file.stat().st_size
    if size == 0:
        return False
    with open(file, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) != b"\n"


def _repair_tail(file: Path) -> None:
    """Cut a torn last record (no newline at the end), keeping a backup of the whole file first."""
    if not file.exists() or not _torn(file):
        return
    data = file.read_bytes()
    keep = data.rfind(b"\n") + 1
    backup = file.with_name(f"{file.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.bak")
    try:
        shutil.copyfile(file, backup)
        with open(file, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise LedgerError(str(file), f"its last record is torn and it cannot be repaired: {e.strerror or e}") \
            from None
    print(f"{file}: dropped a torn last record ({len(data) - keep} bytes, an interrupted write); "
          f"backup in {backup}", file=sys.stderr, flush=True)


def _check_journal(file: Path) -> None:
    """Every line but a torn last one must be a JSON record: else one LedgerError with the line number."""
    if not file.exists():
        return
    with open(file, "rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1  # after the final newline: b"" when the file ends with one, else the torn record
    for i, line in enumerate(lines):
        if i == last or not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            what = "not a ledger record" if i else "not an ablate/optuna ledger journal"
            raise LedgerError(str(file), f"line {i + 1}: {what} (damaged journal; restore it from a backup, "
                              "or move it away to start the study afresh)")


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
    optuna_trial: Any = field(default=None, repr=False)  # optuna's Trial (search: from `ask`), made when needed
    reported: set[int] = field(default_factory=set, repr=False)  # epochs of the learning curve reported


class Ledger:
    def __init__(self, loaded: LoadedStudy, storage: str | None = None, results_root: Path = Path("results"),
                 heartbeat: int | None = None, grace: int | None = None, max_retry: int | None = DEFAULT_MAX_RETRY,
                 readonly: bool = False):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # search choices that are lists (dims, depths) are stored as JSON in every optuna storage: no need to warn
        warnings.filterwarnings("ignore", message="Choices for a categorical distribution", category=UserWarning)
        self.loaded = loaded
        self.dir = Path(results_root) / loaded.name
        self.storage_url = storage
        self.readonly = readonly
        self.where = safe_url(storage) or str(self.dir / "ledger.journal")
        self.storage = open_storage(storage, self.dir, heartbeat, grace, max_retry, readonly=readonly)
        self.heartbeat = heartbeat_interval(self.storage) if self.storage is not None else None
        search = loaded.study.search
        self.search = search if search is not None and search.sampler != "grid" else None
        sampler = None
        if self.search is not None:  # optuna's samplers; grid searches are expanded and enqueued like `grid:`
            sampler = (optuna.samplers.TPESampler(seed=self.search.seed) if self.search.sampler == "tpe"
                       else optuna.samplers.RandomSampler(seed=self.search.seed))
        self.study = None
        if self.storage is not None:
            try:  # load first: optuna's create_study appends a record to a journal even when the study exists
                self.study = optuna.load_study(study_name=loaded.name, storage=self.storage, sampler=sampler)
            except KeyError:
                if not readonly:
                    with self._lock():
                        self.study = optuna.create_study(study_name=loaded.name, storage=self.storage,
                                                         direction="maximize", load_if_exists=True, sampler=sampler)
        self.sid = self.study._study_id if self.study is not None else None
        with contextlib.nullcontext() if readonly or self.study is None else self._lock():
            self._check_owner()
        self.by_key = {v.trial_id(s): (v, s) for v in loaded.variants for s in loaded.study.seeds}
        self.data_fp: dict[str, str | None] = {}  # data spec (JSON) -> fingerprint of the data it reads now
        self.param_space = param_space(loaded)  # optuna params of fixed-variant studies (`params.py`)
        self._param_ok: dict[str, bool] = {}  # param name -> the ledger's earlier trials accept its distribution
        self.check_data = False  # `expect_current_data()`: finished trials on other data count as stale

    def _check_owner(self) -> None:
        """One study name, one study file: refuse another file whose `name:` is already taken in this ledger."""
        if self.study is None:
            return
        mine = Path(self.loaded.file).name
        owner = self.study.user_attrs.get("study_file")
        if owner is None:
            if not self.readonly:
                self.study.set_user_attr("study_file", mine)
            return
        if owner != mine:
            raise StudyError(self.loaded.file, "name", f"'{self.loaded.name}' is already the name of the study in "
                             f"{owner} (ledger {self.where}); give this study another name: (or use another "
                             "--results/--storage)")

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
        """All attempts; one failed by a live worker for missing heartbeats reads as fail_kind `died`, and so
        does a running one whose worker process (on this host, journal ledgers) is gone (not written here)."""
        from optuna.trial import TrialState

        if self.study is None:
            return []
        out = []
        host = socket.gethostname()
        stale = self._stale_ids()
        for t in self.storage.get_all_trials(self.sid, deepcopy=False):
            if t.state == TrialState.FAIL and "fail_kind" not in t.user_attrs:
                t = copy.copy(t)  # never edit the storage's own object
                who = f"{t.user_attrs.get('host', '?')} pid {t.user_attrs.get('pid', '?')}"
                t.user_attrs = {**t.user_attrs, "fail_kind": FailKind.DIED.value,
                                "fail_reason": f"worker {who} {STALE_REASON}"}
            elif t.state == TrialState.RUNNING and not self.heartbeat and _dead_here(t, host):
                t = copy.copy(t)
                t.state = TrialState.FAIL
                t.user_attrs = {**t.user_attrs, "fail_kind": FailKind.DIED.value,
                                "fail_reason": f"worker process {t.user_attrs.get('pid')} died"}
            elif t.state == TrialState.RUNNING and t._trial_id in stale:  # its worker stopped sending heartbeats
                t = copy.copy(t)
                who = f"{t.user_attrs.get('host', '?')} pid {t.user_attrs.get('pid', '?')}"
                t.state = TrialState.FAIL
                t.user_attrs = {**t.user_attrs, "fail_kind": FailKind.DIED.value,
                                "fail_reason": f"worker {who} {STALE_REASON}"}
            out.append(t)
        return out

    def _stale_ids(self) -> set[int]:
        """RDB storages with heartbeats: the running trials whose heartbeat is older than the grace period
        (read only; a worker fails and retries them). optuna has no public reader for this: its private one,
        when there."""
        get = getattr(self.storage, "_get_stale_trial_ids", None) if self.heartbeat else None
        if not callable(get):
            return set()
        try:
            return set(get(self.sid))
        except Exception:  # noqa: BLE001 - unknown: show the trial as running
            return set()

    # ---- provenance: code version and data fingerprint

    def expect_current_data(self) -> None:
        """From now on, a finished trial whose recorded data fingerprint differs from that of the data its
        variant reads now is `stale` (not done). Data that cannot be read now is not checked."""
        self.check_data = True

    def fingerprint(self, v: Variant) -> str | None:
        """The fingerprint of the data `v` reads (cached per data spec); None when it cannot be read."""
        from ablate.train.data import DataError, data_fingerprint

        key = json.dumps(v.data.model_dump(mode="json"), sort_keys=True)
        if key not in self.data_fp:
            try:
                self.data_fp[key] = data_fingerprint(v.data)
            except DataError:
                self.data_fp[key] = None
        return self.data_fp[key]

    def is_stale(self, t: Any) -> bool:
        """A finished trial trained on other data than its variant (as the study names it now) reads."""
        from optuna.trial import TrialState

        if not self.check_data or t.state != TrialState.COMPLETE:
            return False
        got = t.user_attrs.get("data_fingerprint")
        known = self.by_key.get(t.user_attrs.get("trial_id"))
        if got is None or known is None:
            return False
        now = self.fingerprint(known[0])
        return now is not None and got != now

    def provenance(self, item: Item, data_fingerprint: str | None) -> None:
        """Record on a trial being trained which code trains it, on which data."""
        self.storage.set_trial_user_attr(item.trial_id, "code_version", code_version())
        if data_fingerprint is not None:
            self.storage.set_trial_user_attr(item.trial_id, "data_fingerprint", data_fingerprint)

    def versions(self) -> dict[str, int]:
        """Code version -> how many of the study's finished trials it trained (unknown: before versions were
        recorded)."""
        out: dict[str, int] = {}
        keys = self.known()
        for key, t in self.latest().items():
            if key in keys and t.state.name == "COMPLETE":
                v = str(t.user_attrs.get("code_version", "unknown"))
                out[v] = out.get(v, 0) + 1
        return out

    def version_note(self) -> str | None:
        """One line when the study's results come from more than one code version."""
        versions = self.versions()
        if len(versions) < 2:
            return None
        parts = ", ".join(f"{v} ({n} trial{'s' * (n != 1)})" for v, n in sorted(versions.items()))
        return f"note: results come from {len(versions)} code versions: {parts}"

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

        def score(t: Any) -> tuple[float, int]:  # a stale result ranks below a queued attempt, above a failure
            return (1.5 if self.is_stale(t) else rank[t.state], t.number)

        for t in self.trials():
            key = t.user_attrs.get("trial_id")
            if key is None:
                continue
            old = best.get(key)
            if old is None or score(t) > score(old):
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
        Failures that are not the trial's own fault (`FailKind.resumable`: interrupted, worker died, data
        unreadable, disk/file system) are queued again; failures by their own fault only with `retry_failed`.
        Returns how many were queued (key `Status.QUEUED`) and how many are done (`Status.DONE`)."""
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

    def _sync_search(self, latest: dict[str, Any], retry_failed: bool) -> dict[str, int]:
        """A search samples new trials as it runs; here only interrupted (or, asked, failed) ones are queued
        again, with their sampled parameters fixed."""
        from optuna.trial import TrialState

        queued = done = 0
        known = self.known()
        for key, t in latest.items():
            if t.state == TrialState.COMPLETE and not self.is_stale(t):
                done += 1
            elif t.state == TrialState.FAIL and key in known and (
                    resumable(t.user_attrs.get("fail_kind")) or retry_failed):
                v, seed = known[key]
                self.study.enqueue_trial(dict(t.params), user_attrs=self._attrs(v, seed))
                queued += 1
        return {Status.QUEUED: queued, Status.DONE: done}

    def _search_budget_left(self) -> int:
        from optuna.trial import TrialState

        used = set()
        for key, t in self.latest().items():
            if t.state != TrialState.FAIL or not resumable(t.user_attrs.get("fail_kind")):
                used.add(key)
        return self.search.trials - len(used) if self.search is not None else 0

    def _ask(self) -> Item | None:
        """Next search trial: a queued (interrupted) one first, else a new sample from optuna's sampler."""
        from optuna.trial import TrialState

        from ablate.config.load import search_variant
        from ablate.config.study import Range
        from ablate.measure.bounds import MAX_REJECTED, out_of_bounds

        assert self.search is not None
        # a sampler may propose a configuration already trained, or (bounded search) outside the cost window: ask again
        for _ in range(20 + (MAX_REJECTED if self.search.bounded else 0)):
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
            rejected = out_of_bounds(self.loaded, v)  # counted (cached), never trained; no trial_id: no budget used
            if rejected:
                self.storage.set_trial_user_attr(trial._trial_id, "rejected", rejected)
                self.storage.set_trial_user_attr(trial._trial_id, "name", v.name)
                self.storage.set_trial_state_values(trial._trial_id, TrialState.PRUNED)
                continue
            seed = self.loaded.study.seeds[0]
            key = v.trial_id(seed)
            if self._done_elsewhere(key, trial.number):
                self.storage.set_trial_user_attr(trial._trial_id, "trial_id", key)
                self.storage.set_trial_user_attr(trial._trial_id, Status.SKIPPED.value, "configuration already trained")
                self.storage.set_trial_state_values(trial._trial_id, TrialState.PRUNED)
                continue
            for k, value in {**self._attrs(v, seed), "host": socket.gethostname(), "pid": os.getpid()}.items():
                self.storage.set_trial_user_attr(trial._trial_id, k, value)
            self._first_heartbeat(trial._trial_id)
            return Item(number=trial.number, trial_id=trial._trial_id, key=key, seed=seed, variant=v,
                        optuna_trial=trial)
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
            # only this study file's trials: a queued trial of another version of the study (edited, other
            # --set overrides) is left alone for the workers of that version
            waiting = [t for t in self.storage.get_all_trials(self.sid, deepcopy=False, states=(TrialState.WAITING,))
                       if t.user_attrs.get("trial_id") in self.by_key]
            if not waiting:
                return None
            for t in sorted(waiting, key=lambda t: t.number):
                try:
                    if not self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                        continue  # another worker took it first
                except RuntimeError:  # finished meanwhile (optuna raises UpdateFinishedTrialError)
                    continue
                key = t.user_attrs.get("trial_id")
                if self._done_elsewhere(key, t.number):  # a duplicate from a concurrent enqueue
                    self.storage.set_trial_user_attr(t._trial_id, Status.SKIPPED.value, "already complete")
                    self.storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)
                    continue
                self.storage.set_trial_user_attr(t._trial_id, "host", socket.gethostname())
                self.storage.set_trial_user_attr(t._trial_id, "pid", os.getpid())
                self._first_heartbeat(t._trial_id)
                v, seed = self.by_key[key]
                self._set_params(t._trial_id, v)
                return Item(number=t.number, trial_id=t._trial_id, key=key, seed=seed, variant=v)

    def _set_params(self, trial_id: int, v: Variant) -> None:
        """The trial's optuna params: the variant's values of the fields the study changes (`params.py`).
        optuna's public way to give a trial params is `Trial.suggest_*`, which samples a value unless the
        trial was enqueued with it fixed; these are known values of a trial already queued (perhaps by an
        older ablate, with no fixed params), so they go through the storage API (`BaseStorage.set_trial_param`,
        what `suggest_*` ends in). A field whose distribution earlier trials of the ledger hold differently
        (the study file was edited) is left out: optuna refuses a categorical parameter whose choices change."""
        for name, value in variant_params(v, self.param_space).items():
            dist = self.param_space[name]
            if name not in self._param_ok:
                old = next((t.distributions[name] for t in self.storage.get_all_trials(self.sid, deepcopy=False)
                            if name in t.distributions), None)
                self._param_ok[name] = old is None or compatible(old, dist)
            if self._param_ok[name]:
                with contextlib.suppress(ValueError):  # another version's trial set it meanwhile: leave it out
                    self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)

    def report(self, item: Item, rows: list[dict[str, Any]]) -> None:
        """The learning curve: each epoch's objective (top-1 unless a search maximises another metric) as the
        trial's intermediate value at step `epoch` (optuna's `Trial.report`); epochs already reported and
        epochs without the metric are skipped. A trial no longer ours (failed by another worker) is left."""
        import optuna
        from optuna.exceptions import UpdateFinishedTrialError

        if item.optuna_trial is None:
            item.optuna_trial = optuna.trial.Trial(self.study, item.trial_id)
        objective = self.search.objective if self.search is not None else "top1"
        for row in rows:
            value, epoch = row.get(objective), row.get("epoch")
            if value is None or epoch is None or int(epoch) in item.reported or value != value:
                continue
            with contextlib.suppress(UpdateFinishedTrialError):
                item.optuna_trial.report(float(value), int(epoch))
            item.reported.add(int(epoch))

    def _done_elsewhere(self, key: str, number: int) -> bool:
        """Another attempt of the same trial id is complete, or running and older (of two duplicates that
        start at once, the older one runs and the newer one is skipped: never both, never neither)."""
        from optuna.trial import TrialState

        return any(t.user_attrs.get("trial_id") == key and t.number != number and
                   ((t.state == TrialState.COMPLETE and not self.is_stale(t)) or
                    (t.state == TrialState.RUNNING and t.number < number))
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

    def progress(self) -> tuple[int, int]:
        """(trials done, trials the study asks for): the study-level progress, over every worker."""
        from optuna.trial import TrialState

        latest, known = self.latest(), self.known()
        done = sum(1 for key in known if key in latest and latest[key].state == TrialState.COMPLETE
                   and not self.is_stale(latest[key]))
        return done, len(known) if self.search is None else max(len(known), self.search.trials)

    def running(self) -> int:
        """How many trials are running (on any worker)."""
        from optuna.trial import TrialState

        if self.study is None:
            return 0
        return len(self.storage.get_all_trials(self.sid, deepcopy=False, states=(TrialState.RUNNING,)))

    def complete(self, item: Item, metrics: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        for k, value in metrics.items():
            self.storage.set_trial_user_attr(item.trial_id, k, value)
        objective = self.search.objective if self.search is not None else "top1"
        value = metrics.get(objective)
        self.storage.set_trial_state_values(item.trial_id, TrialState.COMPLETE,
                                            values=[float(value) if value is not None else 0.0])

    def fail(self, item: Item, reason: str, kind: FailKind | str = FailKind.ERROR, traceback: str | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        from optuna.trial import TrialState

        for k, value in (metrics or {}).items():
            self.storage.set_trial_user_attr(item.trial_id, k, value)
        self.storage.set_trial_user_attr(item.trial_id, "fail_reason", reason)
        self.storage.set_trial_user_attr(item.trial_id, "fail_kind", FailKind(kind).value)
        if traceback:
            self.storage.set_trial_user_attr(item.trial_id, "traceback", traceback)
        self.storage.set_trial_state_values(item.trial_id, TrialState.FAIL)

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
        for t in self.storage.get_all_trials(self.sid, deepcopy=False, states=(TrialState.RUNNING,)):
            pid = t.user_attrs.get("pid")
            if _dead_here(t, host):
                try:
                    self.storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker process {pid} died")
                    self.storage.set_trial_user_attr(t._trial_id, "fail_kind", FailKind.DIED.value)
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                    n += 1
                except RuntimeError:
                    pass
        return n


def _dead_here(t: Any, host: str) -> bool:
    """A running trial whose worker process was on this host and is gone."""
    pid = t.user_attrs.get("pid")
    return t.user_attrs.get("host") == host and isinstance(pid, int) and not _alive(pid)


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
