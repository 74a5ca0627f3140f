"""The roadmap chart: the paper's Figure 2 for measured numbers (see `roadmap_chart`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ablate.sweep.states import Status

from .style import CHAR_IN, MEASURED, MISSING, PAPER, ROW_IN, figure, group_colors, runs, state_label
from .text import fmt_rho


def roadmap_chart(table: pd.DataFrame, baseline: str | None, dataset: str, title: str,
                  agree: dict[str, Any] | None = None) -> Figure:
    """The paper's Figure 2 for measured numbers: one row per step, top to bottom in study order,
    grouped into sections, GFLOPs (paper scale) beside each bar, failed or missing steps hatched grey.

    Left panel: measured top-1 as a dot plot (dot = mean over seeds, whiskers = 95 % t-interval over seeds when
    n >= 2) on the proxy's own scale, which does not start at 0 (so dots, not bars). Right panel (when the study
    has paper values), bars from 0: change vs the baseline step in top-1
    points (whiskers = paired 95 % t-interval over shared seeds), measured beside the paper's — levels on two
    datasets are not comparable, changes at least share a unit. `table` is analysis.vs_baseline(...)[0];
    `agree` (analysis.agreement) puts rho with its interval and the big-step sign count under the title.
    """
    names = [str(s) for s in table["name"]]
    groups = [str(g) for g in table["group"]]
    has_ref = table["ref_top1"].notna().any() and baseline is not None
    colors = group_colors(groups)
    lay = _layout(names, groups, has_ref)
    _draw_sections(lay, names, groups, colors)
    if "verdict" in table:
        _draw_verdicts(lay, [str(v) for v in table["verdict"]])
    has_ci = _draw_measured(lay.ax, table, [colors[g] for g in groups], dataset)
    if lay.dax is not None:
        _draw_changes(lay.dax, table, names, baseline, dataset)
    note = _note(table, bool(has_ci.any()), bool(has_ref), agree)
    lay.fig.text(0.01, 1 - 0.25 / lay.height, title, fontsize=11, fontweight="bold", va="top")
    lay.fig.text(0.01, 1 - 0.52 / lay.height, note, fontsize=8, color="#444", va="top", linespacing=1.4)
    return lay.fig


@dataclass
class _Layout:
    """The roadmap's figure and panels: section and step labels, measured bars, changes (with paper values)."""

    fig: Figure
    lab: Any
    ax: Any
    dax: Any | None
    group_w: float
    name_w: float
    height: float
    verdict_w: float = 0.0

    @property
    def axes(self) -> list[Any]:
        return [self.lab, self.ax] + ([self.dax] if self.dax is not None else [])


def _layout(names: list[str], groups: list[str], has_ref: bool) -> _Layout:
    """Panel widths from the longest group and step names (inches), one ROW_IN per step."""
    n = len(names)
    group_w = (max((len(g) for g in groups), default=0) * CHAR_IN * 1.12 + 0.3) if any(groups) else 0.0
    name_w = max(len(s) for s in names) * CHAR_IN + 0.15
    verdict_w = len("? undetermined") * CHAR_IN * 1.05 + 0.2
    bars_w, delta_w, gap, right = 4.6, 3.0, 0.35, 0.25
    name_w += verdict_w  # the verdict column sits between the step names and the bars
    width = group_w + name_w + bars_w + (gap + delta_w if has_ref else 0) + right
    top, bottom = 1.4, 0.75  # the title, three lines of notes, then the verdict column's header
    height = n * ROW_IN + top + bottom
    fig = figure(width, height)

    def fx(inch: float) -> float:  # inches -> figure fraction
        return inch / width

    y0, h = bottom / height, n * ROW_IN / height
    lab = fig.add_axes((0, y0, fx(group_w + name_w), h))
    ax = fig.add_axes((fx(group_w + name_w), y0, fx(bars_w), h))
    dax = fig.add_axes((fx(group_w + name_w + bars_w + gap), y0, fx(delta_w), h)) if has_ref else None
    lay = _Layout(fig, lab, ax, dax, group_w, name_w, height, verdict_w)
    for a in lay.axes:
        a.set_ylim(n - 0.5, -0.5)
    return lay


def _draw_sections(lay: _Layout, names: list[str], groups: list[str], colors: dict[str, str]) -> None:
    """Alternating section bands across the panels, and the paper's left-hand column: sections and steps."""
    lab = lay.lab
    lab.set_xlim(0, lay.group_w + lay.name_w)
    lab.axis("off")
    for k, (g, a_, b_) in enumerate(runs(groups)):
        for a in lay.axes:
            if k % 2 == 0:
                a.axhspan(a_ - 0.5, b_ + 0.5, color="#f2f2f2", zorder=0, lw=0)
        if g:
            lab.text(0.05, (a_ + b_) / 2, g, ha="left", va="center", fontsize=9, fontweight="bold",
                     color=colors[g])
            lab.plot([lay.group_w - 0.1] * 2, [a_ - 0.35, b_ + 0.35], color=colors[g], lw=2, solid_capstyle="butt")
    for i, s in enumerate(names):
        lab.text(lay.group_w + lay.name_w - lay.verdict_w - 0.08, i, s, ha="right", va="center", fontsize=9)


# How the chart marks each change's verdict (ablate/evidence.py), vs the previous step.
VERDICT_MARKS = {"helped": ("▲ helped", "#1a7f37"), "hurt": ("▼ hurt", "#c0392b"),
                 "equivalent": ("= equivalent", "#2c5d8a"), "undetermined": ("? undetermined", "#777777"),
                 "not judged": ("· not judged", "#999999")}


def _draw_verdicts(lay: _Layout, verdicts: list[str]) -> None:
    """Each step's verdict vs the previous step, in its own column left of the bars."""
    x = lay.group_w + lay.name_w - lay.verdict_w + 0.02
    lay.lab.text(x, -0.75, "verdict", ha="left", va="bottom", fontsize=7.5, color="#444", fontstyle="italic")
    for i, v in enumerate(verdicts):
        if v in VERDICT_MARKS:
            text, color = VERDICT_MARKS[v]
            lay.lab.text(x, i, text, ha="left", va="center", fontsize=7.5, color=color, fontweight="bold")


def _measured_limits(mean: np.ndarray, err_lo: np.ndarray, err_hi: np.ndarray) -> tuple[float, float]:
    """x limits of the measured panel: the bars with their whiskers, and room for the value and GFLOPs text."""
    have = np.isfinite(mean)
    if not have.any():
        return 0.0, 100.0
    lo_v, hi_v = float(np.min(mean[have] - err_lo[have])), float(np.max(mean[have] + err_hi[have]))
    span = max(hi_v - lo_v, 0.5)
    return math.floor((lo_v - 0.25 * span) * 2) / 2, hi_v + 0.75 * span


def _draw_measured(ax: Any, table: pd.DataFrame, colors: list[str], dataset: str) -> np.ndarray:
    """Measured top-1 as a dot plot: a dot at the mean with its 95 % whiskers (or a hatched band saying why there
    is no result). Dots, not bars: the axis is zoomed to the measured range, where bar lengths would exaggerate
    differences. Returns which rows have an interval."""
    mean = table["top1_mean"].to_numpy(float)
    # half-widths of the 95 % intervals (asymmetric-safe: lower and upper separately); 0 without an interval
    err_lo = np.nan_to_num(mean - table["top1_lo"].to_numpy(float), nan=0.0)
    err_hi = np.nan_to_num(table["top1_hi"].to_numpy(float) - mean, nan=0.0)
    has_ci = np.isfinite(table["top1_lo"].to_numpy(float))
    lo, hi = _measured_limits(mean, err_lo, err_hi)
    ax.set_xlim(lo, hi)
    for i, row in enumerate(table.itertuples(index=False)):
        gfl = f"{row.gflops:.2f} GFLOPs" if math.isfinite(row.gflops) else ""
        if not np.isfinite(mean[i]):
            _missing_bar(ax, i, (lo, hi), state_label(row.state), gfl)
            continue
        err = [[err_lo[i]], [err_hi[i]]] if has_ci[i] else None
        ax.plot([lo, mean[i]], [i, i], color="#cfcfcf", lw=0.6, zorder=1)  # a guide to the row, not a bar
        ax.errorbar(mean[i], i, xerr=err, fmt="o", ms=6, color=colors[i], mec="#222", mew=0.6, ecolor="#222",
                    elinewidth=1.2, capsize=3, zorder=3)
        text = f"{mean[i]:.2f}" + (f" [{mean[i] - err_lo[i]:.1f}, {mean[i] + err_hi[i]:.1f}]" if has_ci[i] else "")
        if row.state != Status.DONE:
            text += f" ({row.n}/{row.seeds} seeds)"
        ax.text(mean[i] + err_hi[i] + 0.015 * (hi - lo), i, f"{text}   {gfl}", va="center", fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel(f"measured top-1 on {dataset} (%): dot plot, the axis does not start at 0", fontsize=9)
    _bar_axes(ax)
    return has_ci


def _missing_bar(ax: Any, i: int, xlim: tuple[float, float], label: str, gfl: str) -> None:
    """A hatched grey band across the panel (no length to read) for a step without a result, with its state and
    GFLOPs."""
    lo, hi = xlim
    ax.axhspan(i - 0.31, i + 0.31, color=MISSING, hatch="///", ec="#777", lw=0.5, zorder=2, alpha=0.35)
    ax.text(lo + 0.02 * (hi - lo), i, label, va="center", fontsize=8, fontweight="bold", color="#444", zorder=3)
    ax.text(lo + 0.47 * (hi - lo), i, gfl, va="center", fontsize=8, color="#555")


def _bar_axes(ax: Any) -> None:
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#ddd", lw=0.6, zorder=1)


def _draw_changes(dax: Any, table: pd.DataFrame, names: list[str], baseline: str | None, dataset: str) -> None:
    """Change vs the baseline step, measured (paired 95 % whiskers) beside the paper's."""
    y = np.arange(len(table))
    d, rd = table["base_delta"].to_numpy(float), table["ref_base_delta"].to_numpy(float)
    dlo = np.nan_to_num(d - table["base_lo"].to_numpy(float), nan=0.0)
    dhi = np.nan_to_num(table["base_hi"].to_numpy(float) - d, nan=0.0)
    dax.barh(y - 0.18, np.nan_to_num(d), height=0.34, color=MEASURED, zorder=2, xerr=[dlo, dhi],
             error_kw={"capsize": 2, "lw": 0.8})
    dax.barh(y + 0.18, np.nan_to_num(rd), height=0.34, color=PAPER, zorder=2)
    vals = np.concatenate([(d + dhi)[np.isfinite(d)], (d - dlo)[np.isfinite(d)], rd[np.isfinite(rd)], [0.0]])
    m = max(float(np.max(np.abs(vals))), 0.5) * 1.15
    dax.set_xlim(min(-0.15 * m, float(vals.min()) * 1.15), max(0.15 * m, float(vals.max()) * 1.15))
    dax.axvline(0, color="#333", lw=0.8, zorder=3)
    for i in range(len(table)):
        if not np.isfinite(d[i]) and not np.isfinite(rd[i]):
            continue
        if names[i] == baseline:
            dax.text(0.02, i, " baseline", va="center", fontsize=7.5, color="#333",
                     transform=dax.get_yaxis_transform())
        elif not np.isfinite(d[i]) and np.isfinite(rd[i]):
            dax.text(0, i - 0.18, " no result", va="center", fontsize=7, color="#777")
    dax.set_yticks([])
    dax.set_xlabel(f"change vs '{baseline}' (top-1 points)", fontsize=9)
    _bar_axes(dax)
    dax.legend(handles=[Patch(color=MEASURED, label=f"measured ({dataset})"),
                        Patch(color=PAPER, label="paper (ImageNet-1K)")],
               loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=7.5, frameon=False)


def _note(table: pd.DataFrame, has_ci: bool, has_ref: bool, agree: dict[str, Any] | None) -> str:
    """The lines under the title: what the panels show, and the agreement with the paper."""
    seeds = int(table["n"].max()) if len(table) else 0
    note = ("verdict: each step vs the previous one (corrected for the family of changes); "
            "left: measured top-1 (dot = mean), own scale" + (", whiskers = 95 % CI over seeds" if has_ci else
                                                  f" ({seeds} seed{'s' * (seeds != 1)}: no interval)")
            + ("; right: change vs the baseline step (paired 95 % CI), measured vs paper" if has_ref else ""))
    if agree is not None and agree.get("n_levels", 0) >= 3:
        k = agree["seeds"]
        note += (f"\nagreement with the paper: ρ levels {fmt_rho(agree['rho_levels'], agree['rho_levels_ci'], k)}"
                 f"; ρ changes {fmt_rho(agree['rho_deltas'], agree['rho_deltas_ci'], k)}")
        if agree.get("big_n"):
            note += f"; paper's sign on {agree['big_same']}/{agree['big_n']} steps with |paper Δ| ≥ 0.4"
        g = agree.get("gflops")  # the yardstick that trains nothing: the GFLOPs column (report/yardsticks.py)
        if g:
            note += (f"\nthe GFLOPs column alone (no training): ρ levels {g['rho_levels']:.2f}; ρ changes "
                     f"{g['rho_changes']:.2f}; paper's sign on {g['big_same']:.0f}/{g['big_n']}")
    return note
