"""Agreement with the paper beside its yardsticks: what predictors that train nothing achieve, and the paper's
own agreement between its two regimes (the ceiling a proxy can aim at).

A proxy's Spearman rho with the paper means little alone: reading the FLOPs column of the same steps, or the
step number, already orders the roadmap somewhat like the paper. For every readout of the study's trials
(readouts.py) this module gives the three figures of agreement (rho of levels, rho of changes, the paper's sign
on the big steps) and the same three for each yardstick:
- `gflops`, `params`: the study's own counts at the paper's scale (results.csv `gflops` / `params`);
- `step`: the step's position (levels only: its change is always +1);
- `ceiling`: the paper's other regime, Table 11 for a study whose references are
  Table 10's steps, and the reverse; only for a roadmap (`steps`) study whose references match one regime.
Each proxy-minus-yardstick difference gets a percentile-bootstrap 95 % interval that resamples the seeds and the
steps (the changes, the big steps) together, so it says whether the proxy beats the yardstick on steps like
these, not only on these 17. The proxy's own interval resamples seeds only (analysis.agreement).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ablate.config.variant import REFERENCE_GROUPS
from ablate.evidence import READOUTS
from ablate.reference import table as reference_table
from ablate.sweep.states import Status

from .analysis import BIG_STEP
from .readouts import available, scores
from .stats import BOOTSTRAP_RESAMPLES, CONFIDENCE

FIGURES = ("levels", "changes", "signs")
PREDICTORS = {"gflops": "GFLOPs", "params": "parameters", "step": "step index"}
CEILING = "ceiling"
_REGIMES = {"convnext_roadmap": ("convnext_roadmap_r200", "the paper's R200 regime (Table 11)"),
            "convnext_roadmap_r200": ("convnext_roadmap", "the paper's R50 regime (Table 10)")}


def ceiling(ref: np.ndarray) -> tuple[np.ndarray, str] | None:
    """The paper's other regime at the study's steps, and its name: when `ref` (the study's paper top-1 in step
    order) is one regime's top-1 column, or an in-order part of it, the other regime's values at those
    positions; None otherwise."""
    for mine, (other, label) in _REGIMES.items():
        col = [float(s["top1"]) for s in reference_table(mine)["steps"]]
        theirs = [float(s["top1"]) for s in reference_table(other)["steps"]]
        pos, j = [], 0
        for value in ref:
            while j < len(col) and abs(col[j] - value) > 1e-6:
                j += 1
            if j == len(col):
                break
            pos.append(j)
            j += 1
        if len(pos) == len(ref) >= 3:
            return np.array([theirs[p] for p in pos]), label
    return None


def _rho_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of each row of x (B, n) with the same row of y (ties share their mean rank); NaN where a
    row is constant."""
    rx, ry = stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1)
    xc, yc = rx - rx.mean(axis=-1, keepdims=True), ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc**2).sum(axis=-1) * (yc**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=-1) / np.where(den > 0, den, 1.0), math.nan)


class Steps:
    """The steps a study's agreement is computed over: the paper's top-1, the compared-with step of each
    change, the big changes, and the yardsticks' values (rows = non-reference steps with a paper value)."""

    def __init__(self, t: pd.DataFrame, kind: str) -> None:
        self.names = [str(n) for n in t["name"]]
        self.ref = t["ref_top1"].to_numpy(float)
        k = len(t)
        self.before = [i - 1 if kind == "steps" else 0 for i in range(1, k)]
        self.after = list(range(1, k))
        self.dref = self.ref[self.after] - self.ref[self.before]
        self.big = np.flatnonzero(np.abs(self.dref) >= BIG_STEP)
        self.yardsticks: dict[str, np.ndarray] = {}
        self.labels = dict(PREDICTORS)
        for col in ("gflops", "params"):
            values = pd.to_numeric(t.get(col, pd.Series(math.nan, index=t.index)), errors="coerce").to_numpy(float)
            if np.isfinite(values).all():
                self.yardsticks[col] = values
        self.yardsticks["step"] = np.arange(k, dtype=float)
        top = ceiling(self.ref) if kind == "steps" else None
        if top is not None:
            self.yardsticks[CEILING], self.labels[CEILING] = top

    def figure(self, what: str, x: np.ndarray, items: np.ndarray, deltas: np.ndarray | None = None) -> np.ndarray:
        """One figure of agreement for each row of x (B, steps) over the resampled `items` (B, n): rho of
        levels (items: steps), rho of changes (items: changes) or the number of big changes with the paper's
        sign (items: big changes). `deltas` (B, changes), when given, are the changes (else x's differences)."""
        if what == "levels":
            return _rho_rows(np.take_along_axis(x, items, axis=-1), self.ref[items])
        d = x[:, self.after] - x[:, self.before] if deltas is None else deltas
        if what == "changes":
            return _rho_rows(np.take_along_axis(d, items, axis=-1), self.dref[items])
        db = d[:, self.big]
        same = np.sign(np.take_along_axis(db, items, axis=-1)) == np.sign(self.dref[self.big][items])
        return same.sum(axis=-1).astype(float)

    def items(self, what: str) -> int:
        return {"levels": len(self.ref), "changes": len(self.after), "signs": len(self.big)}[what]


def _per_seed(df: pd.DataFrame, ids: list[str], readout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means over each step's finished seeds (steps,), the paired changes (each over the seeds both steps of
    the change finished; the difference of the means with fewer than 2) and the scores per seed over the seeds
    every step finished (steps, shared seeds; no column when none is shared)."""
    done = df[df["status"] == Status.DONE]
    by = {vid: g.set_index("seed")["s"] for vid, g in done.assign(s=scores(done, readout)).groupby("id")}
    per = [by.get(vid, pd.Series(dtype=float)).dropna() for vid in ids]
    means = np.array([s.mean() if len(s) else math.nan for s in per])
    shared = sorted(set.intersection(*(set(s.index) for s in per))) if per else []
    m = np.array([[float(s.loc[k]) for k in shared] for s in per]).reshape(len(per), len(shared))
    return means, per, m  # type: ignore[return-value]


def _changes(per: list[pd.Series], means: np.ndarray, st: Steps) -> np.ndarray:
    out = []
    for a, b in zip(st.before, st.after, strict=True):
        both = per[a].index.intersection(per[b].index)
        out.append(float((per[b][both] - per[a][both]).mean()) if len(both) >= 2 else means[b] - means[a])
    return np.array(out)


def _interval(st: Steps, what: str, m: np.ndarray, means: np.ndarray, pred: np.ndarray | None) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of the proxy's figure (pred None: resampling seeds only) or of the
    proxy's figure minus the yardstick's `pred` (resampling seeds and items together, each independently, with
    replacement; BOOTSTRAP_RESAMPLES draws, a fixed seed). A draw whose figure is undefined (a constant side
    after resampling) is left out; NaN when more than half are."""
    n_items, n_seeds = st.items(what), m.shape[1]
    if n_items < (1 if what == "signs" else 3) or (pred is None and n_seeds < 2):
        return math.nan, math.nan
    rng = np.random.default_rng(0)
    b = BOOTSTRAP_RESAMPLES
    if n_seeds >= 2:
        x = m[:, rng.integers(0, n_seeds, size=(b, n_seeds))].mean(axis=-1).T  # (b, steps)
    else:
        x = np.broadcast_to(means, (b, len(means)))
    items = rng.integers(0, n_items, size=(b, n_items)) if pred is not None else \
        np.broadcast_to(np.arange(n_items), (b, n_items))
    out = st.figure(what, x, items)
    if pred is not None:
        out = out - st.figure(what, np.broadcast_to(pred, x.shape), items)
    ok = out[np.isfinite(out)]
    if len(ok) < b / 2:
        return math.nan, math.nan
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(np.percentile(ok, tail)), float(np.percentile(ok, 100 - tail))


def _point(st: Steps, what: str, x: np.ndarray, deltas: np.ndarray | None = None) -> float:
    n = st.items(what)
    if n < (1 if what == "signs" else 3):
        return math.nan
    d = None if deltas is None else deltas[None, :]
    return float(st.figure(what, x[None, :], np.arange(n)[None, :], d)[0])


def _figures(st: Steps, x: np.ndarray, deltas: np.ndarray | None = None, levels_only: bool = False) -> dict[str, Any]:
    out = {"rho_levels": _point(st, "levels", x), "big_n": len(st.big)}
    out["rho_changes"] = math.nan if levels_only else _point(st, "changes", x)
    out["big_same"] = math.nan if levels_only else _point(st, "signs", x, deltas)
    return out


def steps_of(table: pd.DataFrame) -> pd.DataFrame:
    """The rows agreement is computed over: non-reference steps with a paper top-1 and a finished seed."""
    return table[~table["group"].isin(REFERENCE_GROUPS) & table["ref_top1"].notna() & table["top1_mean"].notna()]


def yardsticks(table: pd.DataFrame, df: pd.DataFrame, kind: str, readouts: list[str] | None = None) -> pd.DataFrame:
    """One row per readout the trials have (`kind` readout) and per yardstick (`predictor`, `ceiling`): rho of
    levels and of changes with their 95 % intervals (a readout's: over seeds; a yardstick's: none, it is one
    number), the big steps with the paper's sign (`big_same` of `big_n`), and on each readout's row, for each
    yardstick y, `{y}:{figure}` (the readout's figure minus y's) with its joint bootstrap interval
    `{y}:{figure}_lo` / `_hi`. Empty with fewer than 3 such steps."""
    t = steps_of(table)
    if len(t) < 3:
        return pd.DataFrame()
    st, ids, rows = Steps(t, kind), [str(i) for i in t["id"]], []
    for readout in readouts if readouts is not None else available(df):
        means, per, m = _per_seed(df, ids, readout)
        if not np.isfinite(means).all():
            continue
        deltas = _changes(per, means, st)
        row: dict[str, Any] = {"kind": "readout", "name": readout, "label": READOUTS[readout].label,
                               **_figures(st, means, deltas)}
        for what, key in zip(FIGURES, ("rho_levels", "rho_changes", "big_same"), strict=True):
            row[f"{key}_lo"], row[f"{key}_hi"] = _interval(st, what, m, means, None)
            for y, pred in st.yardsticks.items():
                if y == "step" and what != "levels":
                    continue
                row[f"{y}:{what}"] = row[key] - _point(st, what, pred)
                row[f"{y}:{what}_lo"], row[f"{y}:{what}_hi"] = _interval(st, what, m, means, pred)
        rows.append(row)
    for y, pred in st.yardsticks.items():
        rows.append({"kind": "predictor" if y in PREDICTORS else CEILING, "name": y, "label": st.labels[y],
                     **_figures(st, pred, levels_only=y == "step")})
    return pd.DataFrame(rows)
