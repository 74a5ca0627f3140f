"""Opening a ledger's optuna storage: the embedded journal file, or an RDB URL (sqlite:///, postgresql://,
mysql://) with heartbeats, a grace period and a retry callback; every way it can fail is one `LedgerError`
(a URL's password never shown)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ablate.secrets import redact, register, safe_url

from .journal import safe_journal
from .options import DEFAULT_HEARTBEAT, LedgerError, LedgerOptions


def is_rdb_url(url: str | None) -> bool:
    return bool(url) and "://" in str(url)


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


def open_storage(options: LedgerOptions | str | None, results_dir: Path, *args: Any, **kwargs: Any) -> Any:
    """The optuna storage `options.storage` names: None -> the embedded journal file
    `results_dir`/ledger.journal; a path -> that journal file; anything with '://' -> an optuna RDB storage
    (sqlite:///, postgresql://, mysql://). The older form `open_storage(url, results_dir, heartbeat, grace,
    max_retry, readonly)` still works.

    RDB storages get heartbeats every `heartbeat` seconds (default 30; 0 turns them off), a grace period
    (default 4x the heartbeat) after which a silent trial is failed, and a callback that retries such a
    trial up to `max_retry` times. Journal files ignore these (a dead local worker is found by its pid).

    `readonly`: None when there is no ledger yet (nothing is created). Every problem is a `LedgerError`."""
    opts = options if isinstance(options, LedgerOptions) else LedgerOptions(options, results_dir.parent, *args,
                                                                             **kwargs)
    if is_rdb_url(opts.storage):
        return _rdb_storage(str(opts.storage), opts.readonly, _heartbeat_kwargs(opts))
    return _journal_storage(Path(opts.storage) if opts.storage else results_dir / "ledger.journal", opts.readonly)


def _heartbeat_kwargs(opts: LedgerOptions) -> dict[str, Any]:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    heartbeat = DEFAULT_HEARTBEAT if opts.heartbeat is None else opts.heartbeat
    if not heartbeat:
        return {}
    return {"heartbeat_interval": int(heartbeat), "grace_period": int(opts.grace or 4 * heartbeat),
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=opts.max_retry)}


def _journal_storage(path: Path, readonly: bool) -> Any:
    from optuna.storages.journal import JournalStorage

    if readonly and not path.exists():
        return None
    if path.is_dir():
        raise LedgerError(str(path), "is a folder, not a ledger journal file")
    try:
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(safe_journal(str(path), repair=not readonly))
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

    register(url)
    shown = safe_url(url) or ""
    try:
        parsed = make_url(url)
    except Exception as e:  # noqa: BLE001 - sqlalchemy's ArgumentError / ValueError: malformed URL
        raise LedgerError("--storage", f"'{shown}' is not a storage URL ({_first_line(e)}); e.g. "
                          "postgresql://user@host/db, sqlite:///ledger.db, or a journal file path") from None
    if parsed.get_backend_name() == "sqlite" and not _sqlite_file_ok(parsed.database, shown, readonly):
        return None
    try:
        if readonly and not _has_ledger_tables(rdb_url(url)):
            return None  # an empty database: nothing to read, and a reading command creates no table
        return optuna.storages.RDBStorage(rdb_url(url), skip_table_creation=readonly, **kwargs)
    except ModuleNotFoundError as e:
        raise LedgerError("--storage", f"{shown}: the database driver '{e.name}' is not installed "
                          f"(pip install it)") from None
    except Exception as e:  # noqa: BLE001 - refused connection, unknown dialect, bad host, ...
        cause = getattr(e, "orig", None) or e
        raise LedgerError("--storage", f"{shown}: cannot open: {redact(_first_line(cause))}") \
            from None


def _has_ledger_tables(url: str) -> bool:
    """Whether the database holds optuna's tables (asked without writing anything)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def _sqlite_file_ok(db: str | None, shown: str, readonly: bool) -> bool:
    """An SQLite URL's file: a LedgerError when it is a folder or another kind of file; False when it does not
    exist and the ledger is opened read-only (nothing to read, nothing created)."""
    if not db or db == ":memory:":
        return True
    file = Path(db)
    if file.is_dir():
        raise LedgerError("--storage", f"{shown}: {db} is a folder, not an SQLite database")
    if file.is_file():
        with open(file, "rb") as fh:
            head = fh.read(16)
        if head and head != b"SQLite format 3\x00":
            raise LedgerError("--storage", f"{shown}: {db} is not an SQLite database")
        return True
    return not readonly


def heartbeat_interval(storage: Any) -> int | None:
    """Seconds between heartbeats when the storage has them (RDB with heartbeats on), else None."""
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if callable(get) else None
