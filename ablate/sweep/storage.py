"""Storage URLs of a ledger (sqlite:///, postgresql://, mysql://; anything else is a journal file path): checked
and given a driver before `store.py` opens them, shown without their password, and every way one can fail
as one `LedgerError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.secrets import redact, register, safe_url

from .options import LedgerError


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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def rdb_target(url: str, readonly: bool) -> str | None:
    """The URL optuna's RDBStorage is given (`rdb_url`): a malformed URL, or an SQLite file that is a folder or
    another kind of file, is a LedgerError (password never shown); None when the ledger is read-only and the SQLite
    file does not exist or the database holds no optuna tables (nothing to read, nothing created)."""
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
        if readonly and not has_ledger_tables(rdb_url(url)):
            return None  # an empty database: nothing to read, and a reading command creates no table
    except Exception as e:  # noqa: BLE001 - a missing driver, a refused connection, ...
        raise rdb_error(url, e) from None
    return rdb_url(url)


def rdb_error(url: str, e: Exception) -> LedgerError:
    """The one-line error of an RDB storage that cannot be opened (a missing driver, a refused connection, an
    unknown dialect, a bad host), its password masked."""
    shown = safe_url(url) or ""
    if isinstance(e, ModuleNotFoundError):
        return LedgerError("--storage", f"{shown}: the database driver '{e.name}' is not installed (pip install it)")
    cause = getattr(e, "orig", None) or e
    return LedgerError("--storage", f"{shown}: cannot open: {redact(_first_line(cause))}")


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


def has_ledger_tables(url: str) -> bool:
    """Whether the database holds optuna's tables (asked without writing anything)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


class StorageFault(OSError):
    """The ledger's database failed mid-run (a dropped connection, a stopped server, a dropped database): a fault
    of the environment, not of the trial being trained. An OSError, so that a worker leaves its trial resumable
    and stops with exit code 2, as on a full disk."""


def storage_faults(cls: type) -> type:
    """Every public method of `cls` (a store holding `where`, its storage URL fit to print) and its constructor
    (which loads the study: a connection dropped just then is the same fault) raise its database's errors, and
    a journal that no longer reads, as one-line `StorageFault`s."""
    import errno
    import functools
    import json

    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (SQLAlchemyError, StorageInternalError) as e:  # optuna wraps some of the former
                cause = getattr(e, "orig", None) or e.__cause__ or e
                raise StorageFault(errno.EIO, f"the ledger's database failed: {redact(_first_line(cause))}",
                                   getattr(self, "where", "the ledger")) from None
            except json.JSONDecodeError as e:  # a journal cut or replaced under a running worker
                raise StorageFault(errno.EIO, f"the ledger journal changed under this worker (truncated or "
                                   f"replaced?): {e}; its trials in flight are resumable: run again",
                                   getattr(self, "where", "the ledger")) from None
        return call

    for name, value in list(vars(cls).items()):
        if callable(value) and (name == "__init__" or not name.startswith("_")):
            setattr(cls, name, wrap(value))
    return cls
