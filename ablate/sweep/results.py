"""results/<study>/results.csv|parquet and summary.csv, rebuilt from the ledger (never edited in place).

One row per (variant, seed) of the study file, in study order, whatever its state (`states.Status`): done,
running, queued, failed (with the reason), interrupted, stale, pruned (with the reason, in `fail_reason`),
skipped, or not yet queued (new).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ablate.config.net import NetConfig
from ablate.config.variant import changes_text

from .ledger import Ledger
from .states import Status

METRICS = ("top1", "top5", "top1_best", "top5_best", "ema_top1", "ema_top5", "loss", "train_loss_sum", "epochs",
           "train_img_per_s", "infer_img_per_s", "peak_mem_mb", "wall_seconds", "device")
COLUMNS = ["index", "name", "group", "id", "trial_id", "seed", "round", "seeded_because", "status", "attempts",
           "fail_reason", "changes", "model",
           *NetConfig.model_fields, "params", "gflops", "params_train", "gflops_train", "image_size", "dataset",
           "recipe", "epochs_planned", *METRICS, "started", "finished", "ref_top1", "ref_top1_std", "ref_gflops",
           "ref_params"]


def result_rows(ledger: Ledger, counts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    latest, attempts = ledger.latest(), ledger.attempts()
    by_variant = {row["id"]: row for row in counts or []}
    rows = []
    for key, (v, seed) in ledger.known().items():
        t = latest.get(key)
        # stale: trained on other data than data.root holds now (not done)
        status = Status.of(t, stale=t is not None and ledger.is_stale(t)).value
        attrs = t.user_attrs if t is not None else {}
        c = by_variant.get(v.id, {})
        ref = v.reference
        row: dict[str, Any] = {
            "index": v.index, "name": v.name, "group": v.group, "id": v.id, "trial_id": key, "seed": seed,
            "round": ledger.rounds.get(key, (0, ""))[0], "seeded_because": ledger.rounds.get(key, (0, ""))[1],
            "status": status, "attempts": attempts.get(key, 0),
            "fail_reason": attrs.get(Status.PRUNED.value if status == Status.PRUNED else "fail_reason"),
            "changes": changes_text(v.changes, limit=50), "model": v.timm or "ablate",
        }
        net = v.train_net.model_dump(mode="json") if v.train_net else {}
        for field in NetConfig.model_fields:
            value = net.get(field)
            row[field] = str(list(value)) if isinstance(value, list) else value
        row.update({"params": c.get("params"), "gflops": c.get("gflops"), "params_train": c.get("params_train"),
                    "gflops_train": c.get("gflops_train"), "image_size": v.data.resolved("image_size"),
                    "dataset": v.data.dataset, "recipe": v.recipe.preset, "epochs_planned": v.recipe.epochs})
        for m in METRICS:
            row[m] = attrs.get(m)
        row["started"] = t.datetime_start.isoformat(timespec="seconds") if t is not None and t.datetime_start else None
        row["finished"] = (t.datetime_complete.isoformat(timespec="seconds")
                           if t is not None and t.datetime_complete else None)
        row.update({"ref_top1": ref.top1 if ref else None, "ref_top1_std": ref.top1_std if ref else None,
                    "ref_gflops": ref.gflops if ref else None, "ref_params": ref.params if ref else None})
        rows += _per_seed(row, v, attrs.get("seed_metrics"))
    return rows


def _per_seed(row: dict[str, Any], v: Any, seed_metrics: str | None) -> list[dict[str, Any]]:
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


def results_frame(ledger: Ledger, counts: list[dict[str, Any]] | None = None) -> Any:
    import pandas as pd

    return pd.DataFrame(result_rows(ledger, counts), columns=COLUMNS)


def summary(df: Any, kind: str = "steps", rule: Any = None, readout: str = "top1") -> Any:
    """Per variant over its finished seeds: mean, std, n and the 95 % t-interval of top-1, the change vs the
    previous step (`steps`) or the first variant (otherwise) with its paired 95 % interval, p and verdict (of
    `readout`, the study's `evidence.readout`),
    and the medians of the speed columns (ablate.report.analysis computes them; see its evidence rules)."""
    import pandas as pd

    done = df[df["status"] == Status.DONE]
    keys = ["index", "name", "group", "id"]
    base = df.drop_duplicates("id")[keys + ["changes", "params", "gflops", "gflops_train", "ref_top1", "ref_gflops"]]
    if done.empty:
        return base.assign(n=0)
    from ablate.report.analysis import variant_table  # scipy.stats: ~1.5 s to import, not needed until here

    agg = done.groupby("id").agg(top5_mean=("top5", "mean"), ema_top1_mean=("ema_top1", "mean"),
                                 wall_seconds=("wall_seconds", "sum"))
    table = variant_table(df.assign(fail_reason=df.get("fail_reason")), kind, rule, readout)
    cols = {"top1_mean": "top1_mean", "top1_std": "top1_std", "top1_lo": "top1_ci_low", "top1_hi": "top1_ci_high",
            "n": "n", "vs": "delta_vs", "delta": "delta", "delta_lo": "delta_ci_low", "delta_hi": "delta_ci_high",
            "p": "delta_p", "p_adj": "p_adj", "p_equiv_adj": "p_equiv_adj", "verdict": "verdict", "look": "look",
            "seeds_to_settle": "seeds_to_settle", "family": "family", "train_img_per_s": "train_img_per_s",
            "infer_img_per_s": "infer_img_per_s"}
    stats = table[["id", *cols]].rename(columns=cols)
    out = base.merge(stats, on="id", how="left").merge(agg.reset_index(), on="id", how="left")
    out["n"] = out["n"].fillna(0).astype(int)
    return pd.DataFrame(out).sort_values("index")


def known_counts(ledger: Ledger) -> list[dict[str, Any]]:
    """FLOPs/params of every known variant (from the count cache after the first time)."""
    import dataclasses

    from ablate.measure.table import count_study

    variants = list({v.id: v for v, _ in ledger.known().values()}.values())
    return count_study(dataclasses.replace(ledger.loaded, variants=variants), parallel=False)


def write_results(ledger: Ledger, counts: list[dict[str, Any]] | None = None, with_summary: bool = True) -> Path:
    """Rebuild results.csv, results.parquet and (`with_summary`) summary.csv atomically (a reader never sees
    half a file). Workers leave summary.csv out of their rewrites while they train: its statistics import
    scipy.stats (~1.5 s a process) and it is rebuilt when a worker stops or `ablate run` ends."""

    if counts is None or ledger.search is not None:
        counts = known_counts(ledger)

    df = results_frame(ledger, counts)
    out = ledger.dir
    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / "results.csv", lambda p: df.to_csv(p, index=False))
    with contextlib.suppress(ImportError):  # pyarrow missing: the CSV is the table of record
        _atomic(out / "results.parquet", lambda p: _parquet_safe(df).to_parquet(p, index=False))
    kind = ledger.loaded.kind
    if with_summary:
        from ablate.evidence import Rule

        rule = Rule.of(ledger.loaded.study)
        readout = ledger.loaded.study.evidence.readout
        _atomic(out / "summary.csv",
                lambda p: summary(df, kind, rule, readout).to_csv(p, index=False, float_format="%.4f"))
    return out / "results.csv"


def _parquet_safe(df: Any) -> Any:
    """Arrow wants one type per column: a column mixing types (e.g. `groups`: 1 and 'depthwise') is written as
    text, missing values kept missing."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and len({type(v) for v in out[col].dropna()}) > 1:
            out[col] = out[col].map(lambda v: v if v is None or v != v else str(v))
    return out


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written temp file behind
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # pandas' errors do not say which file
        raise
