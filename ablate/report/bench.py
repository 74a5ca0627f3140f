"""The bench figures (results/<study>/bench.csv, written by `ablate bench`) in a report: per variant the
inference and training img/s of one setting, with the label that names it (device, precision, batch, size).

A report shows the figures of the most recent bench setting (device, threads, batch, image size, scale), in
fp32 when that was measured (else the first precision measured). The training rate a trial records is a
different thing — the rate as trained, with other workers on the same cores and the trial engine's CPU fast
paths — and stays a separate, labelled column."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ablate.measure.bench_table import read_bench

BENCH_COLUMNS = ["bench_infer_img_per_s", "bench_infer_lo", "bench_infer_hi", "bench_train_img_per_s", "bench_label"]
_SETTING = ["device", "threads", "batch", "image_size", "scale", "convs"]


def bench_label(row: pd.Series) -> str:
    """`Intel Xeon (2 threads, AMX), fp32, batch 8, 224 px`: what a bench figure was measured on."""
    kernels = ", ablate CPU kernels" if row.get("convs") == "ablate-cpu-kernels" else ""
    kernels += ", network as trained" if row.get("scale") == "train" else ""
    return f"{row['device']}, {row['precision']}, batch {int(row['batch'])}, {int(row['image_size'])} px{kernels}"


def latest_setting(bench: pd.DataFrame) -> pd.DataFrame:
    """The rows of the most recently measured setting, in its chart precision (fp32 first)."""
    ok = bench[pd.to_numeric(bench.get("img_per_s"), errors="coerce").notna()] if len(bench) else bench
    if ok.empty:
        return ok
    setting = ok.reindex(columns=_SETTING).apply(lambda r: "|".join(map(str, r)), axis=1)
    same = ok[setting == setting.loc[ok["measured_at"].astype(str).idxmax()]]
    precisions = list(dict.fromkeys(same["precision"]))
    chosen = "fp32" if "fp32" in precisions else precisions[0]
    return same[same["precision"] == chosen]


def with_bench(table: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    """The variant table with the bench columns (NaN, and an empty label, where the study was not benched)."""
    out = table.copy()
    rows = latest_setting(read_bench(study_dir))
    for col in BENCH_COLUMNS:
        out[col] = "" if col == "bench_label" else math.nan
    if rows.empty or out.empty:
        return out
    infer = rows[rows["mode"] == "infer"].drop_duplicates("id").set_index("id")
    train = rows[rows["mode"] == "train"].drop_duplicates("id").set_index("id")
    out["bench_infer_img_per_s"] = out["id"].map(infer["img_per_s"]).astype(float)
    out["bench_infer_lo"] = out["id"].map(infer["img_per_s_lo"]).astype(float)
    out["bench_infer_hi"] = out["id"].map(infer["img_per_s_hi"]).astype(float)
    out["bench_train_img_per_s"] = out["id"].map(train["img_per_s"]).astype(float)
    out["bench_label"] = bench_label(rows.iloc[0])
    return out
