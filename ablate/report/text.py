"""Numbers and values as the reports print them: table cells, intervals, rho with its interval, one-line
reasons, file-name slugs. Plain strings only (no markdown or HTML escaping: render.py does that)."""

from __future__ import annotations

import math
import re
from typing import Any


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


def fmt_rho(rho: float, ci: tuple[float, float], seeds: int) -> str:
    """`0.41 [−0.05, 0.74], 3 seeds` (or `0.41 (1 seed: no interval)`)."""
    if not math.isfinite(rho):
        return "— (constant or too few values)"
    if seeds >= 2 and all(math.isfinite(c) for c in ci):
        return f"{rho:.2f} [{ci[0]:.2f}, {ci[1]:.2f}], {seeds} seeds"
    return f"{rho:.2f} ({'1 seed' if seeds < 2 else 'too few values'}: no interval)"


def show(v: Any) -> str:
    """A swept value as written in a study (tuples as lists)."""
    return str(list(v)) if isinstance(v, tuple) else str(v)


def one_line(x: Any) -> str:
    """A failure reason (or any message) on one line of at most 300 characters."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "(no reason recorded)"
    return " ".join(str(x).split())[:300]


def slug(text: str) -> str:
    """`text` as a file-name part: runs of other characters than letters, digits, `_` and `-` become `_`."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
