"""Readouts: what number of a finished trial stands for the network's quality.

Final-epoch top-1 is the default; the literature on cheap proxies finds that other readouts of the same runs
can rank networks better (best or EMA top-1, validation loss, the sum of training losses over epochs: Ru et al.
2021). Each readout is a column of results.csv turned into a score where higher is better (losses negated).
A study's `evidence.readout` chooses the one its verdicts and headline agreement use; the report and
`ablate compare` show agreement with the paper for every readout the trials have.
"""

from __future__ import annotations

import pandas as pd

from ablate.evidence import READOUTS
from ablate.sweep.states import Status


def scores(df: pd.DataFrame, readout: str = "top1") -> pd.Series:
    """The readout's score of every row (higher is better; NaN where the row has none)."""
    r = READOUTS[readout]
    if r.column not in df:
        return pd.Series(float("nan"), index=df.index)
    return r.sign * pd.to_numeric(df[r.column], errors="coerce")


def available(df: pd.DataFrame) -> list[str]:
    """The readouts every finished trial has (EMA top-1 only where an EMA was trained)."""
    done = df[df["status"] == Status.DONE]
    if done.empty:
        return []
    return [name for name in READOUTS if scores(done, name).notna().all()]


def with_train_loss_sum(df: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """`train_loss_sum` filled in from the trials' metrics.csv where the results lack it (trials recorded before
    it was kept): the sum over epochs of `train_loss`, for a trial whose metrics hold every epoch it ran."""
    out = df.copy()
    if "train_loss_sum" not in out:
        out["train_loss_sum"] = float("nan")
    out["train_loss_sum"] = pd.to_numeric(out["train_loss_sum"], errors="coerce")
    if metrics.empty or "train_loss" not in metrics:
        return out
    m = metrics.assign(train_loss=pd.to_numeric(metrics["train_loss"], errors="coerce"))
    agg = m.groupby(["id", "seed"]).agg(total=("train_loss", "sum"), rows=("train_loss", "count"))
    for i, row in out[out["train_loss_sum"].isna()].iterrows():
        key = (row["id"], row["seed"])
        epochs = pd.to_numeric(pd.Series([row.get("epochs")]), errors="coerce").iloc[0]
        if key in agg.index and agg.loc[key, "rows"] == epochs:
            out.loc[i, "train_loss_sum"] = float(agg.loc[key, "total"])
    return out
