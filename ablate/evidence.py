"""Verdicts on a study's changes: one family, corrected together, with "no effect" as a finding of its own.

Each judged change (a step against the one before it, a variant against the first) asks two questions of the
paired differences of top-1 over the seeds both variants finished:
- did it change top-1 at all?  The paired t-test of mean difference 0 (p);
- is its effect smaller than the margin?  Two one-sided t-tests against -margin and +margin (TOST, p_equiv,
  Schuirmann 1987), asked only when the study sets `evidence.margin`.
The family is every judged change of the study. Its p-values are corrected together (`evidence.correction`):
- `holm`: Holm's step-down (1979) for the family-wise error rate. A change's two null hypotheses ("no effect",
  "an effect of at least the margin") cannot both be true, so the step-down divides alpha by the number of
  changes that can still hold a true null (Shaffer 1986), not by the number of hypotheses: with no margin this
  is exactly Holm's rule;
- `bh`: Benjamini-Hochberg (1995) over the same p-values (scipy.stats.false_discovery_control), the false
  discovery rate;
- `none`: each hypothesis at alpha.
A change is `helped` / `hurt` when its corrected p is below alpha (its corrected interval excludes 0),
`equivalent` when its corrected TOST p is (its corrected interval lies inside +-margin), `undetermined`
otherwise, and `not judged` with fewer than 2 shared seeds.

Adding seeds where the verdict is open (`evidence.max_seeds`) looks at the data several times. Each look k
spends its own share of alpha, from the Lan-DeMets (1983) alpha-spending function of O'Brien-Fleming type,
alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)) at information fraction t = seeds / max_seeds; the looks are
joined by Bonferroni's inequality (no assumption on how they correlate), so the study's error rate is at most
the sum of the shares, alpha. A change settled at a look keeps that verdict; seeds its variants get later
(for a neighbouring change) do not reopen it. `bench/verdict_sim.py` shows the rate by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import special, stats

HELPED, HURT, EQUIVALENT, UNDETERMINED, NOT_JUDGED = "helped", "hurt", "equivalent", "undetermined", "not judged"
VERDICTS = (HELPED, HURT, EQUIVALENT, UNDETERMINED, NOT_JUDGED)
SETTLED = (HELPED, HURT, EQUIVALENT)
MAX_SEEDS_TO_SETTLE = 1000  # "seeds to settle" beyond this reads as "more than 1000"
CORRECTION_NAMES = {"holm": "Holm's step-down (family-wise error)", "bh": "Benjamini-Hochberg (false discovery "
                    "rate)", "none": "no correction"}


class Readout(NamedTuple):
    """What number of a finished trial a verdict is about (`evidence.readout`)."""

    column: str  # the trial's metric (results.csv column)
    sign: float  # +1: higher is better; -1: lower is better (the score is negated)
    label: str


# The readouts a study may judge by; the report shows agreement with the paper for each (report/readouts.py).
READOUTS = {
    "top1": Readout("top1", 1.0, "final top-1"),
    "top1_best": Readout("top1_best", 1.0, "best top-1"),
    "ema_top1": Readout("ema_top1", 1.0, "EMA top-1"),
    "loss": Readout("loss", -1.0, "final val loss (−)"),
    "train_loss_sum": Readout("train_loss_sum", -1.0, "Σ train loss (−)"),
}


@dataclass(frozen=True)
class Rule:
    """How a study judges its changes: `evidence` of the study file plus its seeds."""

    correction: str = "holm"
    alpha: float = 0.05
    margin: float | None = None
    seeds: tuple[int, ...] | None = None  # None: one look at whatever seeds the data has
    max_seeds: int | None = None
    round_seeds: int = 2

    @classmethod
    def of(cls, study: Any) -> Rule:
        """The rule of a `Study` (config/study.py)."""
        ev = study.evidence
        if study.search is not None:  # a search has no rounds: one look at the seeds its configurations have
            return cls(correction=ev.correction, alpha=ev.alpha, margin=ev.margin)
        return cls(correction=ev.correction, alpha=ev.alpha, margin=ev.margin, seeds=tuple(study.seeds),
                   max_seeds=ev.max_seeds, round_seeds=ev.round_seeds)

    @property
    def top(self) -> int:
        """Most seeds a variant can get."""
        return max(self.max_seeds or 0, len(self.seeds or ()))

    def looks(self) -> list[tuple[int, float]]:
        """(seeds at the look, alpha spent at it) for every planned look: one look at the study's seeds with
        the whole alpha when no seeds are added."""
        if self.seeds is None:
            return [(0, self.alpha)]
        n0, top = len(self.seeds), self.top
        sizes = list(range(n0, top, self.round_seeds)) + [top] if top > n0 else [n0]
        spent = [spend(n / top, self.alpha) for n in sizes]
        return [(n, s - (spent[i - 1] if i else 0.0)) for i, (n, s) in enumerate(zip(sizes, spent, strict=True))]

    def seeds_at(self, look: int) -> set[int] | None:
        """The seeds a variant may have at look `look` (1-based): the study's, then the added ones (None: any)."""
        if self.seeds is None:
            return None
        n = self.looks()[look - 1][0]
        extra = n - len(self.seeds)
        return set(self.seeds) | {max(self.seeds) + 1 + i for i in range(extra)}


def spend(t: float, alpha: float) -> float:
    """Alpha spent up to information fraction t in (0, 1] (Lan-DeMets, O'Brien-Fleming type); alpha at t = 1."""
    if t >= 1:
        return alpha
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(t)))


# ---------------------------------------------------------------- corrections


def holm(p: Sequence[float], change: Sequence[int] | None = None) -> np.ndarray:
    """Holm-adjusted p-values. `change[i]` names the change hypothesis i belongs to; at most one hypothesis
    of a change can be true, so the step-down multiplies each p by the number of changes still represented
    among the hypotheses not yet passed (Shaffer's refinement). Without `change` every hypothesis is its own
    change: Holm's rule. (scipy has no Holm; statsmodels would be a dependency for these few lines.)"""
    p = np.asarray(p, dtype=float)
    groups = np.arange(len(p)) if change is None else np.asarray(change)
    order = np.argsort(p, kind="stable")
    out, running = np.empty(len(p)), 0.0
    for j, i in enumerate(order):
        slots = len(set(groups[order[j:]].tolist()))
        running = max(running, min(1.0, slots * p[i]))
        out[i] = running
    return out


def bh(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control)."""
    p = np.asarray(p, dtype=float)
    return stats.false_discovery_control(p, method="bh") if len(p) else p


def adjust(p: Sequence[float], p_equiv: Sequence[float] | None, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Correct a family's p-values together: `p` of every change's "no effect" test and (with a margin)
    `p_equiv` of its equivalence test. Returns the adjusted (p, p_equiv); p_equiv all 1 without a margin."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    if p_equiv is None:
        pooled, change = p, np.arange(m)
    else:
        pooled, change = np.concatenate([p, np.asarray(p_equiv, float)]), np.concatenate([np.arange(m)] * 2)
    if method == "holm":
        adj = holm(pooled, change)
    elif method == "bh":
        adj = bh(pooled)
    elif method == "none":
        adj = pooled.copy()
    else:
        raise ValueError(f"unknown correction {method!r}: one of holm, bh, none")
    return adj[:m], (adj[m:] if p_equiv is not None else np.ones(m))


# ---------------------------------------------------------------- one change


def test_change(d: np.ndarray, margin: float | None) -> dict[str, float]:
    """n, mean, sd, the two-sided p of mean 0 and the TOST p against +-margin of the paired differences d
    (the one-sample t-tests of scipy.stats.ttest_1samp, written out with scipy.special's Student t: a
    simulation asks for millions). Identical differences (sd 0): p 0 for a non-zero mean (1 for zero),
    p_equiv 0 inside the margin."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    out = {"n": float(n), "mean": float(d.mean()) if n else math.nan, "sd": math.nan, "p": math.nan,
           "p_equiv": math.nan}
    if n < 2:
        return out
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    out["sd"] = sd
    if sd == 0.0:
        out["p"] = 0.0 if mean else 1.0
        out["p_equiv"] = (0.0 if abs(mean) < margin else 1.0) if margin else 1.0
        return out
    se, df = sd / math.sqrt(n), n - 1
    out["p"] = float(2 * special.stdtr(df, -abs(mean) / se))
    if margin:  # H0 mean <= -margin (p of t above) and H0 mean >= +margin (p of t below): the larger p
        out["p_equiv"] = float(max(special.stdtr(df, -(mean + margin) / se), special.stdtr(df, (mean - margin) / se)))
    else:
        out["p_equiv"] = 1.0
    return out


def interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """Two-sided t-interval of the mean of d at confidence `level` (NaN with fewer than 2 values)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d))
    if se == 0.0:
        return mean, mean
    half = float(special.stdtrit(len(d) - 1, 1 - (1 - level) / 2)) * se
    return mean - half, mean + half


def seeds_to_settle(mean: float, sd: float, margin: float | None, a: float) -> float:
    """How many seeds the observed mean and spread imply would settle a change at per-test level a (a paired
    interval excluding 0, or inside +-margin); inf beyond MAX_SEEDS_TO_SETTLE, NaN without a spread."""
    if not (math.isfinite(mean) and math.isfinite(sd)):
        return math.nan
    if sd == 0:
        return 2.0
    n = np.arange(2, MAX_SEEDS_TO_SETTLE + 1)
    se = sd / np.sqrt(n)
    ok = abs(mean) > special.stdtrit(n - 1, 1 - a / 2) * se
    if margin:
        ok |= abs(mean) + special.stdtrit(n - 1, 1 - a) * se < margin
    return float(n[ok][0]) if ok.any() else math.inf


# ---------------------------------------------------------------- a family at one look, and the looks


def judge_look(diffs: list[np.ndarray], open_: list[bool], rule: Rule, alpha_look: float) -> list[dict[str, Any]]:
    """Test every change of a family at one look (paired differences, one array per change) at the look's
    alpha. Changes not `open_` (settled at an earlier look) stay in the family with p = 1. Each result holds
    the test, the adjusted p's scaled to the rule's alpha (a verdict needs p_adj < alpha), the verdict and
    the corrected interval (lo, hi)."""
    tests = [test_change(d, rule.margin) if o else {"n": float(len(d)), "p": 1.0, "p_equiv": 1.0}
             for d, o in zip(diffs, open_, strict=True)]
    p = [t["p"] if math.isfinite(t["p"]) else 1.0 for t in tests]
    pe = [t["p_equiv"] if math.isfinite(t["p_equiv"]) else 1.0 for t in tests] if rule.margin else None
    adj, adj_e = adjust(p, pe, rule.correction)
    scale = rule.alpha / alpha_look
    out = []
    for d, t, raw, a, ae in zip(diffs, tests, p, adj, adj_e, strict=True):
        res = dict(t, p_adj=min(1.0, a * scale), p_equiv_adj=min(1.0, ae * scale) if rule.margin else math.nan)
        res["verdict"] = _verdict(res, rule, len(d))
        # the per-test level the correction spends on this change: its interval excludes 0 iff p_adj < alpha.
        # A p_adj capped at 1 says only that the level is below p: there, the first step's alpha / m.
        level = alpha_look * raw / a if 0 < a < 1 and raw > 0 else alpha_look / max(len(diffs), 1)
        if res["verdict"] == EQUIVALENT:  # TOST at level a <=> the (1 - 2a) interval inside +-margin
            level_e = alpha_look * t["p_equiv"] / ae if ae > 0 and t["p_equiv"] > 0 else alpha_look
            res["lo"], res["hi"] = interval(d, 1 - 2 * min(level_e, 0.5))
        else:
            res["lo"], res["hi"] = interval(d, 1 - min(level, 1.0))
        res["level"] = level
        out.append(res)
    return out


def _verdict(res: dict[str, Any], rule: Rule, n: int) -> str:
    if n < 2:
        return NOT_JUDGED
    if res["p_adj"] < rule.alpha:
        return HELPED if res["mean"] > 0 else HURT
    if rule.margin and res["p_equiv_adj"] < rule.alpha:
        return EQUIVALENT
    return UNDETERMINED


def judge_family(pairs: list[tuple[pd.Series, pd.Series]], rule: Rule) -> list[dict[str, Any]]:
    """Verdicts of a family of changes, replaying the study's looks. `pairs[i]` is change i's (before, after)
    top-1 per seed (Series indexed by seed). Each result is `judge_look`'s for the change at the look that
    settled it (or its last), plus `look` (that look; 0 when not judged), `alpha_look` (the alpha it spent),
    `seeds_to_settle` (for an undetermined change) and `family` (the number of judged changes)."""
    results, _ = replay(pairs, rule)
    return results


def replay(pairs: list[tuple[pd.Series, pd.Series]], rule: Rule) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """`judge_family`'s results, and for each look held, the changes still open after it. Look 1 uses the
    study's seeds the data has; a later look k tests an open change only once it has every seed of
    `rule.seeds_at(k)` (a round still training, or a failed trial, leaves it at its earlier look)."""
    shared = [_diffs(a, b) for a, b in pairs]
    judged = [len(d) >= 2 for _, d in shared]
    final: list[dict[str, Any] | None] = [None] * len(pairs)
    history: list[list[int]] = []
    for k, (_, alpha_k) in enumerate(rule.looks(), start=1):
        keep = rule.seeds_at(k)
        diffs = [d if keep is None else d[np.isin(seeds, list(keep))] for seeds, d in shared]
        tested = [judged[i] and (final[i] is None or (final[i]["verdict"] == UNDETERMINED and final[i]["look"] == k - 1
                                                      and keep is not None and len(diffs[i]) == len(keep)))
                  for i in range(len(pairs))]
        if not any(tested):
            break
        fam = [i for i in range(len(pairs)) if judged[i]]
        for i, res in zip(fam, judge_look([diffs[i] for i in fam], [tested[i] for i in fam], rule, alpha_k),
                          strict=True):
            if tested[i]:
                final[i] = dict(res, look=k, alpha_look=alpha_k)
        # the changes a round may reopen: still undetermined, on the look's whole data (never a partial round)
        history.append([i for i in fam if tested[i] and final[i]["verdict"] == UNDETERMINED  # type: ignore[index]
                        and (keep is None or len(diffs[i]) == len(keep))])
    m = sum(judged)
    return [_finish(f, d, rule, m) for f, (_, d) in zip(final, shared, strict=True)], history


def plan(pairs: list[tuple[pd.Series, pd.Series]], rule: Rule) -> dict[int, dict[int, list[int]]]:
    """The seeds the adaptive rule adds: {round k: {change index: [seeds]}}. After look k, each change still
    open gets the seeds of round k (look k + 1) for both its variants. A pure function of the results, so
    every worker, a resumed run and the report agree on it; queueing it twice queues nothing twice."""
    _, history = replay(pairs, rule)
    looks = len(rule.looks())
    out: dict[int, dict[int, list[int]]] = {}
    for k, open_ in enumerate(history, start=1):
        if k >= looks or not open_:
            continue
        new = sorted(rule.seeds_at(k + 1) - rule.seeds_at(k))  # type: ignore[operator]
        out[k] = {i: new for i in open_}
    return out


def _finish(res: dict[str, Any] | None, d: np.ndarray, rule: Rule, m: int) -> dict[str, Any]:
    if res is None:  # fewer than 2 shared seeds: listed, not judged
        t = test_change(d, rule.margin)
        res = dict(t, p_adj=math.nan, p_equiv_adj=math.nan, verdict=NOT_JUDGED, lo=math.nan, hi=math.nan,
                   look=0, alpha_look=math.nan, level=math.nan)
    res["family"] = m
    res["seeds_to_settle"] = math.nan
    if res["verdict"] == UNDETERMINED:
        final_alpha = rule.looks()[-1][1]
        res["seeds_to_settle"] = seeds_to_settle(res["mean"], res["sd"], rule.margin, final_alpha / max(m, 1))
    return res


def _diffs(before: pd.Series, after: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, after - before) over the seeds both have a value for, in seed order."""
    a = {k: float(v) for k, v in pd.to_numeric(before, errors="coerce").items() if v == v}
    b = {k: float(v) for k, v in pd.to_numeric(after, errors="coerce").items() if v == v}
    seeds = sorted(a.keys() & b.keys())
    return np.array(seeds, dtype=np.int64), np.array([b[s] - a[s] for s in seeds], dtype=float)


def agreement(verdicts: Sequence[str], intervals: Sequence[tuple[float, float]] | None = None) -> str:
    """How the verdicts of one change in several runs agree.

    `contradictory`: two runs settle it in ways no single effect size satisfies: helped vs hurt, or an effect
    vs equivalent whose corrected intervals (`intervals`, one per run) do not overlap (an effect shown to be
    at least as large as the margin). `same`: every run gives the same verdict. `compatible` otherwise: one run
    settled it and another left it undetermined or not judged, or an effect and an equivalence whose intervals
    share values (e.g. +1.2 [+0.1, +2.3] and equivalent within 2 points, [-0.9, +1.8]: an effect of +1 fits
    both). '' when fewer than two runs judged it at all."""
    runs = [(v, intervals[i] if intervals is not None else None) for i, v in enumerate(verdicts) if v in VERDICTS]
    if len(runs) < 2:
        return ""
    for i, (v, ci) in enumerate(runs):
        for w, cj in runs[i + 1:]:
            if v in SETTLED and w in SETTLED and v != w and _disagree(v, ci, w, cj):
                return "contradictory"
    return "same" if len({v for v, _ in runs}) == 1 else "compatible"


def _disagree(v: str, ci: tuple[float, float] | None, w: str, cj: tuple[float, float] | None) -> bool:
    """Two different settled verdicts exclude each other: helped vs hurt always; an effect vs equivalent when
    their intervals are disjoint (or not known)."""
    if {v, w} == {HELPED, HURT}:
        return True
    if ci is None or cj is None or not all(math.isfinite(x) for x in (*ci, *cj)):
        return True
    return ci[1] < cj[0] or cj[1] < ci[0]
