"""Charts of a study: each function takes tables from analysis.py and returns a matplotlib Figure.

Nothing here saves or shows a figure (writer.py does). The Agg backend is used through
`matplotlib.figure.Figure` directly, so no global pyplot state and no display is involved.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ablate.sweep.states import PARTIAL, Status

from .analysis import STATE_LABEL, fmt, pareto_mask

MEASURED, PAPER, MISSING = "#3b6ea8", "#e08a2c", "#b8b8b8"
PALETTE = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#937860", "#da8bc3", "#8c8c8c",
           "#dd8452"]
ROW_IN = 0.34  # inches per bar row: 20 rows of 9 pt labels never touch
CHAR_IN = 0.068  # approximate width of one 9 pt character


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return fig


def group_colors(groups: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for g in groups:
        if g not in out:
            out[g] = PALETTE[len(out) % len(PALETTE)]
    return out


def _runs(values: list[str]) -> list[tuple[str, int, int]]:
    """Consecutive runs of equal values: (value, first row, last row)."""
    runs: list[tuple[str, int, int]] = []
    for i, v in enumerate(values):
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1], i)
        else:
            runs.append((v, i, i))
    return runs


def _missing_label(row: pd.Series) -> str:
    return STATE_LABEL.get(str(row["state"]), str(row["state"]))


# ---------------------------------------------------------------- roadmap


def roadmap_chart(table: pd.DataFrame, baseline: str | None, dataset: str, title: str,
                  agree: dict[str, Any] | None = None) -> Figure:
    """The paper's Figure 2 for measured numbers: one horizontal bar per step, top to bottom in study order,
    grouped into sections, GFLOPs (paper scale) beside each bar, failed or missing steps hatched grey.

    Left panel: measured top-1 (mean over seeds, whiskers = 95 % t-interval over seeds when n >= 2) on the
    proxy's own scale. Right panel (when the study has paper values): change vs the baseline step in top-1
    points (whiskers = paired 95 % t-interval over shared seeds), measured beside the paper's — levels on two
    datasets are not comparable, changes at least share a unit. `table` is analysis.vs_baseline(...)[0];
    `agree` (analysis.agreement) puts rho with its interval and the big-step sign count under the title.
    """
    n = len(table)
    names = [str(s) for s in table["name"]]
    groups = [str(g) for g in table["group"]]
    has_ref = table["ref_top1"].notna().any() and baseline is not None
    colors = group_colors(groups)
    group_w = (max((len(g) for g in groups), default=0) * CHAR_IN * 1.12 + 0.3) if any(groups) else 0.0
    name_w = max(len(s) for s in names) * CHAR_IN + 0.15
    bars_w, delta_w, gap, right = 4.6, 3.0, 0.35, 0.25
    width = group_w + name_w + bars_w + (gap + delta_w if has_ref else 0) + right
    top, bottom = 1.15, 0.75
    height = n * ROW_IN + top + bottom
    fig = _figure(width, height)
    fx = lambda inch: inch / width  # noqa: E731 - inches -> figure fraction
    y0, h = bottom / height, n * ROW_IN / height
    lab = fig.add_axes((0, y0, fx(group_w + name_w), h))
    ax = fig.add_axes((fx(group_w + name_w), y0, fx(bars_w), h))
    axes = [lab, ax]
    if has_ref:
        dax = fig.add_axes((fx(group_w + name_w + bars_w + gap), y0, fx(delta_w), h))
        axes.append(dax)
    y = np.arange(n)
    for a in axes:
        a.set_ylim(n - 0.5, -0.5)
    # section bands and labels (the paper's left-hand column)
    lab.set_xlim(0, group_w + name_w)
    lab.axis("off")
    for k, (g, a_, b_) in enumerate(_runs(groups)):
        for a in axes:
            if k % 2 == 0:
                a.axhspan(a_ - 0.5, b_ + 0.5, color="#f2f2f2", zorder=0, lw=0)
        if g:
            lab.text(0.05, (a_ + b_) / 2, g, ha="left", va="center", fontsize=9, fontweight="bold",
                     color=colors[g])
            lab.plot([group_w - 0.1] * 2, [a_ - 0.35, b_ + 0.35], color=colors[g], lw=2, solid_capstyle="butt")
    for i, s in enumerate(names):
        lab.text(group_w + name_w - 0.08, i, s, ha="right", va="center", fontsize=9)

    # measured bars
    mean = table["top1_mean"].to_numpy(float)
    # half-widths of the 95 % intervals (asymmetric-safe: lower and upper separately); 0 without an interval
    err_lo = np.nan_to_num(mean - table["top1_lo"].to_numpy(float), nan=0.0)
    err_hi = np.nan_to_num(table["top1_hi"].to_numpy(float) - mean, nan=0.0)
    has_ci = np.isfinite(table["top1_lo"].to_numpy(float))
    have = np.isfinite(mean)
    if have.any():
        lo_v, hi_v = float(np.min(mean[have] - err_lo[have])), float(np.max(mean[have] + err_hi[have]))
        span = max(hi_v - lo_v, 0.5)
        lo = math.floor((lo_v - 0.25 * span) * 2) / 2
        hi = hi_v + 0.75 * span  # room for the value and GFLOPs text
    else:
        lo, hi = 0.0, 100.0
    ax.set_xlim(lo, hi)
    for i, row in enumerate(table.itertuples(index=False)):
        gfl = f"{row.gflops:.2f} GFLOPs" if math.isfinite(row.gflops) else ""
        if have[i]:
            err = [[err_lo[i]], [err_hi[i]]] if has_ci[i] else None
            ax.barh(i, mean[i] - lo, left=lo, height=0.62, color=colors[groups[i]], zorder=2,
                    xerr=err, error_kw={"ecolor": "#222", "capsize": 2.5, "lw": 1})
            text = f"{mean[i]:.2f}" + (f" [{mean[i] - err_lo[i]:.1f}, {mean[i] + err_hi[i]:.1f}]" if has_ci[i] else "")
            if row.state != Status.DONE:
                text += f" ({row.n}/{row.seeds} seeds)"
            ax.text(mean[i] + err_hi[i] + 0.015 * (hi - lo), i, f"{text}   {gfl}", va="center", fontsize=8)
        else:
            ax.barh(i, 0.45 * (hi - lo), left=lo, height=0.62, color=MISSING, hatch="///", edgecolor="#777",
                    lw=0.5, zorder=2, alpha=0.6)
            ax.text(lo + 0.02 * (hi - lo), i, _missing_label(pd.Series(row._asdict())), va="center", fontsize=8,
                    fontweight="bold", color="#444", zorder=3)
            ax.text(lo + 0.47 * (hi - lo), i, gfl, va="center", fontsize=8, color="#555")
    ax.set_yticks([])
    ax.set_xlabel(f"measured top-1 on {dataset} (%)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#ddd", lw=0.6, zorder=1)

    if has_ref:
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
        for i in range(n):
            if not np.isfinite(d[i]) and not np.isfinite(rd[i]):
                continue
            if names[i] == baseline:
                dax.text(0.02, i, " baseline", va="center", fontsize=7.5, color="#333",
                         transform=dax.get_yaxis_transform())
            elif not np.isfinite(d[i]) and np.isfinite(rd[i]):
                dax.text(0, i - 0.18, " no result", va="center", fontsize=7, color="#777")
        dax.set_yticks([])
        dax.set_xlabel(f"change vs '{baseline}' (top-1 points)", fontsize=9)
        dax.tick_params(labelsize=8)
        dax.spines[["top", "right"]].set_visible(False)
        dax.grid(axis="x", color="#ddd", lw=0.6, zorder=1)
        dax.legend(handles=[Patch(color=MEASURED, label=f"measured ({dataset})"),
                            Patch(color=PAPER, label="paper (ImageNet-1K)")],
                   loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=7.5, frameon=False)
    seeds = int(table["n"].max()) if len(table) else 0
    note = ("left: measured top-1, own scale" + (", whiskers = 95 % CI over seeds" if has_ci.any() else
                                                  f" ({seeds} seed{'s' * (seeds != 1)}: no interval)")
            + ("; right: change vs the baseline step (paired 95 % CI), measured vs paper" if has_ref else ""))
    if agree is not None and agree.get("n_levels", 0) >= 3:
        from .analysis import fmt_rho

        k = agree["seeds"]
        note += (f"\nagreement with the paper: ρ levels {fmt_rho(agree['rho_levels'], agree['rho_levels_ci'], k)}"
                 f"; ρ changes {fmt_rho(agree['rho_deltas'], agree['rho_deltas_ci'], k)}")
        if agree.get("big_n"):
            note += f"; paper's sign on {agree['big_same']}/{agree['big_n']} steps with |paper Δ| ≥ 0.4"
    fig.text(0.01, 1 - 0.25 / height, title, fontsize=11, fontweight="bold", va="top")
    fig.text(0.01, 1 - 0.52 / height, note, fontsize=8, color="#444", va="top", linespacing=1.4)
    return fig


# ---------------------------------------------------------------- trade-offs


def _place_labels(ax: Any, xs: np.ndarray, ys: np.ndarray, labels: list[str], errs: np.ndarray | None = None,
                  path: tuple[np.ndarray, np.ndarray] | None = None, fontsize: float = 7.5) -> None:
    """Greedy label placement: for each point try offsets around it (nearest first) and keep the first
    whose box overlaps no placed label, point, error bar or the `path` polyline (data coordinates); else the
    least-overlapping one. Labels placed away from their point get a leader line."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_disp = ax.transData.transform
    pts = to_disp(np.column_stack([xs, ys]))
    placed: list[tuple[float, float, float, float]] = []
    r = 10.0  # radius of a (circled) point in pixels
    obstacles = [(px - r, py - r, px + r, py + r) for px, py in pts]
    if errs is not None:
        lo, hi = to_disp(np.column_stack([xs, ys - errs])), to_disp(np.column_stack([xs, ys + errs]))
        obstacles += [(a[0] - 2, a[1], a[0] + 2, b[1]) for a, b in zip(lo, hi, strict=True) if b[1] > a[1]]
    if path is not None and len(path[0]) > 1:
        line = to_disp(np.column_stack(path))
        for (x0, y0), (x1, y1) in zip(line[:-1], line[1:], strict=True):
            obstacles.append((min(x0, x1) - 1.5, min(y0, y1) - 1.5, max(x0, x1) + 1.5, max(y0, y1) + 1.5))
    frame = ax.get_window_extent(renderer)
    offsets = [(dx, dy) for dist in (12, 20, 30, 42, 56) for dx, dy in
               ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
               for dx, dy in [(dx * dist, dy * dist)]]
    order = np.argsort(-pts[:, 1])
    for i in order:
        t = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(0, 0), textcoords="offset pixels", fontsize=fontsize,
                        ha="left", va="bottom")
        bb = t.get_window_extent(renderer)
        w, h = bb.width, bb.height
        best, best_cost = None, math.inf
        for dx, dy in offsets:
            x0 = pts[i, 0] + dx - (w if dx < 0 else 0 if dx > 0 else w / 2)
            y0 = pts[i, 1] + dy - (h if dy < 0 else 0 if dy > 0 else h / 2)
            box = (x0, y0, x0 + w, y0 + h)
            cost = sum(_overlap(box, p) for p in placed)
            cost += sum(_overlap(box, o) for o in obstacles)
            if box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1:
                cost += w * h
            if cost < best_cost:
                best, best_cost = (dx, dy, box), cost
            if cost == 0:
                break
        dx, dy, box = best if best is not None else (0, 0, (pts[i, 0], pts[i, 1], pts[i, 0] + w, pts[i, 1] + h))
        t.set_position((box[0] - pts[i, 0], box[1] - pts[i, 1]))
        if abs(dx) > 20 or abs(dy) > 20:
            ax.annotate("", (xs[i], ys[i]), xytext=((box[0] + box[2]) / 2 - pts[i, 0], (box[1] + box[3]) / 2
                                                     - pts[i, 1]),
                        textcoords="offset pixels", arrowprops={"arrowstyle": "-", "color": "#999", "lw": 0.5})
        placed.append(box)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def tradeoff_chart(table: pd.DataFrame, dataset: str, title: str) -> Figure:
    """Top-1 vs GFLOPs (paper scale) and top-1 vs measured training throughput, Pareto fronts marked.

    Points are labelled with the variant's name when there are at most 10, else with its row number
    (the `#` column of the report's table) and a key beside the chart. Variants without a result are left
    out and counted in the caption.
    """
    t = table[table["top1_mean"].notna()].reset_index(drop=True)
    many = len(table) > 10
    labels = [str(r["index"] + 1) if many else str(r["name"]) for _, r in t.iterrows()]
    colors = group_colors([str(g) for g in table["group"]])
    key_w = (max(len(s) for s in table["name"]) * 0.06 + 0.5) if many else 0.0
    fig = _figure(10.5 + key_w, 4.6)
    panels = [("gflops", "GFLOPs at paper scale (fvcore, 1 multiply-add = 1 FLOP)", True),
              ("train_img_per_s", "measured training throughput (images/s, as trained)", False)]
    left = 0.06
    pw = (1 - left - key_w / (10.5 + key_w) - 0.08) / 2
    for k, (col, xlabel, lower) in enumerate(panels):
        ax = fig.add_axes((left + k * (pw + 0.07), 0.14, pw, 0.72))
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(color="#e4e4e4", lw=0.6)
        ax.tick_params(labelsize=8)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(f"top-1 on {dataset} (%)", fontsize=9)
        x = pd.to_numeric(t[col], errors="coerce").to_numpy(float) if len(t) else np.array([])
        yv = t["top1_mean"].to_numpy(float) if len(t) else np.array([])
        ok = np.isfinite(x) & np.isfinite(yv)
        if not ok.any():
            ax.text(0.5, 0.5, "no finished variant with this measurement", transform=ax.transAxes, ha="center",
                    fontsize=9, color="#777")
            continue
        err = np.nan_to_num(t["top1_hi"].to_numpy(float) - yv) if "top1_hi" in t else np.zeros(len(t))  # 95 % CI
        for i in np.flatnonzero(ok):
            ax.errorbar(x[i], yv[i], yerr=err[i] if err[i] else None, fmt="o", ms=5.5,
                        color=colors[str(t.loc[i, "group"])], ecolor="#555", elinewidth=0.8, capsize=2, zorder=3)
        front = pareto_mask(x, yv, lower_cost_is_better=lower)
        fi = np.flatnonzero(front)
        fi = fi[np.argsort(x[fi])]
        # the staircase bounding the dominated region: horizontal first when cost is lower-better
        sx = np.repeat(x[fi], 2)[1:] if lower else np.repeat(x[fi], 2)[:-1]
        sy = np.repeat(yv[fi], 2)[:-1] if lower else np.repeat(yv[fi], 2)[1:]
        ax.plot(sx, sy, "-", color="#222", lw=1, zorder=2)
        ax.scatter(x[fi], yv[fi], s=110, facecolors="none", edgecolors="#222", lw=1.1, zorder=4)
        xr = np.ptp(x[ok]) or max(abs(float(x[ok][0])) * 0.1, 1.0)
        yr = np.ptp(yv[ok]) or 1.0
        ax.set_xlim(float(x[ok].min()) - 0.12 * xr, float(x[ok].max()) + 0.12 * xr)
        ax.set_ylim(float((yv - err)[ok].min()) - 0.15 * yr, float((yv + err)[ok].max()) + 0.15 * yr)
        ax.set_title(("lower cost, higher top-1 is better" if lower else "faster, higher top-1 is better")
                     + "; circled: Pareto front", fontsize=8.5, color="#444")
        _place_labels(ax, x[ok], yv[ok], [labels[i] for i in np.flatnonzero(ok)], err[ok], (sx, sy))
    handles = [Patch(color=c, label=g or "(no group)") for g, c in colors.items()]
    fig.legend(handles=handles, loc="upper right", ncol=min(len(handles), 7), fontsize=7.5, frameon=False,
               bbox_to_anchor=(1 - key_w / (10.5 + key_w), 1.0))
    missing = int(table["top1_mean"].isna().sum())
    fig.text(0.01, 0.975, title, fontsize=11, fontweight="bold", va="top")
    if missing:
        fig.text(0.01, 0.02, f"{missing} variant(s) without a result are not shown", fontsize=8, color="#777")
    if many:
        key = "\n".join(f"{int(r['index']) + 1:>2}  {r['name']}" for _, r in table.iterrows())
        fig.text(1 - key_w / (10.5 + key_w) + 0.005, 0.86, key, fontsize=7, va="top", family="monospace")
    return fig


# ---------------------------------------------------------------- curves


def curves_chart(curves: pd.DataFrame, title: str, dataset: str) -> Figure:
    """Validation top-1 and training loss per epoch, one line per variant (mean over its seeds), coloured
    in study order. Unfinished variants (running, failed, interrupted) are dashed."""
    ids = list(dict.fromkeys(curves["id"])) if len(curves) else []
    n = max(len(ids), 1)
    fig = _figure(11.5, max(4.2, 0.19 * n + 1.2))
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    axes = [fig.add_axes((0.06, 0.12, 0.31, 0.76)), fig.add_axes((0.44, 0.12, 0.31, 0.76))]
    for ax, col, label in ((axes[0], "top1", f"validation top-1 on {dataset} (%)"),
                           (axes[1], "train_loss", "training loss")):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(color="#e4e4e4", lw=0.6)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(label, fontsize=9)
        if col not in curves or not len(curves):
            ax.text(0.5, 0.5, "no per-epoch metrics yet", transform=ax.transAxes, ha="center", color="#777")
    handles = []
    for k, vid in enumerate(ids):
        c = curves[curves["id"] == vid]
        color = cmap(k / max(n - 1, 1) * 0.9)
        state = str(c["state"].iloc[0])
        ls = "-" if state in (Status.DONE, PARTIAL) else "--"
        label = f"{int(c['index'].iloc[0]) + 1:>2} {c['name'].iloc[0]}"
        if ls == "--":
            label += f" ({STATE_LABEL.get(state, state)})"
        for ax, col in ((axes[0], "top1"), (axes[1], "train_loss")):
            if col in c:
                (line,) = ax.plot(c["epoch"], c[col], ls, color=color, lw=1.3, marker="o", ms=2.5, label=label)
        handles.append(line)
    for ax in axes:
        if len(curves):
            ax.xaxis.get_major_locator().set_params(integer=True)
    if handles:
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.77, 0.9),
                   fontsize=7, frameon=False)
    fig.text(0.01, 0.985, title, fontsize=11, fontweight="bold", va="top")
    return fig


# ---------------------------------------------------------------- grids


def grid_field_chart(effect: pd.DataFrame, key: str, dataset: str, title: str) -> Figure:
    """Top-1 against the values of one swept field (in sweep order), one line per combination of the
    other swept fields; error bars = 95 % t-interval over seeds; unfinished values are marked on the axis."""
    values = list(dict.fromkeys(effect["value"]))
    fig = _figure(max(5.5, 0.8 * len(values) + 2.5), 4.2)
    ax = fig.add_axes((0.13, 0.14, 0.6 if effect["series"].nunique() > 1 else 0.82, 0.72))
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(color="#e4e4e4", lw=0.6)
    xs = {v: i for i, v in enumerate(values)}
    missing: list[tuple[int, int, str]] = []  # (series number, x, state)
    for k, (series, g) in enumerate(effect.groupby("series", sort=False)):
        x = np.array([xs[v] for v in g["value"]], dtype=float)
        y = g["top1_mean"].to_numpy(float)  # NaN breaks the line: no segment is drawn across a missing value
        e = np.nan_to_num(g["top1_hi"].to_numpy(float) - y) if "top1_hi" in g else np.zeros(len(g))
        ax.errorbar(x, y, yerr=np.where(e > 0, e, np.nan) if (e > 0).any() else None, fmt="-o", ms=5, capsize=3,
                    color=PALETTE[k % len(PALETTE)], label=series or None)
        missing += [(k, int(xi), str(st)) for xi, yi, st in zip(x, y, g["state"], strict=True) if not np.isfinite(yi)]
    ymin = ax.get_ylim()[0]
    for k, xi, state in missing:
        color = PALETTE[k % len(PALETTE)]
        ax.plot(xi, ymin, "x", color=color, ms=8, mew=1.5, clip_on=False)
        ax.annotate(STATE_LABEL.get(state, state), (xi, ymin), xytext=(0, 7 + 10 * k), textcoords="offset points",
                    ha="center", fontsize=7, color=color)
    ax.set_xticks(range(len(values)), values, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(key, fontsize=9)
    ax.set_ylabel(f"top-1 on {dataset} (%)", fontsize=9)
    if effect["series"].nunique() > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7.5, frameon=False)
    fig.text(0.01, 0.985, title, fontsize=11, fontweight="bold", va="top")
    return fig


def grid_heatmap(table: pd.DataFrame, keys: tuple[str, str], dataset: str, title: str) -> Figure:
    """Mean top-1 for two swept fields; empty cells say why (failed, not run)."""
    from .analysis import _show

    rows = list(dict.fromkeys(table[keys[0]].map(_show)))
    cols = list(dict.fromkeys(table[keys[1]].map(_show)))
    z = np.full((len(rows), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in rows]
    for _, r in table.iterrows():
        i, j = rows.index(_show(r[keys[0]])), cols.index(_show(r[keys[1]]))
        z[i, j] = r["top1_mean"]
        text[i][j] = (fmt(r["top1_mean"]) + (f"\n±{fmt(r['top1_std'])}" if r["n"] >= 2 else "")
                      if math.isfinite(r["top1_mean"]) else STATE_LABEL.get(str(r["state"]), str(r["state"])))
    fig = _figure(max(4.5, 0.9 * len(cols) + 2.2), max(3.5, 0.6 * len(rows) + 1.6))
    ax = fig.add_axes((0.2, 0.15, 0.62, 0.7))
    im = ax.imshow(np.ma.masked_invalid(z), cmap="viridis", aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            dark = np.isfinite(z[i, j]) and z[i, j] < np.nanmean(z)
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7.5, color="white" if dark else "#222")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(keys[1], fontsize=9)
    ax.set_ylabel(keys[0], fontsize=9)
    cb = fig.colorbar(im, ax=ax, fraction=0.05)
    cb.set_label(f"top-1 on {dataset} (%)", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    fig.text(0.01, 0.985, title, fontsize=11, fontweight="bold", va="top")
    return fig


# ---------------------------------------------------------------- searches


def search_charts(optuna_study: Any) -> dict[str, Figure]:
    """optuna's own optimization history and parameter importances (optuna.visualization.matplotlib).
    Importances need >= 2 finished trials with a varying parameter; otherwise that chart is left out."""
    import warnings

    from optuna.visualization import matplotlib as ovm

    out: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        out["search_history"] = ovm.plot_optimization_history(optuna_study).figure
        with contextlib.suppress(ValueError, RuntimeError):
            out["search_importance"] = ovm.plot_param_importances(optuna_study).figure
    return out
