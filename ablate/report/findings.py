"""The report's findings: sentences the study's own numbers support, built from the variant table and the
agreement with the paper (analysis.py). Each sentence names its rows and numbers; with one seed no change
is judged."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ablate.evidence import (
    CORRECTION_NAMES,
    EQUIVALENT,
    HELPED,
    HURT,
    NOT_JUDGED,
    READOUTS,
    SETTLED,
    UNDETERMINED,
    Rule,
)
from ablate.sweep.states import Status

from .analysis import BIG_STEP
from .leader import leader_text
from .text import fmt, fmt_ci, fmt_rho


def findings(table: pd.DataFrame, kind: str, agree: dict[str, Any] | None = None, rule: Rule | None = None,
             search: Any = None) -> list[str]:
    """Sentences the study's own numbers support: the highest mean with its interval and what it overlaps, what
    helped or hurt beyond the study's own seed noise (with intervals), what lies within it, the agreement with the
    paper (with intervals), and what is missing. With one seed no change is judged. Each sentence names its rows
    and numbers."""
    if table.empty:
        return ["The study has no variants."]
    out = [leader_text(table)] + (_winner(table, search) if search is not None else [])
    out += _changes(table, kind, rule or Rule())
    if agree is not None and agree["n_levels"] >= 3:
        out += _agreement(agree)
    elif table["ref_top1"].notna().any() and kind == "steps":
        out.append("Too few finished steps with a paper value (< 3) to compare orderings with the paper.")
    missing = table[table["state"] != Status.DONE]
    if len(missing):
        out.append("Not (all) finished: " + ", ".join(f"{r['name']} ({r['status']})" for _, r in missing.iterrows())
                   + ".")
    return out


def _winner(table: pd.DataFrame, search: Any) -> list[str]:
    """A search's configurations judged over seeds: each one's interval, and with `search.confirm` the winner
    among the configurations retrained on `confirm_seeds` seeds (a sampled mean is partly the luckiest draw)."""
    done = table[table["top1_mean"].notna()]
    if done.empty:
        return []
    out = []
    if search.seeds > 1:
        out.append(f"Each configuration was trained on {search.seeds} seeds; the objective optuna maximised is "
                   "their mean (each row's interval is over its seeds).")
    if search.confirm:
        confirmed = done[done["n"] >= search.confirm_seeds]
        if confirmed.empty:
            out.append(f"Not confirmed yet: the best {search.confirm} configurations are retrained on "
                       f"{search.confirm_seeds} seeds once the search's budget is spent; no winner is named before.")
        else:
            w = confirmed.loc[confirmed["top1_mean"].idxmax()]
            out.append(f"Winner after confirmation (the best {search.confirm} sampled configurations retrained on "
                       f"{search.confirm_seeds} seeds): **{w['name']}** with {fmt(w['top1_mean'])}"
                       + fmt_ci(w.get("top1_lo"), w.get("top1_hi")) + f" (n = {int(w['n'])}, 95 % CI).")
    return out


def _names(rows: pd.DataFrame, need: bool = False) -> str:
    """`name (+0.12 [-0.30, 0.54])` for each row's change, comma-separated; `need`: with the seeds that would
    settle it."""
    return ", ".join(f"{r['name']} ({fmt(r['delta'], signed=True)}"
                     f"{fmt_ci(r['delta_lo'], r['delta_hi'], signed=True)}"
                     + (f"; {_seeds_needed(r['seeds_to_settle'])}" if need else "") + ")" for _, r in rows.iterrows())


def _seeds_needed(n: float) -> str:
    if not math.isfinite(n):
        return "more than 1000 seeds" if n == math.inf else "seeds needed unknown"
    return f"~{int(n)} seeds"


def _changes(table: pd.DataFrame, kind: str, rule: Rule) -> list[str]:
    """What helped, hurt, is equivalent or undetermined, by the study's own seeds and its corrected family;
    unjudged changes as such."""
    what = "the previous step" if kind == "steps" else f"'{table.iloc[0]['name']}'"
    judged = table[table["delta"].notna()] if "delta" in table else table.iloc[0:0]
    unjudged = judged[judged["verdict"] == NOT_JUDGED]
    tested = judged[judged["verdict"].isin([*SETTLED, UNDETERMINED])]
    if len(unjudged) and tested.empty:
        return ["1 seed: changes not judged; run with `seeds: [0, 1, 2]`. A single run per variant cannot "
                "tell an effect from seed noise, so none of these changes is a finding. Changes (vs "
                f"{what}, unjudged): {_names(unjudged)}."]
    if not len(judged):
        return []
    return _tested_changes(tested, unjudged, what, rule)


def method_line(tested: pd.DataFrame, rule: Rule) -> str:
    """How the tested changes were judged, in one clause: seeds, correction, family size, margin, looks."""
    n_min, n_max = int(tested["pairs"].min()), int(tested["pairs"].max())
    seeds = f"{n_min}" if n_min == n_max else f"{n_min}-{n_max}"
    family = int(tested["family"].max())
    how = (f"paired t-tests over {seeds} shared seeds, corrected together over the family of {family} judged "
           f"change{'s' * (family != 1)} by {CORRECTION_NAMES[rule.correction]}, α = {rule.alpha:g}")
    looks = rule.looks()
    if len(looks) > 1:
        how += ("; seeds added where undetermined, looks at " + ", ".join(str(n) for n, _ in looks)
                + " seeds spending α " + " / ".join(f"{a:.3g}" for _, a in looks)
                + " (Lan-DeMets, O'Brien-Fleming type)")
    return how + "; corrected intervals"


def _tested_changes(tested: pd.DataFrame, unjudged: pd.DataFrame, what: str, rule: Rule) -> list[str]:
    """The sentences on judged changes, by verdict (and on the rest, not judged)."""
    out = [f"Verdicts on each change vs {what}: {method_line(tested, rule)}."]
    by = {v: tested[tested["verdict"] == v] for v in (HELPED, HURT, EQUIVALENT, UNDETERMINED)}
    if len(by[HELPED]):
        out.append(f"Helped: {_names(by[HELPED])}.")
    if len(by[HURT]):
        out.append(f"Hurt: {_names(by[HURT])}.")
    if len(by[EQUIVALENT]):
        out.append(f"Equivalent — no effect beyond ±{rule.margin:g} points (two one-sided tests, corrected the "
                   f"same way): {_names(by[EQUIVALENT])}.")
    if len(by[UNDETERMINED]):
        out.append("Undetermined — neither an effect nor " + ("equivalence" if rule.margin else "no effect (the "
                   "study sets no `evidence.margin`)") + " is shown; the seeds each would need at the observed "
                   f"spread: {_names(by[UNDETERMINED], need=True)}.")
    settled = sum(len(by[v]) for v in SETTLED)
    out.append(f"{settled} of {len(tested)} judged changes settled ({len(by[HELPED])} helped, {len(by[HURT])} hurt"
               + (f", {len(by[EQUIVALENT])} equivalent" if rule.margin else "") + ").")
    if len(unjudged):
        out.append(f"Fewer than 2 shared seeds, not judged: {_names(unjudged)}.")
    if int(tested["pairs"].min()) == 2:
        out.append("With 2 seeds a paired t-test has 1 degree of freedom: its intervals are wide and only very "
                   "consistent changes are settled.")
    return out


def _agreement(agree: dict[str, Any]) -> list[str]:
    """Rank agreement with the paper (with bootstrap intervals) and the big steps' sign agreement."""
    seeds = agree["seeds"]
    what = READOUTS[agree.get("readout", "top1")].label
    parts = [f"Spearman ρ between measured {what} and paper top-1 over {agree['n_levels']} steps: "
             f"{fmt_rho(agree['rho_levels'], agree['rho_levels_ci'], seeds)}",
             f"between step changes over {agree['n_deltas']} steps: "
             f"{fmt_rho(agree['rho_deltas'], agree['rho_deltas_ci'], seeds)}"]
    if agree["big_n"]:
        parts.append(f"the measured change has the paper's sign in {agree['big_same']} of the {agree['big_n']} "
                     f"steps whose paper change is ≥ {BIG_STEP:g} points"
                     + (f" ({agree['big_same_settled']} of them settled as helped or hurt)" if seeds >= 2 else ""))
    out = ["Agreement with the paper (bootstrap 95 % intervals over seeds): " + "; ".join(parts) + "."]
    ci = agree["rho_levels_ci"]
    if seeds >= 2 and math.isfinite(ci[0]) and ci[0] <= 0 <= ci[1]:
        out.append("The interval of ρ (levels) contains 0: this run cannot show that the proxy ranks the steps "
                   "like the paper.")
    return out
