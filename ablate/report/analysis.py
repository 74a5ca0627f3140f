"""Analysis of a results table: pure functions from DataFrames to DataFrames, numbers and sentences.

Nothing here reads or writes files or draws. Inputs are the rows of results/<study>/results.csv (one per
variant x seed, any status) and the per-epoch rows of trials/*/metrics.csv; outputs feed charts.py and
writer.py.

Evidence rules (DESIGN.md): a change is judged only by the study's own seeds (paired t-test over the seeds
both variants finished, 95 % t-interval of the mean difference); with one seed nothing is judged. Every
number a reader compares carries its interval: step means (t-interval over seeds), changes (paired
t-interval), rank correlation with the paper (bootstrap over seeds). Statistics come from scipy.stats.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ablate.sweep.states import PARTIAL, Status

# Two steps differ "within noise" when a paired t-test over shared seeds gives p >= ALPHA.
ALPHA = 0.05
CONFIDENCE = 0.95
# A paper change at least this large (top-1 points) is beyond the paper's own seed noise (its seed std is
# 0.02-0.18): those steps are the fair test of whether a proxy reproduces the paper's direction.
BIG_STEP = 0.4
BOOTSTRAP_RESAMPLES = 2000
# Groups whose rows are reference models, not steps of the roadmap: no change vs the previous step.
REFERENCE_GROUPS = ("reference",)
STATE_LABEL = {s.value: s.label for s in Status}  # status -> the word reports use ("new" reads "not run")
# A variant whose seeds differ in status takes the first of these its seeds have (after done / partial).
_VARIANT_STATE_PRIORITY = (Status.RUNNING, Status.INTERRUPTED, Status.QUEUED, Status.FAILED, Status.SKIPPED)
UNJUDGED = "not judged (1 seed)"


# ---------------------------------------------------------------- statistics


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


def variant_table(df: pd.DataFrame, kind: str = "steps") -> pd.DataFrame:
    """One row per variant in study order: counts, throughput, top-1 mean/std over finished seeds, the
    paper's reference, the change vs the previous step (kind `steps`) or vs the first variant (otherwise),
    the same change in the paper's numbers, and a noise verdict for the change (see `noise_verdicts`)."""
    rows = []
    for vid, g in df.sort_values(["index", "seed"]).groupby("id", sort=False):
        done = g[g["status"] == Status.DONE]
        first = g.iloc[0]
        statuses = [str(s) for s in g["status"]]
        top1 = pd.to_numeric(done["top1"], errors="coerce")
        reasons = [str(r) for r in g["fail_reason"].dropna().unique()] if "fail_reason" in g else []
        rows.append({
            "index": int(first["index"]), "name": first["name"],
            "group": first["group"] if isinstance(first["group"], str) else "",
            "id": vid, "state": _state(statuses), "status": _status_text(statuses),
            "seeds": len(g), "n": int(top1.notna().sum()),
            "params": _first(g, "params"), "gflops": _first(g, "gflops"), "gflops_train": _first(g, "gflops_train"),
            "train_img_per_s": _median(done, "train_img_per_s"), "infer_img_per_s": _median(done, "infer_img_per_s"),
            "top1_mean": float(top1.mean()) if top1.notna().any() else math.nan,
            "top1_std": float(top1.std(ddof=1)) if top1.notna().sum() >= 2 else math.nan,
            "top1_lo": t_interval(top1)[1], "top1_hi": t_interval(top1)[2],
            "top5_mean": _mean(done, "top5"), "ema_top1_mean": _mean(done, "ema_top1"),
            "wall_seconds": _mean(done, "wall_seconds") * len(done) if len(done) else math.nan,
            "ref_top1": _first(g, "ref_top1"), "ref_top1_std": _first(g, "ref_top1_std"),
            "ref_gflops": _first(g, "ref_gflops"), "fail_reasons": "; ".join(reasons),
        })
    table = pd.DataFrame(rows).sort_values("index").reset_index(drop=True)
    if table.empty:
        return table
    return noise_verdicts(table, df, kind)


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


def seed_values(df: pd.DataFrame) -> dict[str, pd.Series]:
    """variant id -> finished top-1 per seed (a Series indexed by seed)."""
    done = df[df["status"] == Status.DONE]
    return {vid: pd.to_numeric(g.set_index("seed")["top1"], errors="coerce") for vid, g in done.groupby("id")}


def noise_verdicts(table: pd.DataFrame, df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Add `vs` (the row compared with), `delta` with its 95 % interval `delta_lo`/`delta_hi`, `ref_delta`,
    `p`, `pairs` and `noise` to the table.

    Compared with: the previous step for `steps` studies (reference-group rows are skipped: they are not
    steps of the roadmap), the first variant otherwise. With >= 2 seeds both rows finished, a paired t-test
    over the shared seeds decides: `noise` = "real" when p < ALPHA, else "within noise"; `delta` is then the
    mean of the paired differences and the interval its t-interval. With fewer shared seeds the change is
    listed but not judged (`noise` = UNJUDGED): nothing else (e.g. the paper's noise) may stand in for the
    study's own seeds.
    """
    t = table.copy()
    by_seed = seed_values(df)
    keys = ("vs", "delta", "delta_lo", "delta_hi", "ref_delta", "p", "pairs", "noise")
    cols: dict[str, list[Any]] = {k: [] for k in keys}
    empty = pd.Series(dtype=float)
    for i, row in t.iterrows():
        j = _compare_with(t, int(i), kind)
        if j is None:
            for k, v in zip(keys, ("", math.nan, math.nan, math.nan, math.nan, math.nan, 0, ""), strict=True):
                cols[k].append(v)
            continue
        prev = t.loc[j]
        test = paired_test(by_seed.get(prev["id"], empty), by_seed.get(row["id"], empty))
        paired = test["n"] >= 2
        delta = test["mean"] if paired else row["top1_mean"] - prev["top1_mean"]
        cols["vs"].append(prev["name"])
        cols["delta"].append(delta)
        cols["delta_lo"].append(test["lo"] if paired else math.nan)
        cols["delta_hi"].append(test["hi"] if paired else math.nan)
        cols["ref_delta"].append(row["ref_top1"] - prev["ref_top1"])
        cols["p"].append(test["p"])
        cols["pairs"].append(int(test["n"]))
        if not math.isfinite(delta):
            verdict = ""
        elif paired:
            verdict = "within noise" if test["p"] >= ALPHA else "real"
        else:
            verdict = UNJUDGED
        cols["noise"].append(verdict)
    for k, v in cols.items():
        t[k] = v
    return t


def _compare_with(t: pd.DataFrame, i: int, kind: str) -> int | None:
    if t.loc[i, "group"] in REFERENCE_GROUPS:
        return None
    if kind != "steps":
        return 0 if i > 0 else None
    for j in range(i - 1, -1, -1):
        if t.loc[j, "group"] not in REFERENCE_GROUPS:
            return j
    return None


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


def _steps_matrix(table: pd.DataFrame, df: pd.DataFrame | None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The non-reference rows with a paper top-1, and their top-1 per seed (rows x shared seeds), using only
    the seeds every one of those rows finished; None when fewer than 2 such seeds."""
    t = table[~table["group"].isin(REFERENCE_GROUPS) & table["ref_top1"].notna() & table["top1_mean"].notna()]
    if df is None or t.empty:
        return t, None
    by_seed = seed_values(df)
    per = [by_seed.get(vid, pd.Series(dtype=float)).dropna() for vid in t["id"]]
    shared = sorted(set.intersection(*(set(s.index) for s in per))) if per else []
    if len(shared) < 2:
        return t, None
    return t, np.array([[float(s.loc[k]) for k in shared] for s in per])


def _rhos(means: np.ndarray, ref: np.ndarray, prev: list[int | None]) -> tuple[float, float]:
    """rho of levels and of step changes (row i vs row prev[i]) for one set of per-row means."""
    d = np.array([means[i] - means[j] if j is not None else np.nan for i, j in enumerate(prev)])
    rd = np.array([ref[i] - ref[j] if j is not None else np.nan for i, j in enumerate(prev)])
    return spearman(means, ref)[0], spearman(d, rd)[0]


def agreement(table: pd.DataFrame, df: pd.DataFrame | None = None, kind: str = "steps") -> dict[str, Any]:
    """How well the measured ordering follows the paper's, over non-reference rows with a paper value.

    rho_levels / rho_deltas: Spearman rho between measured mean top-1 and paper top-1, and between the
    changes (each step vs the previous one; variants vs the first), with a percentile-bootstrap 95 % interval
    over seeds (scipy.stats.bootstrap resamples the shared seeds, the same resample for every step, so the
    pairing of seeds across steps is kept) when >= 2 seeds are shared; `seeds` is that number.
    big_*: the steps whose paper change is >= BIG_STEP points (beyond the paper's own noise): how many,
    how many have the paper's sign in the measured change, and how many of those are `real` by the study's
    own paired test.
    """
    t, m = _steps_matrix(table, df)
    ref = t["ref_top1"].to_numpy(float)
    pos = list(range(len(t)))
    prev: list[int | None] = [None if i == 0 else (i - 1 if kind == "steps" else 0) for i in pos]
    means = t["top1_mean"].to_numpy(float)
    rho_l, rho_d = _rhos(means, ref, prev)
    out: dict[str, Any] = {"rho_levels": rho_l, "n_levels": len(t), "rho_deltas": rho_d,
                           "n_deltas": max(len(t) - 1, 0), "seeds": 0 if m is None else m.shape[1],
                           "rho_levels_ci": (math.nan, math.nan), "rho_deltas_ci": (math.nan, math.nan)}
    if m is not None and len(t) >= 3:
        for j, key in enumerate(("rho_levels_ci", "rho_deltas_ci")):
            def stat(idx: np.ndarray, j: int = j) -> float:
                return _rhos(m[:, idx.astype(int)].mean(axis=1), ref, prev)[j]

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = stats.bootstrap((np.arange(m.shape[1]),), stat, vectorized=False, paired=False,
                                      n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                                      confidence_level=CONFIDENCE, random_state=np.random.default_rng(0))
            lo, hi = res.confidence_interval
            out[key] = (float(lo), float(hi))
    # sign agreement on the big steps, from the table's own deltas (vs the previous step)
    full = table[~table["group"].isin(REFERENCE_GROUPS)]
    big = full[pd.to_numeric(full.get("ref_delta"), errors="coerce").abs() >= BIG_STEP] if "ref_delta" in full \
        else full.iloc[0:0]
    big = big[big["delta"].notna()]
    same = np.sign(big["delta"]) == np.sign(big["ref_delta"])
    out.update(big_n=len(big), big_same=int(same.sum()),
               big_same_real=int((same & (big["noise"] == "real")).sum()),
               big_names=[str(x) for x in big["name"]])
    return out


def fmt_rho(rho: float, ci: tuple[float, float], seeds: int) -> str:
    """`0.41 [−0.05, 0.74], 3 seeds` (or `0.41 (1 seed: no interval)`)."""
    if not math.isfinite(rho):
        return "— (constant or too few values)"
    if seeds >= 2 and all(math.isfinite(c) for c in ci):
        return f"{rho:.2f} [{ci[0]:.2f}, {ci[1]:.2f}], {seeds} seeds"
    return f"{rho:.2f} ({'1 seed' if seeds < 2 else 'too few values'}: no interval)"


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
    t["series"] = [", ".join(f"{o}={_show(r[o])}" for o in others) for _, r in t.iterrows()] if others else ""
    t["value"] = t[key].map(_show)
    return t[["series", "value", key, "top1_mean", "top1_std", "top1_lo", "top1_hi", "n", "state"]]


def _show(v: Any) -> str:
    return str(list(v)) if isinstance(v, tuple) else str(v)


# ---------------------------------------------------------------- findings


def fmt(x: Any, digits: int = 2, signed: bool = False) -> str:
    """A number for a table cell; '—' for missing."""
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(xf):
        return "—"
    return f"{xf:+.{digits}f}" if signed else f"{xf:.{digits}f}"


def fmt_ci(lo: Any, hi: Any, digits: int = 2, signed: bool = False) -> str:
    """` [lo, hi]` for a 95 % interval, '' when there is none."""
    a, b = fmt(lo, digits, signed), fmt(hi, digits, signed)
    return "" if "—" in (a, b) else f" [{a}, {b}]"


def findings(table: pd.DataFrame, kind: str, agree: dict[str, Any] | None = None) -> list[str]:
    """Sentences the study's own numbers support: the best variant, what helped or hurt beyond the study's
    own seed noise (with intervals), what lies within it, the agreement with the paper (with intervals),
    and what is missing. With one seed no change is judged. Each sentence names its rows and numbers."""
    out: list[str] = []
    if table.empty:
        return ["The study has no variants."]
    done = table[table["top1_mean"].notna()]
    if done.empty:
        out.append("No variant has finished yet: nothing can be compared.")
    else:
        best = done.loc[done["top1_mean"].idxmax()]
        out.append(f"Best measured top-1: **{best['name']}** with {fmt(best['top1_mean'])}"
                   + fmt_ci(best.get("top1_lo"), best.get("top1_hi")) + f" (n = {int(best['n'])}"
                   + (", 95 % CI" if int(best["n"]) >= 2 else "") + ").")
    what = "the previous step" if kind == "steps" else f"'{table.iloc[0]['name']}'"
    judged = table[table["delta"].notna()] if "delta" in table else table.iloc[0:0]

    def names(rows: pd.DataFrame) -> str:
        return ", ".join(f"{r['name']} ({fmt(r['delta'], signed=True)}"
                         f"{fmt_ci(r['delta_lo'], r['delta_hi'], signed=True)})" for _, r in rows.iterrows())

    unjudged = judged[judged["noise"] == UNJUDGED]
    tested = judged[judged["noise"].isin(["real", "within noise"])]
    if len(unjudged) and tested.empty:
        out.append("1 seed: changes not judged; run with `seeds: [0, 1, 2]`. A single run per variant cannot "
                   "tell an effect from seed noise, so none of these changes is a finding. Changes (vs "
                   f"{what}, unjudged): {names(unjudged)}.")
    elif len(judged):
        real = tested[tested["noise"] == "real"]
        helped, hurt = real[real["delta"] > 0], real[real["delta"] < 0]
        noise = tested[tested["noise"] == "within noise"]
        n_min, n_max = int(tested["pairs"].min()), int(tested["pairs"].max())
        seeds = f"{n_min}" if n_min == n_max else f"{n_min}-{n_max}"
        how = f"paired t-test over {seeds} shared seeds, p < {ALPHA:g}; 95 % interval of the change"
        if len(helped):
            out.append(f"Helped (vs {what}; {how}): {names(helped)}.")
        if len(hurt):
            out.append(f"Hurt (vs {what}; {how}): {names(hurt)}.")
        if len(noise):
            out.append(f"Within the study's own seed noise (p ≥ {ALPHA:g}) — not findings: {names(noise)}.")
        if not len(real) and len(noise):
            out.append("No change is beyond the study's own seed noise: more seeds (or a larger proxy) are needed "
                       "to resolve effects of this size.")
        if len(unjudged):
            out.append(f"Fewer than 2 shared seeds, not judged: {names(unjudged)}.")
        if n_min == 2:
            out.append("With 2 seeds a paired t-test has 1 degree of freedom: its intervals are wide and only very "
                       "consistent changes reach p < 0.05.")
    if agree is not None and agree["n_levels"] >= 3:
        seeds = agree["seeds"]
        parts = [f"Spearman ρ between measured and paper top-1 over {agree['n_levels']} steps: "
                 f"{fmt_rho(agree['rho_levels'], agree['rho_levels_ci'], seeds)}",
                 f"between step changes over {agree['n_deltas']} steps: "
                 f"{fmt_rho(agree['rho_deltas'], agree['rho_deltas_ci'], seeds)}"]
        if agree["big_n"]:
            parts.append(f"the measured change has the paper's sign in {agree['big_same']} of the {agree['big_n']} "
                         f"steps whose paper change is ≥ {BIG_STEP:g} points"
                         + (f" ({agree['big_same_real']} of them beyond the study's own noise)" if seeds >= 2
                            else ""))
        out.append("Agreement with the paper (bootstrap 95 % intervals over seeds): " + "; ".join(parts) + ".")
        ci = agree["rho_levels_ci"]
        if seeds >= 2 and math.isfinite(ci[0]) and ci[0] <= 0 <= ci[1]:
            out.append("The interval of ρ (levels) contains 0: this run cannot show that the proxy ranks the steps "
                       "like the paper.")
    elif table["ref_top1"].notna().any() and kind == "steps":
        out.append("Too few finished steps with a paper value (< 3) to compare orderings with the paper.")
    missing = table[table["state"] != Status.DONE]
    if len(missing):
        out.append("Not (all) finished: " + ", ".join(f"{r['name']} ({r['status']})" for _, r in missing.iterrows())
                   + ".")
    return out
