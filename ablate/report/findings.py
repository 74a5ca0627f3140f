"""The report's findings: sentences the study's own numbers support, built from the variant table and the
agreement with the paper (analysis.py). Each sentence names its rows and numbers; with one seed no change
is judged."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ablate.sweep.states import Status

from .analysis import BIG_STEP, UNJUDGED
from .stats import ALPHA
from .text import fmt, fmt_ci, fmt_rho


def findings(table: pd.DataFrame, kind: str, agree: dict[str, Any] | None = None) -> list[str]:
    """Sentences the study's own numbers support: the best variant, what helped or hurt beyond the study's
    own seed noise (with intervals), what lies within it, the agreement with the paper (with intervals),
    and what is missing. With one seed no change is judged. Each sentence names its rows and numbers."""
    if table.empty:
        return ["The study has no variants."]
    out = [_best(table)]
    out += _changes(table, kind)
    if agree is not None and agree["n_levels"] >= 3:
        out += _agreement(agree)
    elif table["ref_top1"].notna().any() and kind == "steps":
        out.append("Too few finished steps with a paper value (< 3) to compare orderings with the paper.")
    missing = table[table["state"] != Status.DONE]
    if len(missing):
        out.append("Not (all) finished: " + ", ".join(f"{r['name']} ({r['status']})" for _, r in missing.iterrows())
                   + ".")
    return out


def _best(table: pd.DataFrame) -> str:
    """The best measured variant with its interval, or that none has finished."""
    done = table[table["top1_mean"].notna()]
    if done.empty:
        return "No variant has finished yet: nothing can be compared."
    best = done.loc[done["top1_mean"].idxmax()]
    return (f"Best measured top-1: **{best['name']}** with {fmt(best['top1_mean'])}"
            + fmt_ci(best.get("top1_lo"), best.get("top1_hi")) + f" (n = {int(best['n'])}"
            + (", 95 % CI" if int(best["n"]) >= 2 else "") + ").")


def _names(rows: pd.DataFrame) -> str:
    """`name (+0.12 [-0.30, 0.54])` for each row's change, comma-separated."""
    return ", ".join(f"{r['name']} ({fmt(r['delta'], signed=True)}"
                     f"{fmt_ci(r['delta_lo'], r['delta_hi'], signed=True)})" for _, r in rows.iterrows())


def _changes(table: pd.DataFrame, kind: str) -> list[str]:
    """What helped, hurt or lies within the study's own seed noise; unjudged changes as such."""
    what = "the previous step" if kind == "steps" else f"'{table.iloc[0]['name']}'"
    judged = table[table["delta"].notna()] if "delta" in table else table.iloc[0:0]
    unjudged = judged[judged["noise"] == UNJUDGED]
    tested = judged[judged["noise"].isin(["real", "within noise"])]
    if len(unjudged) and tested.empty:
        return ["1 seed: changes not judged; run with `seeds: [0, 1, 2]`. A single run per variant cannot "
                "tell an effect from seed noise, so none of these changes is a finding. Changes (vs "
                f"{what}, unjudged): {_names(unjudged)}."]
    if not len(judged):
        return []
    return _tested_changes(tested, unjudged, what)


def _tested_changes(tested: pd.DataFrame, unjudged: pd.DataFrame, what: str) -> list[str]:
    """The sentences on changes judged by the paired t-test (and on the rest, not judged)."""
    out = []
    real = tested[tested["noise"] == "real"]
    helped, hurt = real[real["delta"] > 0], real[real["delta"] < 0]
    noise = tested[tested["noise"] == "within noise"]
    n_min, n_max = int(tested["pairs"].min()), int(tested["pairs"].max())
    seeds = f"{n_min}" if n_min == n_max else f"{n_min}-{n_max}"
    how = f"paired t-test over {seeds} shared seeds, p < {ALPHA:g}; 95 % interval of the change"
    if len(helped):
        out.append(f"Helped (vs {what}; {how}): {_names(helped)}.")
    if len(hurt):
        out.append(f"Hurt (vs {what}; {how}): {_names(hurt)}.")
    if len(noise):
        out.append(f"Within the study's own seed noise (p ≥ {ALPHA:g}) — not findings: {_names(noise)}.")
    if not len(real) and len(noise):
        out.append("No change is beyond the study's own seed noise: more seeds (or a larger proxy) are needed "
                   "to resolve effects of this size.")
    if len(unjudged):
        out.append(f"Fewer than 2 shared seeds, not judged: {_names(unjudged)}.")
    if n_min == 2:
        out.append("With 2 seeds a paired t-test has 1 degree of freedom: its intervals are wide and only very "
                   "consistent changes reach p < 0.05.")
    return out


def _agreement(agree: dict[str, Any]) -> list[str]:
    """Rank agreement with the paper (with bootstrap intervals) and the big steps' sign agreement."""
    seeds = agree["seeds"]
    parts = [f"Spearman ρ between measured and paper top-1 over {agree['n_levels']} steps: "
             f"{fmt_rho(agree['rho_levels'], agree['rho_levels_ci'], seeds)}",
             f"between step changes over {agree['n_deltas']} steps: "
             f"{fmt_rho(agree['rho_deltas'], agree['rho_deltas_ci'], seeds)}"]
    if agree["big_n"]:
        parts.append(f"the measured change has the paper's sign in {agree['big_same']} of the {agree['big_n']} "
                     f"steps whose paper change is ≥ {BIG_STEP:g} points"
                     + (f" ({agree['big_same_real']} of them beyond the study's own noise)" if seeds >= 2 else ""))
    out = ["Agreement with the paper (bootstrap 95 % intervals over seeds): " + "; ".join(parts) + "."]
    ci = agree["rho_levels_ci"]
    if seeds >= 2 and math.isfinite(ci[0]) and ci[0] <= 0 <= ci[1]:
        out.append("The interval of ρ (levels) contains 0: this run cannot show that the proxy ranks the steps "
                   "like the paper.")
    return out
