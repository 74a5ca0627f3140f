"""`ablate status`: where a study's trials are, as the ledger holds them (or, without a ledger, as the committed
results.csv holds them: what `report` and `compare` fall back to), as a table, CSV or JSON."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ablate.config.errors import StudyError

from .options import GraceOpt, HeartbeatOpt, ResultsOpt, SetOpt, StorageOpt, StudyArg

FORMATS = ("table", "csv", "json")
COLUMNS = ["name", "seed", "status", "attempts", "top1", "epochs", "fail_reason"]
WHOLE = {"seed", "round", "attempts", "epochs"}  # counts: shown as integers (a missing value makes pandas floats)


def status(study: StudyArg, set_: SetOpt = None, storage: StorageOpt = None,
           results: ResultsOpt = Path("results"), heartbeat: HeartbeatOpt = None, grace: GraceOpt = None,
           format: Annotated[str, typer.Option("--format", "-f", help="table | csv | json (one record per trial, "
                                               "missing values empty / null)")] = "table") -> None:
    """Done / running / failed / queued trials of a study, and the variant with the highest mean top-1 with its
    interval.

    A trial whose worker died reads as interrupted: on this machine's journal when its process is gone; on an
    RDB storage when it sent no heartbeat for the grace period (give the workers' --heartbeat/--grace). Without
    a ledger, the study's results.csv is read (as `report` and `compare` do)."""
    if format not in FORMATS:
        raise StudyError("--format", "", f"unknown format '{format}'; valid: {', '.join(FORMATS)}")
    from ablate.config.load import load_study
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.options import LedgerOptions

    loaded = load_study(study, set_ or [])
    ledger = Ledger(loaded, LedgerOptions(storage, results, heartbeat, grace, readonly=True))  # writes nothing
    export = ledger.dir / "results.csv"
    if not ledger.exists and export.is_file():
        from ablate.report.reading import read_export

        df, notes = read_export(loaded, export, ledger.where)
        show_status(loaded, df, format, sys.stdout, notes=notes)
        return
    ledger.expect_current_data()
    print_status(ledger, to=sys.stdout, format=format)
    if format == "table":
        from ablate.sweep.slurm_status import print_jobs

        print_jobs(ledger.dir, to=sys.stdout)


def print_status(ledger, to=None, df=None, format: str = "table") -> None:
    """The status of the study's trials as the ledger holds them (`df`: its results table, when already built)."""
    from ablate.sweep.results import results_frame
    from ablate.sweep.states import Status

    df = results_frame(ledger) if df is None else df
    notes = [n for n in (ledger.version_note(),) if n]
    stale = int((df["status"] == Status.STALE).sum()) if len(df) else 0
    if stale:
        notes.append(f"note: {stale} finished trial(s) were trained on other data than data.root holds now "
                     "(stale): `ablate run` trains them again")
    show_status(ledger.loaded, df, format, to or sys.stderr, ledger=ledger, notes=notes)


def show_status(loaded, df, format: str, to, ledger=None, notes: list[str] | None = None) -> None:
    """The status as a table (with its count line, the leading variant and notes), or as CSV / JSON records."""
    notes_of = _notes_of(df, ledger) if len(df) else {}
    cols = _columns(df, notes_of)
    if format != "table":
        rows = _records(df, cols, notes_of)
        if format == "json":
            print(json.dumps({"study": loaded.name, "counts": _counts(df), "trials": rows}, indent=1), file=to)
        else:
            import pandas as pd

            pd.DataFrame(rows, columns=cols).to_csv(to, index=False)
        return
    if df.empty:
        print(f"{loaded.name}: no trial yet ({loaded.plan()}); `ablate run` queues and trains them", file=to)
        return
    from ablate.sweep.states import Status

    search = loaded.study.search if ledger is not None and ledger.search is not None else None
    total = f" of {search.trials} search" if search is not None else ""
    print(f"{loaded.name}: {len(df)}{total} trials: {Status.counts_line(_counts(df))}", file=to)
    rows = _records(df, cols, notes_of)
    for r in rows:
        r["fail_reason"] = (r["fail_reason"] or "")[:60]
    import pandas as pd

    table = pd.DataFrame(rows, columns=cols, dtype=object).map(_cell)  # object: 1 stays 1, None stays None
    print(table.to_string(index=False), file=to)
    _print_leader(df, to)
    if _rounds(df):  # seeds the adaptive rule added (evidence.max_seeds): when, and why
        last = int(df["round"].max())
        ended = (Status.DONE, Status.FAILED, Status.PRUNED, Status.SKIPPED)  # what no worker trains again
        left = int((df["round"].eq(last) & ~df["status"].isin(ended)).sum())
        state = f"round {last} training ({left} trials left)" if left else f"{last} round(s) trained"
        print(f"adaptive seeds (evidence.max_seeds {loaded.study.evidence.max_seeds}): {state}; a round adds seeds "
              "to the variants of changes still undetermined after the look before it", file=to)
    for note in notes or []:
        print(note, file=to)


def _print_leader(df, to) -> None:
    """The variant with the highest mean top-1, its interval and which others it is not told apart from."""
    from ablate.sweep.states import Status

    if (df["status"] == Status.DONE).any():
        from ablate.report.leader import leader_text, seed_table

        print(leader_text(seed_table(df), bold=False), file=to)


def _counts(df) -> dict[str, int]:
    return {str(k): int(n) for k, n in df["status"].value_counts().items()} if len(df) else {}


def _rounds(df) -> bool:
    return "round" in df and bool((df["round"].fillna(0) > 0).any())


def _columns(df, notes_of: dict[str, str]) -> list[str]:
    cols = list(COLUMNS)
    if _rounds(df):
        cols.insert(2, "round")
    if notes_of or _rounds(df):
        cols.append("note")
    return cols


def _notes_of(df, ledger) -> dict[str, str]:
    """Trial id -> its note (why it was retried, or why the adaptive rule seeded it)."""
    retried = _retry_notes(ledger) if ledger is not None else {}
    why = df["seeded_because"] if "seeded_because" in df else [None] * len(df)
    out = {k: (retried.get(k) or w or "")[:70] for k, w in zip(df["trial_id"], why, strict=True)
           if retried.get(k) or (isinstance(w, str) and w)}
    return out


def _records(df, cols: list[str], notes: dict[str, str]) -> list[dict[str, Any]]:
    """One dict per trial: the status columns with plain values (None for a missing one, whole epochs as int)."""
    out = []
    for _, r in df.iterrows():
        rec = {c: _plain(r.get(c), c in WHOLE) for c in cols if c != "note"}
        if "note" in cols:
            rec["note"] = notes.get(r["trial_id"]) or None
        out.append(rec)
    return out


def _plain(v: Any, whole: bool = False) -> Any:
    """A JSON-ready value: None for missing; in a column of counts (`whole`) an int (epochs 2, not 2.0)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if whole and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _cell(v: Any) -> str:
    """A table cell: `-` for a missing value, two decimals for a fraction, whole numbers as integers."""
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _retry_notes(ledger) -> dict[str, str]:
    """Trial id -> 'retried after: <why the previous attempt failed>' for trials with an earlier failed attempt."""
    from ablate.sweep.states import State

    notes = {}
    for key, attempts in ledger.history().items():
        failed = [t for t in attempts[:-1] if t.state is State.FAIL]
        if failed:
            n = f" ({len(failed)} failed attempts)" if len(failed) > 1 else ""
            notes[key] = f"retried{n} after: {failed[-1].user_attrs.get('fail_reason', 'failure')}"
    return notes
