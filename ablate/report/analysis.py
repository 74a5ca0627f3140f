"""Analysis of a results table: pure functions from DataFrames to DataFrames, numbers and sentences.

Nothing here reads or writes files or draws. Inputs are the rows of results/<study>/results.csv (one per
variant x seed, any status) and the per-epoch rows of trials/*/metrics.csv; outputs feed charts.py and
writer.py.

Statistics use numpy/math only: scipy is not a dependency of ablate, so the Student-t tail (paired t-test)
is computed here from the regularized incomplete beta function (Numerical Recipes' continued fraction).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

# Two steps differ "within noise" when a paired t-test over shared seeds gives p >= ALPHA.
ALPHA = 0.05
# Groups whose rows are reference models, not steps of the roadmap: no change vs the previous step.
REFERENCE_GROUPS = ("reference",)
STATE_LABEL = {"failed": "failed", "new": "not run", "queued": "queued", "running": "running",
               "interrupted": "interrupted", "skipped": "skipped"}


# ---------------------------------------------------------------- statistics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def paired_test(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Paired t-test of b - a over the seeds both have (Series indexed by seed).

    Returns n (shared seeds), mean and sd of the differences, t and the two-sided p (NaN when n < 2).
    Identical differences on every seed (sd = 0) give p = 0 for a non-zero mean, 1 for zero.
    """
    d = (b - a).dropna()
    n = len(d)
    out = {"n": float(n), "mean": float(d.mean()) if n else math.nan, "sd": math.nan, "t": math.nan, "p": math.nan}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["sd"] = sd
    if sd == 0.0:
        out["t"] = math.inf if out["mean"] else 0.0
        out["p"] = 0.0 if out["mean"] else 1.0
        return out
    t = out["mean"] / (sd / math.sqrt(n))
    out.update(t=t, p=t_two_sided_p(t, n - 1))
    return out


def spearman(x: Any, y: Any) -> tuple[float, int]:
    """Spearman's rho (Pearson correlation of average ranks; ties share their mean rank) and the number of
    pairs used (pairs with a missing value are dropped). NaN when fewer than 3 pairs or a constant side."""
    frame = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)}).dropna()
    n = len(frame)
    if n < 3:
        return math.nan, n
    rx, ry = frame["x"].rank(method="average").to_numpy(), frame["y"].rank(method="average").to_numpy()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return (float((rx * ry).sum()) / den if den else math.nan), n


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
    if s == {"done"}:
        return "done"
    if "done" in s:
        return "partial"
    for word in ("running", "interrupted", "queued", "failed", "skipped"):
        if word in s:
            return word
    return "new"


def _status_text(statuses: list[str]) -> str:
    counts = pd.Series(statuses).value_counts()
    if len(counts) == 1:
        word = statuses[0]
        text = "done" if word == "done" else STATE_LABEL.get(word, word)
        return text if len(statuses) == 1 else f"{text} ({len(statuses)} seeds)"
    order = ["done", "running", "queued", "interrupted", "failed", "new", "skipped"]
    return ", ".join(f"{counts[k]} {STATE_LABEL.get(k, k) if k != 'done' else 'done'}" for k in order if k in counts)


def variant_table(df: pd.DataFrame, kind: str = "steps") -> pd.DataFrame:
    """One row per variant in study order: counts, throughput, top-1 mean/std over finished seeds, the
    paper's reference, the change vs the previous step (kind `steps`) or vs the first variant (otherwise),
    the same change in the paper's numbers, and a noise verdict for the change (see `noise_verdicts`)."""
    rows = []
    for vid, g in df.sort_values(["index", "seed"]).groupby("id", sort=False):
        done = g[g["status"] == "done"]
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
    """The paper's typical seed std of top-1 (median of the references' top1_std), NaN if none is given."""
    s = pd.to_numeric(table.get("ref_top1_std"), errors="coerce").dropna()
    return float(s.median()) if len(s) else math.nan


def noise_verdicts(table: pd.DataFrame, df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Add `vs` (the row compared with), `delta`, `ref_delta`, `p`, `pairs` and `noise` to the table.

    Compared with: the previous step for `steps` studies (reference-group rows are skipped: they are
    not steps of the roadmap), the first variant otherwise. With >= 2 seeds both rows finished, a paired
    t-test over the shared seeds decides (`noise` = "within noise" when p >= ALPHA, else "real").
    With one seed the change is compared with the paper's typical seed std sigma: |delta| < 2*sqrt(2)*sigma
    (the 95% band of a difference of two single runs) is "within paper noise". The proxy's own seed noise
    is usually larger, so this flags too few steps, never too many. Without sigma: "1 seed: cannot judge".
    """
    t = table.copy()
    by_seed = {vid: pd.to_numeric(g.set_index("seed")["top1"], errors="coerce")
               for vid, g in df[df["status"] == "done"].groupby("id")}
    sigma = typical_seed_std(t)
    cols: dict[str, list[Any]] = {k: [] for k in ("vs", "delta", "ref_delta", "p", "pairs", "noise")}
    for i, row in t.iterrows():
        j = _compare_with(t, int(i), kind)
        if j is None:
            for k, v in (("vs", ""), ("delta", math.nan), ("ref_delta", math.nan), ("p", math.nan),
                         ("pairs", 0), ("noise", "")):
                cols[k].append(v)
            continue
        prev = t.loc[j]
        delta = row["top1_mean"] - prev["top1_mean"]
        empty = pd.Series(dtype=float)
        test = paired_test(by_seed.get(prev["id"], empty), by_seed.get(row["id"], empty))
        cols["vs"].append(prev["name"])
        cols["delta"].append(delta)
        cols["ref_delta"].append(row["ref_top1"] - prev["ref_top1"])
        cols["p"].append(test["p"])
        cols["pairs"].append(int(test["n"]))
        if not math.isfinite(delta):
            verdict = ""
        elif test["n"] >= 2:
            verdict = "within noise" if test["p"] >= ALPHA else "real"
        elif math.isfinite(sigma):
            verdict = "within paper noise" if abs(delta) < 2 * math.sqrt(2) * sigma else "above paper noise"
        else:
            verdict = "1 seed: cannot judge"
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


def vs_baseline(table: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Change of measured and paper top-1 against one baseline row: the first non-reference row that has
    both a measured mean and a paper top-1. Adds `base_delta` and `ref_base_delta`; returns the name."""
    t = table.copy()
    ok = t["top1_mean"].notna() & t["ref_top1"].notna() & ~t["group"].isin(REFERENCE_GROUPS)
    if not ok.any():
        t["base_delta"], t["ref_base_delta"] = math.nan, math.nan
        return t, None
    b = t[ok].iloc[0]
    t["base_delta"] = t["top1_mean"] - b["top1_mean"]
    t["ref_base_delta"] = t["ref_top1"] - b["ref_top1"]
    return t, str(b["name"])


def agreement(table: pd.DataFrame) -> dict[str, Any]:
    """How well the measured ordering follows the paper's, over non-reference rows.

    rho_levels: Spearman rho between measured mean top-1 and paper top-1 over rows having both.
    rho_deltas: Spearman rho between the step-to-step changes (`delta` vs `ref_delta`) where both exist.
    sign: how many of those changes have the same sign (a zero change in the paper counts as agreeing
    with anything within noise, i.e. it is left out).
    """
    t = table[~table["group"].isin(REFERENCE_GROUPS)]
    rho_l, n_l = spearman(t["top1_mean"], t["ref_top1"])
    d = t[["delta", "ref_delta"]].dropna() if "delta" in t else pd.DataFrame(columns=["delta", "ref_delta"])
    rho_d, n_d = spearman(d["delta"], d["ref_delta"])
    signed = d[d["ref_delta"] != 0]
    same = int((np.sign(signed["delta"]) == np.sign(signed["ref_delta"])).sum())
    return {"rho_levels": rho_l, "n_levels": n_l, "rho_deltas": rho_d, "n_deltas": n_d,
            "sign_agree": same, "sign_n": len(signed)}


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
        finished = set(m.loc[m["status"] == "done", "id"])
        m = m[(m["status"] == "done") | ~m["id"].isin(finished)]
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
    return t[["series", "value", key, "top1_mean", "top1_std", "n", "state"]]


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


def findings(table: pd.DataFrame, kind: str) -> list[str]:
    """Sentences the numbers support: what helped, what hurt, what lies within noise, the best variant,
    the agreement with the paper, and what is missing. Each sentence names its rows and numbers."""
    out: list[str] = []
    if table.empty:
        return ["The study has no variants."]
    done = table[table["top1_mean"].notna()]
    if done.empty:
        out.append("No variant has finished yet: nothing can be compared.")
    else:
        best = done.loc[done["top1_mean"].idxmax()]
        out.append(f"Best measured top-1: **{best['name']}** with {fmt(best['top1_mean'])}"
                   + (f" ± {fmt(best['top1_std'])}" if math.isfinite(best["top1_std"]) else "")
                   + f" (n = {int(best['n'])}).")
    what = "the previous step" if kind == "steps" else f"'{table.iloc[0]['name']}'"
    judged = table[table["delta"].notna()] if "delta" in table else table.iloc[0:0]
    real = judged[judged["noise"].isin(["real", "above paper noise"])]
    helped = real[real["delta"] > 0]
    hurt = real[real["delta"] < 0]
    noise = judged[judged["noise"].isin(["within noise", "within paper noise"])]
    unjudged = judged[judged["noise"] == "1 seed: cannot judge"]

    def names(rows: pd.DataFrame) -> str:
        return ", ".join(f"{r['name']} ({fmt(r['delta'], signed=True)})" for _, r in rows.iterrows())

    if len(helped):
        out.append(f"Helped (vs {what}, beyond noise): {names(helped)}.")
    if len(hurt):
        out.append(f"Hurt (vs {what}, beyond noise): {names(hurt)}.")
    if len(noise):
        how = ("paired t-test over shared seeds, p ≥ 0.05" if (noise["pairs"] >= 2).all() else
               "paired t-test where ≥ 2 seeds, else |Δ| < 2√2 × the paper's typical seed std")
        out.append(f"Within seed noise ({how}) — do not read these as effects: {names(noise)}.")
    if len(unjudged):
        out.append(f"One seed and no reference seed std: these changes cannot be judged against noise: "
                   f"{names(unjudged)}. Run more seeds (`seeds: [0, 1, 2]`).")
    if (judged["noise"] == "above paper noise").any():
        out.append("Where fewer than 2 seeds are shared the noise check uses the paper's ImageNet seed std; a "
                   "proxy's own seed noise is usually larger, so those steps marked beyond noise may still be noise.")
    if len(judged) and (judged["pairs"] == 2).any():
        out.append("With 2 seeds a paired t-test has 1 degree of freedom: only very consistent changes reach "
                   "p < 0.05.")
    agree = agreement(table)
    if agree["n_levels"] >= 3 or agree["n_deltas"] >= 3:
        parts = []
        if agree["n_levels"] >= 3:
            parts.append(f"Spearman ρ between measured and paper top-1 over {agree['n_levels']} steps: "
                         f"{fmt(agree['rho_levels'])}")
        if agree["n_deltas"] >= 3:
            parts.append(f"between step-to-step changes over {agree['n_deltas']} steps: {fmt(agree['rho_deltas'])}")
        if agree["sign_n"]:
            parts.append(f"the change has the paper's sign in {agree['sign_agree']} of {agree['sign_n']} steps")
        out.append("Agreement with the paper: " + "; ".join(parts) + ".")
    elif table["ref_top1"].notna().any():
        out.append("Too few finished steps with a paper value (< 3) to compare orderings with the paper.")
    missing = table[~table["state"].isin(["done"])]
    if len(missing):
        out.append("Not (all) finished: " + ", ".join(f"{r['name']} ({r['status']})" for _, r in missing.iterrows())
                   + ".")
    return out
