"""The variant with the highest mean top-1, never named "best" alone: with its 95 % interval over seeds and the
variants whose intervals overlap it (those it is not told apart from on these seeds). The report's findings
and `ablate status` say it with the same words."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ablate.sweep.states import Status

from .stats import t_interval
from .text import fmt, fmt_ci


def seed_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant (study order) from a results table: name, n (finished seeds), top1_mean, top1_lo, top1_hi."""
    done = df[df["status"] == Status.DONE]
    rows = []
    for vid, g in done.groupby("id", sort=False):
        mean, lo, hi = t_interval(g["top1"])
        rows.append({"id": vid, "name": g["name"].iloc[0], "n": int(pd.to_numeric(g["top1"], errors="coerce")
                                                                         .notna().sum()),
                     "top1_mean": mean, "top1_lo": lo, "top1_hi": hi})
    return pd.DataFrame(rows, columns=["id", "name", "n", "top1_mean", "top1_lo", "top1_hi"])


def leader(table: pd.DataFrame) -> dict[str, Any] | None:
    """The variant with the highest mean top-1 of a variant table (columns name, n, top1_mean, top1_lo,
    top1_hi): its row, the names of the others whose 95 % intervals overlap its own, and of those without an
    interval (one seed). None when no variant has a result."""
    done = table[pd.to_numeric(table["top1_mean"], errors="coerce").notna()]
    if done.empty:
        return None
    best = done.loc[done["top1_mean"].astype(float).idxmax()]
    others = done.drop(index=best.name)
    lo, hi = float(best.get("top1_lo", math.nan)), float(best.get("top1_hi", math.nan))
    has = others["top1_lo"].astype(float).notna() if len(others) else pd.Series(dtype=bool)
    overlap = [str(r["name"]) for _, r in others[has].iterrows()
               if math.isfinite(lo) and float(r["top1_lo"]) <= hi and float(r["top1_hi"]) >= lo]
    return {"row": best, "others": len(others), "overlap": overlap,
            "no_interval": [str(n) for n in others[~has]["name"]] if len(others) else []}


def leader_text(table: pd.DataFrame, bold: bool = True) -> str:
    """`Highest mean top-1: X 85.20 [84.10, 86.30] (n = 3, 95 % CI); its interval overlaps those of 4 of the 16
    other variants (...): not told apart from them on these seeds.` One sentence, or that nothing finished."""
    lead = leader(table)
    if lead is None:
        return "No variant has finished yet: nothing can be compared."
    r, n = lead["row"], int(lead["row"]["n"])
    name = f"**{r['name']}**" if bold else str(r["name"])
    head = f"Highest mean top-1: {name} with {fmt(r['top1_mean'])}"
    if not math.isfinite(float(r.get("top1_lo", math.nan))):
        return (head + f" (n = {n}: no interval, so it is not ranked above the others"
                + (f"; {lead['others']} other variant(s) have results" if lead["others"] else "") + ").")
    head += fmt_ci(r["top1_lo"], r["top1_hi"]) + f" (n = {n}, 95 % CI)"
    if not lead["others"]:
        return head + "."
    over, alone = lead["overlap"], lead["no_interval"]
    if over:
        listed = ", ".join(over[:6]) + (", ..." if len(over) > 6 else "")
        head += (f"; its interval overlaps those of {len(over)} of the {lead['others']} other variant(s) ({listed}): "
                 "not told apart from them on these seeds")
    else:
        head += f"; its interval overlaps none of the other {lead['others'] - len(alone)} variants' with an interval"
    if alone:
        head += f"; {len(alone)} variant(s) have one seed (no interval) and are not compared"
    return head + "."
