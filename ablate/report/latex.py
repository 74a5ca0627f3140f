"""results.tex: the results table for a paper, in LaTeX that pdflatex compiles with its defaults (booktabs and
graphicx the only packages; a table wider than the text is shrunk to its width): plain ASCII (each non-ASCII
character written as a LaTeX command), every special character escaped, and the columns a paper's table has
(step, cost, top-1 with its interval, the change, its verdict, the paper's change); report.md keeps the full table
(changes, status, throughput)."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

import pandas as pd

from .text import fmt, show

# text-mode specials: each escaped (so `\input{...}` from a study is text, and `%`, `&`, `#` break nothing)
_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "%": r"\%",
            "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "|": r"\textbar{}"}
# the non-ASCII characters ablate writes, as commands pdflatex knows without a package
_UNICODE = {"→": r"$\to$", "Δ": r"$\Delta$", "−": "-", "–": "--", "—": "--", "±": r"$\pm$", "×": r"$\times$",
            "≥": r"$\geq$", "≤": r"$\leq$", "ρ": r"$\rho$", "…": r"\ldots{}", "·": r"$\cdot$", "≈": r"$\approx$",
            "°": r"$^\circ$", "µ": r"$\mu$", "‘": "`", "’": "'", "“": "``", "”": "''", "▲": "", "▼": ""}


def tex_text(text: Any) -> str:
    """Any text as LaTeX that typesets it as written, in one line of plain ASCII: specials escaped, the characters
    in `_UNICODE` as commands, other accented letters without their accent, anything else `?`."""
    out = []
    for c in " ".join(str(text).split()).replace("->", "→"):
        if c in _SPECIAL:
            out.append(_SPECIAL[c])
        elif c.isascii():
            out.append(c)
        elif c in _UNICODE:
            out.append(_UNICODE[c])
        else:
            plain = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()
            out.append("".join(_SPECIAL.get(p, p) for p in plain) or "?")
    return "".join(out)


def results_tex(t: pd.DataFrame, kind: str, grid_keys: list[str], caption: str) -> str:
    """The variant table `t` (the report's, a column per swept field for a grid) as a booktabs `table`."""
    vs = "prev." if kind == "steps" else "first"
    header = ["\\#", "Variant" if kind != "steps" else "Step", *map(tex_text, grid_keys), "GFLOPs", "Params (M)",
              "Top-1 (\\%) [95\\% CI]", "$n$", f"$\\Delta$ vs {vs} [corr. CI]", "Verdict"]
    has_paper = "ref_delta" in t and bool(pd.to_numeric(t["ref_delta"], errors="coerce").notna().any())
    if has_paper:
        header.append("Paper $\\Delta$")
    rows = [_row(r, grid_keys, has_paper) for _, r in t.iterrows()]
    align = "r" + "l" * (1 + len(grid_keys)) + "rrrrrl" + "r" * has_paper
    lines = ["% results table written by ablate; needs \\usepackage{booktabs} and \\usepackage{graphicx}",
             "\\begin{table}[htbp]", "\\centering", "\\small", f"\\caption{{{tex_text(caption)}}}",
             "\\label{tab:ablate-results}",
             "% shrunk to the text width only when wider",
             "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
             f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(header) + " \\\\", "\\midrule",
             *(" & ".join(row) + " \\\\" for row in rows), "\\bottomrule", "\\end{tabular}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _row(r: Any, grid_keys: list[str], has_paper: bool) -> list[str]:
    def num(x: Any, digits: int = 2, signed: bool = False) -> str:
        return tex_text(fmt(x, digits, signed)) if _finite(x) else "--"

    top1 = num(r["top1_mean"])
    if _finite(r.get("top1_lo")):
        top1 += f" [{num(r['top1_lo'], 1)}, {num(r['top1_hi'], 1)}]"
    delta = num(r.get("delta"), signed=True)
    if _finite(r.get("delta_lo")):
        delta += f" [{num(r['delta_lo'], 1, signed=True)}, {num(r['delta_hi'], 1, signed=True)}]"
    n = int(r["n"]) if _finite(r.get("n")) else 0
    row = [str(int(r["index"]) + 1), tex_text(r["name"]), *[tex_text(show(r[k])) for k in grid_keys],
           num(r["gflops"]), num(r["params"] / 1e6 if _finite(r.get("params")) else math.nan), top1, str(n), delta,
           tex_text(r.get("verdict") or "--")]
    if has_paper:
        row.append(num(r.get("ref_delta"), signed=True))
    return row


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
