"""Analysis of a results table: pure functions from DataFrames to DataFrames and numbers.

Nothing here reads or writes files or draws. Inputs are the rows of results/<study>/results.csv (one per
variant x seed, any status) and the per-epoch rows of trials/*/metrics.csv; outputs feed charts.py,
findings.py and writer.py.

Evidence rules (docs/evidence.md): a change is judged only by the study's own seeds, as one member of the
study's family of changes (ablate/evidence.py: corrected paired tests, helped / hurt / equivalent / undetermined);
with one seed nothing is judged. Every number a reader compares carries its interval: step means
(t-interval over seeds), changes (the corrected paired interval), rank correlation with the paper
(bootstrap over seeds). The statistics are in stats.py and ablate/evidence.py (scipy.stats).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ablate.config.variant import REFERENCE_GROUPS, compared_with
from ablate.evidence import NOT_JUDGED, SETTLED, Rule, judge_family
from ablate.sweep.states import PARTIAL, Status

from .readouts import scores
from .stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    bootstrap_interval,
    paired_test,
    pareto_mask,
    spearman,
    spearman_columns,
    t_interval,
)
from .text import show

__all__ = ["ALPHA", "BIG_STEP", "BOOTSTRAP_RESAMPLES", "CONFIDENCE", "STATE_LABEL", "UNJUDGED",
           "agreement", "curve_table", "grid_effect", "grid_table", "noise_verdicts", "paired_test", "pareto_mask",
           "seed_values", "spearman", "t_interval", "typical_seed_std", "variant_table", "vs_baseline"]

# A paper change at least this large (top-1 points) is beyond the paper's own seed noise (its seed std is
# 0.02-0.18): those steps are the fair test of whether a proxy reproduces the paper's direction.
BIG_STEP = 0.4
STATE_LABEL = {s.value: s.label for s in Status}  # status -> the word reports use ("new" reads "not run")
# A variant whose seeds differ in status takes the first of these its seeds have (after done / partial).
_VARIANT_STATE_PRIORITY = (Status.RUNNING, Status.INTERRUPTED, Status.QUEUED, Status.FAILED, Status.PRUNED,
                           Status.SKIPPED)
UNJUDGED = NOT_JUDGED


# ---------------------------------------------------------------- the variant table


def _state(statuses: list[str]) -> str:
    """One word for a variant from the statuses of its seeds."""
    s = set(statuses)
    if s == {Status.DONE}:
        return Status.DONE.value
    if Status.DONE in s:
        return PARTIAL
    for word in _VARIANT_STATE_PRIORITY:
        if word in s:
            return word.value
    return Status.NEW.value


def _status_text(statuses: list[str]) -> str:
    counts = pd.Series(statuses).value_counts()
    if len(counts) == 1:
        word = statuses[0]
        text = STATE_LABEL.get(word, word)
        return text if len(statuses) == 1 else f"{text} ({len(statuses)} seeds)"
    return Status.counts_line(counts.to_dict(), label=True)


def variant_table(df: pd.DataFrame, kind: str = "steps", rule: Rule | None = None,
                  readout: str = "top1") -> pd.DataFrame:
    """One row per variant in study order: counts, throughput, top-1 mean/std over finished seeds, the
    paper's reference, the change vs the previous step (kind `steps`) or vs the first variant (otherwise),
    the same change in the paper's numbers, and a noise verdict for the change (see `noise_verdicts`).
    `readout` (ablate.evidence.READOUTS) is the score the changes and verdicts are of; `score_mean` its mean."""
    scored = df.assign(score=scores(df, readout))
    rows = [_variant_row(vid, g) for vid, g in scored.sort_values(["index", "seed"]).groupby("id", sort=False)]
    table = pd.DataFrame(rows).sort_values("index").reset_index(drop=True)
    if table.empty:
        return table
    return noise_verdicts(table, df, kind, rule, readout)


def _variant_row(vid: str, g: pd.DataFrame) -> dict[str, Any]:
    """The variant table's row of one variant from its rows (one per seed, in seed order)."""
    done = g[g["status"] == Status.DONE]
    first = g.iloc[0]
    statuses = [str(s) for s in g["status"]]
    top1 = pd.to_numeric(done["top1"], errors="coerce")
    _, top1_lo, top1_hi = t_interval(top1)
    reasons = [str(r) for r in g["fail_reason"].dropna().unique()] if "fail_reason" in g else []
    return {
        "index": int(first["index"]), "name": first["name"],
        "group": first["group"] if isinstance(first["group"], str) else "",
        "against": first["against"] if isinstance(first.get("against"), str) else "",
        "id": vid, "state": _state(statuses), "status": _status_text(statuses),
        "seeds": len(g), "n": int(top1.notna().sum()),
        "params": _first(g, "params"), "gflops": _first(g, "gflops"), "gflops_train": _first(g, "gflops_train"),
        "train_img_per_s": _median(done, "train_img_per_s"), "infer_img_per_s": _median(done, "infer_img_per_s"),
        "top1_mean": float(top1.mean()) if top1.notna().any() else math.nan,
        "top1_std": float(top1.std(ddof=1)) if top1.notna().sum() >= 2 else math.nan,
        "top1_lo": top1_lo, "top1_hi": top1_hi,
        "top5_mean": _mean(done, "top5"), "ema_top1_mean": _mean(done, "ema_top1"), "score_mean": _mean(done, "score"),
        "wall_seconds": _mean(done, "wall_seconds") * len(done) if len(done) else math.nan,
        "ref_top1": _first(g, "ref_top1"), "ref_top1_std": _first(g, "ref_top1_std"),
        "ref_gflops": _first(g, "ref_gflops"), "fail_reasons": "; ".join(reasons),
    }


def _first(g: pd.DataFrame, col: str) -> float:
    if col not in g:
        return math.nan
    s = pd.to_numeric(g[col], errors="coerce").dropna()
    return float(s.iloc[0]) if len(s) else math.nan


def _median(g: pd.DataFrame, col: str) -> float:
    s = pd.to_numeric(g[col], errors="coerce").dropna() if col in g else pd.Series(dtype=float)
    return float(s.median()) if len(s) else math.nan


def _mean(g: pd.DataFrame, col: str) -> float:
    s = pd.to_numeric(g[col], errors="coerce").dropna() if col in g else pd.Series(dtype=float)
    return float(s.mean()) if len(s) else math.nan


def typical_seed_std(table: pd.DataFrame) -> float:
    """The paper's typical seed std of top-1 (median of the references' top1_std), NaN if none is given.
    Context only: no verdict is ever based on it (a proxy's own noise is what matters)."""
    s = pd.to_numeric(table.get("ref_top1_std"), errors="coerce").dropna()
    return float(s.median()) if len(s) else math.nan


def seed_values(df: pd.DataFrame, readout: str = "top1") -> dict[str, pd.Series]:
    """variant id -> finished score per seed (a Series indexed by seed): top-1 by default, else the readout's."""
    done = df[df["status"] == Status.DONE]
    done = done.assign(score=scores(done, readout))
    return {vid: g.set_index("seed")["score"] for vid, g in done.groupby("id")}


def noise_verdicts(table: pd.DataFrame, df: pd.DataFrame, kind: str, rule: Rule | None = None,
                   readout: str = "top1") -> pd.DataFrame:
    """Add `vs` (the row compared with), `delta` with its corrected interval `delta_lo`/`delta_hi`,
    `ref_delta`, `p`, `p_adj`, `p_equiv_adj`, `pairs`, `verdict`, `look`, `seeds_to_settle` and `family` to
    the table (ablate/evidence.py: the rules).

    Compared with: the variant a step's `vs:` names (column `against`), else the previous step for `steps`
    studies (reference-group rows are skipped: they are not steps of the roadmap), the first variant
    otherwise. Every change with >= 2 seeds both rows finished is one member of the study's family, judged by
    the paired differences over those seeds (`delta` is their mean); with fewer it is listed (`delta` the
    difference of the means) and `not judged`: nothing else (e.g. the paper's noise) may stand in for the
    study's own seeds.
    """
    t = table.copy()
    by_seed = seed_values(df, readout)
    empty = pd.Series(dtype=float)
    given = [a if isinstance(a, str) and a else None for a in t["against"]] if "against" in t else None
    pos = compared_with([str(g) for g in t["group"]], kind, [str(n) for n in t["name"]], given)
    against = [None if j is None else t.index[j] for j in pos]
    rows = [i for i, j in zip(t.index, against, strict=True) if j is not None]
    pairs = [(by_seed.get(t.loc[j, "id"], empty), by_seed.get(t.loc[i, "id"], empty))
             for i, j in zip(t.index, against, strict=True) if j is not None]
    judged = dict(zip(rows, judge_family(pairs, rule or Rule()), strict=True))
    changes = [_NO_CHANGE if j is None else _change(t.loc[j], t.loc[i], judged[i])
               for i, j in zip(t.index, against, strict=True)]
    for k in _NO_CHANGE:
        t[k] = [c[k] for c in changes]
    return t


# The change columns of a row compared with nothing (a reference row, or the first row).
_NO_CHANGE: dict[str, Any] = {"vs": "", "delta": math.nan, "delta_lo": math.nan, "delta_hi": math.nan,
                              "ref_delta": math.nan, "p": math.nan, "p_adj": math.nan, "p_equiv_adj": math.nan,
                              "pairs": 0, "verdict": "", "look": 0, "seeds_to_settle": math.nan, "family": 0}


def _change(prev: pd.Series, row: pd.Series, res: dict[str, Any]) -> dict[str, Any]:
    """The change columns of `row` vs `prev` from its verdict `res` (see `noise_verdicts`)."""
    paired = res["n"] >= 2
    delta = res["mean"] if paired else row["score_mean"] - prev["score_mean"]
    return {"vs": prev["name"], "delta": delta, "delta_lo": res["lo"], "delta_hi": res["hi"],
            "ref_delta": row["ref_top1"] - prev["ref_top1"], "p": res["p"], "p_adj": res["p_adj"],
            "p_equiv_adj": res["p_equiv_adj"], "pairs": int(res["n"]),
            "verdict": res["verdict"] if math.isfinite(delta) else "", "look": int(res["look"]),
            "seeds_to_settle": res["seeds_to_settle"], "family": int(res["family"])}


def vs_baseline(table: pd.DataFrame, df: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str | None]:
    """Change of measured and paper top-1 against one baseline row: the first non-reference row that has
    both a measured mean and a paper top-1. Adds `base_delta` (with its paired 95 % interval `base_lo`/
    `base_hi` when `df` gives >= 2 shared seeds) and `ref_base_delta`; returns the baseline's name."""
    t = table.copy()
    ok = t["top1_mean"].notna() & t["ref_top1"].notna() & ~t["group"].isin(REFERENCE_GROUPS)
    t["base_lo"], t["base_hi"] = math.nan, math.nan
    if not ok.any():
        t["base_delta"], t["ref_base_delta"] = math.nan, math.nan
        return t, None
    b = t[ok].iloc[0]
    t["base_delta"] = t["top1_mean"] - b["top1_mean"]
    t["ref_base_delta"] = t["ref_top1"] - b["ref_top1"]
    if df is not None:
        by_seed = seed_values(df)
        base = by_seed.get(b["id"], pd.Series(dtype=float))
        for i, row in t.iterrows():
            test = paired_test(base, by_seed.get(row["id"], pd.Series(dtype=float)))
            if test["n"] >= 2 and row["id"] != b["id"]:
                t.loc[i, ["base_delta", "base_lo", "base_hi"]] = [test["mean"], test["lo"], test["hi"]]
    return t, str(b["name"])


def _steps_matrix(table: pd.DataFrame, df: pd.DataFrame | None,
                  readout: str = "top1") -> tuple[pd.DataFrame, np.ndarray | None]:
    """The non-reference rows with a paper top-1, and their score per seed (rows x shared seeds), using only
    the seeds every one of those rows finished; None when fewer than 2 such seeds."""
    t = table[~table["group"].isin(REFERENCE_GROUPS) & table["ref_top1"].notna() & table["score_mean"].notna()]
    if df is None or t.empty:
        return t, None
    by_seed = seed_values(df, readout)
    per = [by_seed.get(vid, pd.Series(dtype=float)).dropna() for vid in t["id"]]
    shared = sorted(set.intersection(*(set(s.index) for s in per))) if per else []
    if len(shared) < 2:
        return t, None
    return t, np.array([[float(s.loc[k]) for k in shared] for s in per])


def _rhos(means: np.ndarray, ref: np.ndarray, prev: list[int | None]) -> tuple[Any, Any]:
    """rho of levels and of step changes (row i vs row prev[i]) for per-row means: (rows,) gives two
    floats, (rows, B) two arrays of B (one per bootstrap resample)."""
    cols = means[:, None] if means.ndim == 1 else means
    rows = [i for i, j in enumerate(prev) if j is not None]
    before = [j for j in prev if j is not None]
    d, rd = cols[rows] - cols[before], ref[rows] - ref[before]
    levels, changes = spearman_columns(cols, ref), spearman_columns(d, rd)
    if means.ndim == 1:
        return float(levels[0]), float(changes[0])
    return levels, changes


def agreement(table: pd.DataFrame, df: pd.DataFrame | None = None, kind: str = "steps",
              readout: str = "top1") -> dict[str, Any]:
    """How well the measured ordering follows the paper's, over non-reference rows with a paper value.

    rho_levels / rho_deltas: Spearman rho between measured mean top-1 and paper top-1, and between the
    changes (each step vs the previous one; variants vs the first), with a percentile-bootstrap 95 % interval
    over seeds (scipy.stats.bootstrap resamples the shared seeds, the same resample for every step, so the
    pairing of seeds across steps is kept) when >= 2 seeds are shared; `seeds` is that number.
    big_*: the steps whose paper change is >= BIG_STEP points (beyond the paper's own noise): how many,
    how many have the paper's sign in the measured change, and how many of those are `real` by the study's
    own paired test. `table` is variant_table's of the same `readout` (its scores, not top-1, are ranked).
    """
    t, m = _steps_matrix(table, df, readout)
    ref = t["ref_top1"].to_numpy(float)
    prev: list[int | None] = [None if i == 0 else (i - 1 if kind == "steps" else 0) for i in range(len(t))]
    rho_l, rho_d = _rhos(t["score_mean"].to_numpy(float), ref, prev)
    out: dict[str, Any] = {"rho_levels": rho_l, "n_levels": len(t), "rho_deltas": rho_d,
                           "n_deltas": max(len(t) - 1, 0), "seeds": 0 if m is None else m.shape[1],
                           "rho_levels_ci": (math.nan, math.nan), "rho_deltas_ci": (math.nan, math.nan),
                           "readout": readout}
    if m is not None and len(t) >= 3:
        for j, key in enumerate(("rho_levels_ci", "rho_deltas_ci")):
            def stat(idx: np.ndarray, j: int = j, axis: int = -1) -> Any:  # idx: (n,) or (resamples, n)
                return _rhos(m[:, idx.astype(int)].mean(axis=-1), ref, prev)[j]

            out[key] = bootstrap_interval(stat, m.shape[1], vectorized=True)
    out.update(_big_steps(table))
    return out


def _big_steps(table: pd.DataFrame) -> dict[str, Any]:
    """Sign agreement on the big steps (paper change >= BIG_STEP), from the table's own deltas (vs the
    previous step): how many, how many with the paper's sign, how many of those `real`, and their names."""
    full = table[~table["group"].isin(REFERENCE_GROUPS)]
    big = full[pd.to_numeric(full.get("ref_delta"), errors="coerce").abs() >= BIG_STEP] if "ref_delta" in full \
        else full.iloc[0:0]
    big = big[big["delta"].notna()]
    same = np.sign(big["delta"]) == np.sign(big["ref_delta"])
    return {"big_n": len(big), "big_same": int(same.sum()),
            "big_same_settled": int((same & big["verdict"].isin(SETTLED[:2])).sum()),
            "big_names": [str(x) for x in big["name"]]}


# ---------------------------------------------------------------- curves and grids


def curve_table(metrics: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per variant and epoch, the mean over seeds of the per-epoch metrics (columns of metrics.csv),
    with the variant's index, name and state. `metrics` has the metrics.csv columns plus `id`, `seed` and
    optionally the trial's `status`."""
    if metrics.empty:
        return pd.DataFrame(columns=["id", "epoch", "top1", "train_loss", "index", "name", "seeds"])
    num = [c for c in ("top1", "ema_top1", "train_loss", "val_loss") if c in metrics]
    m = metrics.copy()
    if "status" in m:  # a variant with finished seeds is drawn from those only (a failed seed's epochs would bias)
        finished = set(m.loc[m["status"] == Status.DONE, "id"])
        m = m[(m["status"] == Status.DONE) | ~m["id"].isin(finished)]
    for c in num:
        m[c] = pd.to_numeric(m[c], errors="coerce")
    out = m.groupby(["id", "epoch"], as_index=False).agg(**{c: (c, "mean") for c in num}, seeds=("seed", "nunique"))
    return out.merge(table[["id", "index", "name", "state"]], on="id", how="inner").sort_values(["index", "epoch"])


def grid_table(table: pd.DataFrame, values: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The variant table with one column per swept grid key; `values` maps variant id -> {key: value}."""
    t = table.copy()
    keys = sorted({k for v in values.values() for k in v}, key=lambda k: list(next(iter(values.values()))).index(k))
    for k in keys:
        t[k] = [values.get(vid, {}).get(k) for vid in t["id"]]
    return t


def grid_effect(table: pd.DataFrame, key: str, others: list[str]) -> pd.DataFrame:
    """Mean top-1 (and std over seeds when one variant per value) per value of `key`, one series per
    combination of the other swept keys (`series` column; '' when there is no other key)."""
    t = table.copy()
    t["series"] = [", ".join(f"{o}={show(r[o])}" for o in others) for _, r in t.iterrows()] if others else ""
    t["value"] = t[key].map(show)
    return t[["series", "value", key, "top1_mean", "top1_std", "top1_lo", "top1_hi", "n", "state"]]
