"""The yardsticks of agreement (yardsticks.py) as the report and `ablate compare` print them: a table of every
readout and yardstick with the proxy-minus-yardstick intervals, a findings sentence, and compare.csv's columns."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .analysis import BIG_STEP
from .render import Block
from .text import fmt, fmt_ci
from .yardsticks import CEILING, FIGURES

_FIGURE_WORD = {"levels": "ρ levels", "changes": "ρ changes", "signs": "signs"}
_KEY = {"levels": "rho_levels", "changes": "rho_changes", "signs": "big_same"}


def _cell(row: pd.Series, key: str, digits: int = 2) -> str:
    value = row.get(key, math.nan)
    return fmt(value, digits) + fmt_ci(row.get(f"{key}_lo"), row.get(f"{key}_hi"), digits)


def _signs(row: pd.Series) -> str:
    same = row.get("big_same", math.nan)
    if not (isinstance(same, float | int) and math.isfinite(same)):
        return "—"
    return f"{int(same)} of {int(row['big_n'])}" + fmt_ci(row.get("big_same_lo"), row.get("big_same_hi"), 0)


def _minus(row: pd.Series, y: str) -> str:
    """`ρ levels −0.21 [−0.94, +0.34] · ρ changes … · signs …`: the readout's figures minus yardstick y's."""
    parts = []
    for what in FIGURES:
        key = f"{y}:{what}"
        if key in row and isinstance(row[key], float) and math.isfinite(row[key]):
            digits = 0 if what == "signs" else 2
            parts.append(f"{_FIGURE_WORD[what]} {fmt(row[key], digits, True)}"
                         + fmt_ci(row.get(f"{key}_lo"), row.get(f"{key}_hi"), digits, True))
    return " · ".join(parts) or "—"


def yardstick_block(yard: pd.DataFrame, readout: str, study: str | None = None) -> Block:
    """One row per readout (the verdicts' marked with *) and per yardstick: ρ of levels and of changes with
    their intervals, the paper's sign on the big steps, and for each readout its figures minus each yardstick's
    with the joint bootstrap interval."""
    ys = [str(n) for n in yard.loc[yard["kind"] != "readout", "name"]]
    labels = dict(zip(yard["name"], yard["label"], strict=True))
    head = (["study"] if study else []) + ["readout / yardstick", "ρ levels [95% CI]", "ρ changes [95% CI]",
                                           f"paper's sign (|paper Δ| ≥ {BIG_STEP:g})"]
    head += [f"minus {labels[y] if y != CEILING else 'the ceiling'} [95% CI]" for y in ys]
    rows = []
    for _, r in yard.iterrows():
        own = r["kind"] == "readout"
        name = f"{r['label']}{' *' if own and r['name'] == readout else ''}"
        if not own:
            name = ("yardstick: " if r["kind"] != CEILING else "ceiling: ") + name
        cells = ([study] if study else []) + [name, _cell(r, "rho_levels"), _cell(r, "rho_changes"), _signs(r)]
        cells += [_minus(r, y) if own else "" for y in ys]
        rows.append(cells)
    return ("table", head, rows)


def yardstick_legend(readout: str) -> str:
    return ("Readouts: * marks the one the verdicts use (`evidence.readout`, here `" + readout + "`); losses are "
            "negated (higher is better). Yardsticks train nothing: GFLOPs and parameters are the study's own counts "
            "at the paper's scale, step index the step's position (levels only); the ceiling is the paper's own "
            "agreement between its two regimes (Table 10 vs Table 11), where the study's references are one of "
            "them. A readout's interval: bootstrap over seeds; minus a yardstick: bootstrap over seeds and steps "
            "together (a lower end above 0 means the proxy beats the yardstick on steps like these).")


def yardstick_sentence(yard: pd.DataFrame, readout: str) -> list[str]:
    """A findings sentence: the verdicts' readout against reading the GFLOPs column, and the ceiling."""
    if yard.empty or readout not in set(yard["name"]):
        return []
    r = yard[yard["name"] == readout].iloc[0]
    by = {str(x["name"]): x for _, x in yard.iterrows()}
    out = []
    if "gflops" in by:
        g = by["gflops"]
        verdict = _beats(r, "gflops", "changes")
        out.append(f"A predictor that trains nothing, the GFLOPs column, agrees with the paper at ρ levels "
                   f"{fmt(g['rho_levels'])}, ρ changes {fmt(g['rho_changes'])} and {_signs(g)} signs; this study "
                   f"minus it: {_minus(r, 'gflops')} (bootstrap over seeds and steps): {verdict}.")
    if CEILING in by:
        c = by[CEILING]
        out.append(f"Ceiling — {c['label']} agrees with this study's reference regime at ρ levels "
                   f"{fmt(c['rho_levels'])}, ρ changes {fmt(c['rho_changes'])} and {_signs(c)} signs; this study "
                   f"minus it: {_minus(r, CEILING)}.")
    return out


def _beats(r: pd.Series, y: str, what: str) -> str:
    lo, hi = r.get(f"{y}:{what}_lo", math.nan), r.get(f"{y}:{what}_hi", math.nan)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval"
    if lo > 0:
        return f"the proxy beats it on {_FIGURE_WORD[what]}"
    if hi < 0:
        return f"the proxy does worse than it on {_FIGURE_WORD[what]}"
    return f"not shown to beat it on {_FIGURE_WORD[what]}"


def summary_columns(yard: pd.DataFrame, readout: str) -> dict[str, Any]:
    """compare.csv's columns: the verdicts' readout, each yardstick's figures and the readout minus each with
    its interval, and every readout's own figures (`{readout}_rho_levels`, ...)."""
    out: dict[str, Any] = {"readout": readout}
    if yard.empty:
        return out
    for _, r in yard.iterrows():
        n = str(r["name"])
        if r["kind"] == "readout":
            for key in ("rho_levels", "rho_changes", "big_same"):
                out.update({f"{n}_{key}": r[key], f"{n}_{key}_lo": r.get(f"{key}_lo"),
                            f"{n}_{key}_hi": r.get(f"{key}_hi")})
        else:
            out.update({f"{n}_rho_levels": r["rho_levels"], f"{n}_rho_changes": r["rho_changes"],
                        f"{n}_big_same": r["big_same"]})
    head = yard[yard["name"] == readout]
    if len(head):
        h = head.iloc[0]
        for y in yard.loc[yard["kind"] != "readout", "name"]:
            for what in FIGURES:
                key = f"{y}:{what}"
                if key in h and pd.notna(h[key]):
                    col = f"minus_{y}_{_KEY[what]}"
                    out.update({col: h[key], f"{col}_lo": h[f"{key}_lo"], f"{col}_hi": h[f"{key}_hi"]})
    return out
