"""Statistics of the evidence rules: pure functions of numbers (scipy.stats underneath), no tables.

Evidence rules (docs/evidence.md): a change is judged only by the study's own seeds (paired t-test over the seeds
both variants finished, 95 % t-interval of the mean difference); with one seed nothing is judged. Every
number a reader compares carries its interval: step means (t-interval over seeds), changes (paired
t-interval), rank correlation with the paper (bootstrap over seeds).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

# Two steps differ "within noise" when a paired t-test over shared seeds gives p >= ALPHA.
ALPHA = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def t_interval(values: Any, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of `values` (NaNs dropped). Bounds are NaN with
    fewer than 2 values; equal values give a zero-width interval."""
    x = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna().to_numpy(float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    sem = float(stats.sem(x))
    if sem == 0.0:
        return mean, mean, mean
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def paired_test(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Paired t-test of b - a over the seeds both have (Series indexed by seed), with the 95 % t-interval
    of the mean difference.

    Returns n (shared seeds), mean and sd of the differences, t, the two-sided p and the interval bounds
    `lo`/`hi` (NaN when n < 2). Identical differences on every seed (sd = 0) give p = 0 for a non-zero
    mean, 1 for zero, and a zero-width interval.
    """
    a = pd.to_numeric(a, errors="coerce")
    b = pd.to_numeric(b, errors="coerce")
    shared = a.dropna().index.intersection(b.dropna().index)
    d = (b.loc[shared] - a.loc[shared]).astype(float)
    n = len(d)
    mean, lo, hi = t_interval(d.to_numpy())
    out = {"n": float(n), "mean": mean, "sd": math.nan, "t": math.nan, "p": math.nan, "lo": lo, "hi": hi}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["sd"] = sd
    if sd == 0.0:
        out["t"] = math.inf if mean else 0.0
        out["p"] = 0.0 if mean else 1.0
        return out
    res = stats.ttest_rel(b.loc[shared].astype(float), a.loc[shared].astype(float))
    out.update(t=float(res.statistic), p=float(res.pvalue))
    return out


def spearman(x: Any, y: Any) -> tuple[float, int]:
    """Spearman's rho (scipy; ties share their mean rank) and the number of pairs used (pairs with a missing
    value are dropped). NaN when fewer than 3 pairs or a constant side."""
    frame = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)}).dropna()
    n = len(frame)
    if n < 3 or frame["x"].nunique() < 2 or frame["y"].nunique() < 2:
        return math.nan, n
    return float(stats.spearmanr(frame["x"], frame["y"]).statistic), n


def spearman_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`spearman` of every column of x (k, B) against y (k,) at once: ranks (scipy.stats.rankdata, ties share
    their mean rank) correlated column by column. Rows with a missing value anywhere are dropped; NaN where
    fewer than 3 rows remain or a side is constant. (scipy.stats.spearmanr takes one pair of columns per
    call, and a bootstrap asks for thousands; its 2-d form turns the whole matrix into NaN when any one
    column is constant, as a resample of a tied step can be.)"""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1) if len(y) else np.zeros(0, dtype=bool)
    if keep.sum() < 3:
        return np.full(x.shape[1], math.nan)
    rx, ry = stats.rankdata(x[keep], axis=0), stats.rankdata(y[keep])
    xc, yc = rx - rx.mean(axis=0), ry - ry.mean()
    den = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (yc @ xc) / np.where(den > 0, den, 1.0), math.nan)


def bootstrap_interval(stat: Callable[[np.ndarray], Any], n: int, vectorized: bool = False) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of `stat(idx)` over resamples `idx` of the indices 0..n-1
    (scipy.stats.bootstrap, BOOTSTRAP_RESAMPLES resamples, a fixed seed: the same report every time).
    `vectorized`: stat takes a (resamples, n) array of them and returns one value per resample."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.arange(n),), stat, vectorized=vectorized, paired=False,
                              n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                              confidence_level=CONFIDENCE, random_state=np.random.default_rng(0))
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def pareto_mask(cost: Any, value: Any, lower_cost_is_better: bool = True) -> np.ndarray:
    """True for points no other point dominates (at least as good on both axes, better on one).
    Higher value is better; cost is lower-better (GFLOPs) or, with lower_cost_is_better=False,
    higher-better (throughput). Points with a missing coordinate are never on the front."""
    c = np.asarray(cost, dtype=float) * (1.0 if lower_cost_is_better else -1.0)
    v = np.asarray(value, dtype=float)
    ok = np.isfinite(c) & np.isfinite(v)
    mask = np.zeros(len(c), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        mask[i] = not others.any()
    return mask
