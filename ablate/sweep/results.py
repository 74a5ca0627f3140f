"""results/<study>/results.csv|parquet, rebuilt from the ledger's trial records (never edited in place); the
commands write summary.csv beside it (`ablate.report.summary`).

One row per (variant, seed) of the study file, in study order, whatever its state (`states.Status`): done,
running, queued, failed (with the reason), interrupted, stale, pruned (with the reason, in `fail_reason`),
skipped, or not yet queued (new).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ablate.config.net import NetConfig
from ablate.config.variant import Variant, changes_text
from ablate.files import atomic_write

from .ledger import Ledger
from .record import COUNTS, METRICS, TrialRecord
from .states import Attempt, Status

COLUMNS = ["index", "name", "group", "id", "trial_id", "seed", "round", "seeded_because", "status", "attempts",
           "fail_reason", "changes", "against", "model", *NetConfig.model_fields, *COUNTS, "image_size", "dataset",
           "recipe", "epochs_planned", *METRICS, "started", "finished", "ref_top1", "ref_top1_std", "ref_gflops",
           "ref_params"]


def result_rows(ledger: Ledger, count_missing: bool = False) -> list[dict[str, Any]]:
    """One row per (variant, seed) the study knows, from each trial's record (`record.TrialRecord`). Counts a
    record does not hold (a trial not finished, or recorded before counts were) come from the count cache
    with `count_missing` (counting what it lacks), and are left empty otherwise (`ablate status`)."""
    latest, attempts = ledger.latest(), ledger.attempts()
    known = ledger.known()
    records = {key: TrialRecord.read(t.user_attrs) for key, t in latest.items()}
    lacking = {v.id: v for key, (v, _) in known.items() if records.get(key, _EMPTY).counts() is None}
    counted = {row["id"]: row for row in _count(ledger, list(lacking.values()))} if count_missing else {}
    rows = []
    for key, (v, seed) in known.items():
        t = latest.get(key)
        record = records.get(key, _EMPTY)
        row = _row(ledger, v, seed, key, t, attempts.get(key, 0), record, record.counts() or counted.get(v.id, {}))
        rows += _per_seed(row, v, record.seed_metrics)
    return rows


_EMPTY = TrialRecord()


def _row(ledger: Ledger, v: Variant, seed: int, key: str, t: Attempt | None, attempts: int, record: TrialRecord,
         counts: dict[str, Any]) -> dict[str, Any]:
    # stale: trained on other data than data.root holds now (not done)
    status = Status.of(t, stale=t is not None and ledger.is_stale(t)).value
    attrs = t.user_attrs if t is not None else {}
    ref = v.reference
    row: dict[str, Any] = {
        "index": v.index, "name": v.name, "group": v.group, "id": v.id, "trial_id": key, "seed": seed,
        "round": ledger.rounds.get(key, (0, ""))[0], "seeded_because": ledger.rounds.get(key, (0, ""))[1],
        "status": status, "attempts": attempts,
        "fail_reason": attrs.get(Status.PRUNED.value if status == Status.PRUNED else "fail_reason"),
        "changes": changes_text(v.changes, limit=50), "against": v.vs, "model": v.timm or "ablate",
    }
    net = v.train_net.model_dump(mode="json") if v.train_net else {}
    for field in NetConfig.model_fields:
        value = net.get(field)
        row[field] = str(list(value)) if isinstance(value, list) else value
    row.update({k: counts.get(k) for k in COUNTS})
    row.update({"image_size": v.data.resolved("image_size"), "dataset": v.data.dataset, "recipe": v.recipe.preset,
                "epochs_planned": v.recipe.epochs})
    row.update({m: getattr(record, m) for m in METRICS})
    row["started"] = t.datetime_start.isoformat(timespec="seconds") if t is not None and t.datetime_start else None
    row["finished"] = (t.datetime_complete.isoformat(timespec="seconds")
                       if t is not None and t.datetime_complete else None)
    row.update({"ref_top1": ref.top1 if ref else None, "ref_top1_std": ref.top1_std if ref else None,
                "ref_gflops": ref.gflops if ref else None, "ref_params": ref.params if ref else None})
    return row


def _per_seed(row: dict[str, Any], v: Variant, seed_metrics: str | None) -> list[dict[str, Any]]:
    """A search configuration trained on several seeds (`search.seeds`) is one trial of the ledger and one row
    per seed here, each with its own metrics (the ledger holds their means as the trial's)."""
    if not seed_metrics:
        return [row]
    import json

    out = []
    for seed, metrics in sorted(json.loads(seed_metrics).items(), key=lambda kv: int(kv[0])):
        one = dict(row, seed=int(seed), trial_id=v.trial_id(int(seed)))
        one.update({m: metrics.get(m) for m in METRICS if m != "device"})
        out.append(one)
    return out


def results_frame(ledger: Ledger, count_missing: bool = False) -> Any:
    """The study's trials as one table (results.csv's columns): the view every reader of the ledger shares."""
    import pandas as pd

    return pd.DataFrame(result_rows(ledger, count_missing), columns=COLUMNS)


def _count(ledger: Ledger, variants: list[Variant]) -> list[dict[str, Any]]:
    """FLOPs/params of these variants (from the count cache after the first time)."""
    if not variants:
        return []
    import dataclasses

    from ablate.measure.table import count_study

    return count_study(dataclasses.replace(ledger.loaded, variants=variants), parallel=False)


def write_results(ledger: Ledger, df: Any = None) -> Path:
    """Rebuild results.csv and results.parquet atomically (a reader never sees half a file) from `df`, the
    study's `results_frame` (built here, counts included, when not given)."""
    if df is None:
        df = results_frame(ledger, count_missing=True)
    out = ledger.dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.csv", lambda p: df.to_csv(p, index=False))
    with contextlib.suppress(ImportError):  # pyarrow missing: the CSV is the table of record
        atomic_write(out / "results.parquet", lambda p: _parquet_safe(df).to_parquet(p, index=False))
    return out / "results.csv"


def _parquet_safe(df: Any) -> Any:
    """Arrow wants one type per column: a column mixing types (e.g. `groups`: 1 and 'depthwise') is written as
    text, missing values kept missing."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and len({type(v) for v in out[col].dropna()}) > 1:
            out[col] = out[col].map(lambda v: v if v is None or v != v else str(v))
    return out
